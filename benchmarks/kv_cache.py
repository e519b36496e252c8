"""Generation with and without the KV cache: new tokens per second, our model (HF for reference).

Without a cache, every new token reruns the whole prefix through the model (work grows with the
square of the length); with `KVCache` each step feeds only the newest token and attends to the
stored keys and values. Greedy decoding, so both arms must produce the same tokens, which is
checked. HF's `generate` (same weights, `to_hf`) runs with and without its cache as a reference.
Arms alternate repeat by repeat. Run:

    python benchmarks/kv_cache.py                     # prints a table and the speed-up
    python benchmarks/kv_cache.py --new-tokens 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dojo.models import Transformer, TransformerConfig, to_hf


def _timed(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(
    config: TransformerConfig,
    prompt_len: int = 32,
    new_tokens: int = 128,
    batch_size: int = 1,
    repeats: int = 3,
    with_hf: bool = True,
    seed: int = 0,
) -> dict:
    """Time greedy generation of `new_tokens` tokens with and without the cache; return numbers."""
    torch.manual_seed(seed)
    ours = Transformer(config).eval()
    prompt = torch.randint(0, config.vocab_size, (batch_size, prompt_len))
    arms = {
        "dojo_cache": lambda: ours.generate(prompt, new_tokens, use_cache=True),
        "dojo_no_cache": lambda: ours.generate(prompt, new_tokens, use_cache=False),
    }
    if with_hf:
        hf = to_hf(ours)
        hf.generation_config.eos_token_id = None  # always generate every token
        mask = torch.ones_like(prompt)
        for name, cache in (("hf_cache", True), ("hf_no_cache", False)):
            arms[name] = lambda cache=cache: hf.generate(
                prompt,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=cache,
                pad_token_id=0,
            )
    seconds = dict.fromkeys(arms, 0.0)
    outputs = {}
    for _ in range(repeats):
        for name, fn in arms.items():
            elapsed, outputs[name] = _timed(fn)
            seconds[name] += elapsed
    reference = outputs["dojo_cache"]
    same = {name: bool(torch.equal(out, reference)) for name, out in outputs.items()}
    tokens = repeats * batch_size * new_tokens
    result = {
        "parameters": ours.num_parameters(),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "same_tokens": same,
    }
    for name in arms:
        result[name] = {
            "seconds": round(seconds[name], 3),
            "tokens_per_s": round(tokens / seconds[name], 1),
        }
    result["speedup"] = round(seconds["dojo_no_cache"] / seconds["dojo_cache"], 2)
    if with_hf:
        result["hf_speedup"] = round(seconds["hf_no_cache"] / seconds["hf_cache"], 2)
        result["dojo_vs_hf_cached"] = round(seconds["hf_cache"] / seconds["dojo_cache"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=688)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip the HF reference arms")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    config = TransformerConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        tie_word_embeddings=True,
        max_position_embeddings=max(2048, args.prompt_len + args.new_tokens),
    )
    r = run(
        config,
        args.prompt_len,
        args.new_tokens,
        args.batch_size,
        args.repeats,
        not args.no_hf,
    )
    print(
        f"{r['parameters']:,} parameters; greedy, prompt {r['prompt_len']}, "
        f"{r['new_tokens']} new tokens x batch {r['batch_size']}, {r['repeats']} repeats"
    )
    print(f"{'arm':<15}{'seconds':>10}{'new tok/s':>12}{'same tokens':>13}")
    for arm, same in r["same_tokens"].items():
        print(f"{arm:<15}{r[arm]['seconds']:>10.2f}{r[arm]['tokens_per_s']:>12.0f}{same!s:>13}")
    print(f"KV cache speed-up (dojo): {r['speedup']:.2f}x")
    if "hf_speedup" in r:
        print(f"KV cache speed-up (HF generate): {r['hf_speedup']:.2f}x")
        print(f"dojo cached vs HF cached: {r['dojo_vs_hf_cached']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
