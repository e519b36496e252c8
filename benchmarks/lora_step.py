"""Benchmark: from-scratch LoRA (dojo.adapters) vs PEFT LoRA, side by side in one run.

1. Training step time (forward + backward + AdamW step) on the same model, same adapters
   (r=16, all linear layers), same batch; reported as the ratio ours / PEFT.
2. Generation latency with the adapter unmerged (extra matmuls every token) and merged
   (plain linear layers), for both implementations.

    python benchmarks/lora_step.py                # a random ~30M-parameter Llama, CPU
    python benchmarks/lora_step.py --model data/models/dojo-tiny --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from dojo.adapters import add_lora, merge_lora


def build_model(name: str | None, device: str) -> torch.nn.Module:
    if name:
        return AutoModelForCausalLM.from_pretrained(name).to(device)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    return LlamaForCausalLM(config).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_times(model, ids: torch.Tensor, steps: int, warmup: int, device: str) -> list[float]:
    """Seconds per training step, after `warmup` untimed steps."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def generation_ms_per_token(
    model, prompt: torch.Tensor, tokens: int, repeats: int, device: str
) -> float:
    """Median milliseconds per generated token (greedy, batch 1)."""
    model.eval()
    gen = {
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": 0,
    }
    with torch.no_grad():
        model.generate(input_ids=prompt, **gen)  # warm-up
        runs = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            model.generate(input_ids=prompt, **gen)
            sync(device)
            runs.append((time.perf_counter() - start) / tokens * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder or hub id (default: random)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    base = build_model(args.model, args.device)
    vocab = base.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=gen).to(args.device)
    prompt = ids[:1, :16]

    ours = add_lora(copy.deepcopy(base), r=args.rank, alpha=2 * args.rank)
    config = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear")
    theirs = get_peft_model(copy.deepcopy(base), config)

    # Interleave the two implementations so machine load drifts hit both alike.
    ours_t, theirs_t = [], []
    for _ in range(2):
        ours_t += step_times(ours, ids, args.steps // 2, 1, args.device)
        theirs_t += step_times(theirs, ids, args.steps // 2, 1, args.device)
    step_ours, step_theirs = statistics.median(ours_t), statistics.median(theirs_t)

    latency = {
        "ours unmerged": generation_ms_per_token(ours, prompt, args.new_tokens, 3, args.device),
        "peft unmerged": generation_ms_per_token(theirs, prompt, args.new_tokens, 3, args.device),
    }
    latency["ours merged"] = generation_ms_per_token(
        merge_lora(ours), prompt, args.new_tokens, 3, args.device
    )
    latency["peft merged"] = generation_ms_per_token(
        theirs.merge_and_unload(), prompt, args.new_tokens, 3, args.device
    )

    params = sum(p.numel() for p in base.parameters())
    results = {
        "device": args.device,
        "model": args.model or "random Llama",
        "params_M": round(params / 1e6, 1),
        "batch x seq_len": f"{args.batch} x {args.seq_len}",
        "rank": args.rank,
        "train step ms (ours)": round(step_ours * 1000, 1),
        "train step ms (peft)": round(step_theirs * 1000, 1),
        "train step ratio ours/peft": round(step_ours / step_theirs, 3),
        **{f"generate ms/token ({k})": round(v, 2) for k, v in latency.items()},
        "merged speed-up (ours)": round(latency["ours unmerged"] / latency["ours merged"], 2),
        "merged speed-up (peft)": round(latency["peft unmerged"] / latency["peft merged"], 2),
    }
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
