"""The OpenAI-compatible server against in-process `model.generate`: what HTTP costs.

The same greedy requests (dojo-tiny, its end-of-turn token switched off so every reply has
exactly `--new-tokens` tokens) run three ways, alternating repeat by repeat:
  - reference: `model.generate` called directly (transformers, no server);
  - server: `/v1/chat/completions` over loopback with the official `openai` client;
  - stream: the same with `stream=True` (Server-Sent Events), also timing the first token.
The server's replies are checked to equal the reference's. Then `--clients` clients at once
measure total throughput under concurrency. Run:

    python benchmarks/serve_overhead.py                 # prints a table and the ratios
    python benchmarks/serve_overhead.py --new-tokens 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import openai
import torch

from dojo import paths
from dojo.infer.generate import chat_prompt_ids
from dojo.infer.load import load_for_inference
from dojo.infer.serve import ServerLimits, running

MESSAGES = [{"role": "user", "content": "What is 12 + 7?"}]


def reference(model, tokenizer, n: int) -> tuple[float, str]:
    ids = chat_prompt_ids(tokenizer, MESSAGES)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def plain(client, n: int) -> tuple[float, str]:
    start = time.perf_counter()
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=n, temperature=0)
    assert r.usage.completion_tokens == n
    return time.perf_counter() - start, r.choices[0].message.content


def streamed(client, n: int) -> tuple[float, float, str]:
    start = time.perf_counter()
    first, pieces = None, []
    for chunk in client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=n, temperature=0, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            pieces.append(chunk.choices[0].delta.content)
    return time.perf_counter() - start, first, "".join(pieces)


def concurrent(client, n: int, clients: int) -> float:
    """Total new tokens per second with `clients` requests in flight at once."""
    threads = [threading.Thread(target=plain, args=(client, n)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    model, tokenizer = load_for_inference(paths.TINY_MODEL)
    model.generation_config.eos_token_id = None  # fixed-length replies
    times = {"reference": [], "server": [], "stream": [], "first_token": []}
    limits = ServerLimits(max_tokens=a.new_tokens)
    with running(model, tokenizer=tokenizer, model_name="tiny", limits=limits) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        plain(client, 4)  # warm-up
        for _ in range(a.repeats):
            t_ref, text_ref = reference(model, tokenizer, a.new_tokens)
            t_srv, text_srv = plain(client, a.new_tokens)
            t_str, first, text_str = streamed(client, a.new_tokens)
            assert text_srv == text_str == text_ref, (text_ref, text_srv, text_str)
            for key, value in zip(times, (t_ref, t_srv, t_str, first)):
                times[key].append(value)
        together = concurrent(client, a.new_tokens, a.clients)

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "new_tokens": a.new_tokens,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "tokens_per_s": {
            k: round(a.new_tokens / med[k], 1) for k in ("reference", "server", "stream")
        },
        "server_over_reference": round(med["server"] / med["reference"], 3),
        "stream_over_reference": round(med["stream"] / med["reference"], 3),
        f"tokens_per_s_{a.clients}_clients": round(together, 1),
    }
    print(f"{'arm':10s} {'median s':>9s} {'tokens/s':>9s}")
    for k in ("reference", "server", "stream"):
        print(f"{k:10s} {med[k]:9.3f} {a.new_tokens / med[k]:9.1f}")
    print(f"first streamed token after {med['first_token'] * 1000:.0f} ms")
    print(f"server / reference time: {result['server_over_reference']:.2f}x, "
          f"stream / reference: {result['stream_over_reference']:.2f}x")  # fmt: skip
    print(f"{a.clients} clients at once: {together:.1f} tokens/s in total")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
