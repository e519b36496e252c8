"""Mixture-of-experts dispatch, forward (+ backward) tokens/s: grouped vs the naive loop vs HF.

Three arms hold the same weights and see the same token batches:
- `naive`: our teaching dispatcher, every expert on every token, weighted by the gate (0 where
  not chosen): num_experts / top_k times the routed work;
- `grouped`: our fast dispatcher, token copies sorted by expert, one pass per expert on its
  contiguous slice, one scatter back;
- `hf_mixtral`: transformers' `MixtralSparseMoeBlock` (made with `moe_to_hf`).
Outputs are checked equal before timing; calls of the arms alternate, so a noisy shared machine
slows all alike. Run:

    python benchmarks/moe_dispatch.py                 # 8 experts, top-2: prints the ratios
    python benchmarks/moe_dispatch.py --experts 16 --top-k 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dojo.models.moe import SparseMoE, hf_moe_forward, moe_to_hf


def _timed(fn, x: torch.Tensor, backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        fn(x).square().mean().backward()
    else:
        with torch.no_grad():
            fn(x)
    return time.perf_counter() - start


def run(
    hidden: int = 256,
    intermediate: int = 512,
    experts: int = 8,
    top_k: int = 2,
    tokens: int = 2048,
    repeats: int = 5,
    backward: bool = True,
    seed: int = 0,
) -> dict:
    """Time each arm on `repeats` batches of `tokens` tokens; return tokens/s and ratios."""
    torch.manual_seed(seed)
    moe = SparseMoE(hidden, intermediate, experts, top_k, return_router_logits=False)
    hf = moe_to_hf(moe)
    naive = SparseMoE(hidden, intermediate, experts, top_k, dispatch="naive")
    naive.load_state_dict(moe.state_dict())
    naive.return_router_logits = False
    arms = {"naive": naive, "grouped": moe, "hf_mixtral": lambda x: hf(x[None])[0]}
    x = torch.randn(tokens, hidden)
    with torch.no_grad():
        reference = hf_moe_forward(hf, x[None])[0][0]
        max_diff = {name: (fn(x) - reference).abs().max().item() for name, fn in arms.items()}
    seconds = dict.fromkeys(arms, 0.0)
    for i in range(repeats + 1):  # the first round warms up and is not counted
        x = torch.randn(tokens, hidden, requires_grad=backward)
        for name, fn in arms.items():
            elapsed = _timed(fn, x, backward)
            if i:
                seconds[name] += elapsed
    result = {
        "hidden": hidden,
        "intermediate": intermediate,
        "experts": experts,
        "top_k": top_k,
        "tokens": tokens,
        "repeats": repeats,
        "backward": backward,
        "threads": torch.get_num_threads(),
        "max_abs_diff_vs_hf": max_diff,
    }
    for name in arms:
        result[name] = {"tokens_per_s": round(repeats * tokens / seconds[name], 1)}
    result["grouped_vs_naive"] = round(seconds["naive"] / seconds["grouped"], 2)
    result["grouped_vs_hf"] = round(seconds["hf_mixtral"] / seconds["grouped"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--forward-only", action="store_true", help="time inference only")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    r = run(
        args.hidden,
        args.intermediate,
        args.experts,
        args.top_k,
        args.tokens,
        args.repeats,
        not args.forward_only,
    )
    what = "forward" if args.forward_only else "forward+backward"
    print(
        f"{r['experts']} experts, top-{r['top_k']}, hidden {r['hidden']}, expert width "
        f"{r['intermediate']}, {r['tokens']} tokens x {r['repeats']}, {what} "
        f"({r['threads']} threads)"
    )
    print(f"{'arm':<12}{'tokens/s':>12}{'max |diff| vs HF':>20}")
    for arm in ("naive", "grouped", "hf_mixtral"):
        diff = r["max_abs_diff_vs_hf"][arm]
        print(f"{arm:<12}{r[arm]['tokens_per_s']:>12.0f}{diff:>20.2e}")
    print(f"grouped / naive loop: {r['grouped_vs_naive']:.2f}x")
    print(f"grouped / HF Mixtral block: {r['grouped_vs_hf']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
