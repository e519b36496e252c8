"""Padded vs packed padding-free SFT batches: useful (non-pad) tokens per second, in one run.

Both arms train their own copy of the same model (dojo-tiny by default) with AdamW on the same
tokenized SFT data (every shipped `data/sft` train file, assistant-only labels), for the same
number of optimizer steps:

- padded: `batch_size` conversations per step, right-padded to the longest in the batch (the
  default of TRL's collator without packing);
- packed: the same stream packed best-fit-decreasing into rows of `max_length` tokens, and as many
  rows per step as carry about the same number of useful tokens as a padded step; the rows are
  fed with positions restarting per conversation and no attention mask
  (`dojo.data.PackedCollator`). On CUDA with flash-attention the rows are joined into one
  padding-free row (`--flatten`); on the CPU path (SDPA) each packed row stays a row and only the
  short rows' tails are filled, because SDPA's mask over one joined row is quadratic in its length.

Steps of the two arms alternate, so a noisy shared machine slows both alike; the CPU seconds of
the process are reported too, since on a loaded machine the wall clock also counts the wait for
a core. Run:

    python benchmarks/packing.py            # prints a table and the ratio
    python benchmarks/packing.py --steps 60 --json results.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from dojo import paths
from dojo.data import (
    PackedCollator,
    PaddedCollator,
    load,
    pack_dataset,
    padding_waste,
    tokenize_sft,
)


def _batches_padded(rows: list[dict], batch_size: int, steps: int) -> list[list[dict]]:
    return [rows[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def _batches_packed(packed: list[dict], rows_per_step: int, steps: int) -> list[list[dict]]:
    return [packed[i * rows_per_step : (i + 1) * rows_per_step] for i in range(steps)]


def _useful(batch: dict, pad_token_id: int) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int((batch["input_ids"] != pad_token_id).sum())  # packed rows: only tails are pad


def _step(model, optimizer, batch: dict) -> tuple[float, float]:
    """One optimizer step: (wall seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, time.process_time() - cpu


def _model(path: str, attn: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn)
    model.config.use_cache = False
    return model.train()


def run(
    model_path: str,
    data: str,
    steps: int,
    batch_size: int,
    max_length: int,
    warmup: int,
    seed: int,
    attn: str,
    flatten: bool,
) -> dict:
    """Train both arms for `steps` steps (after `warmup` untimed ones) and measure throughput."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    dataset = load(data, "sft", seed=seed)
    tokenized, _ = tokenize_sft(dataset, tok, max_length=max_length, on_error="skip")
    rows = [dict(r) for r in tokenized]
    random.Random(seed).shuffle(rows)
    total = steps + warmup
    stream = rows[: total * batch_size]  # what the padded arm consumes
    packed = [dict(r) for r in pack_dataset(tokenized.select(range(len(rows))), max_length)]
    random.Random(seed).shuffle(packed)  # BFD sorts by length; mix long and short rows again
    mean_fill = statistics.fmean(len(r["input_ids"]) for r in packed)
    mean_len = statistics.fmean(len(r["input_ids"]) for r in stream)
    rows_per_step = max(1, round(batch_size * mean_len / mean_fill))
    if len(packed) < total * rows_per_step or len(rows) < total * batch_size:
        raise SystemExit(f"not enough data for {total} steps; lower --steps or --batch-size")

    arms = {
        "padded": (PaddedCollator(tok.pad_token_id), _batches_padded(stream, batch_size, total)),
        "packed": (
            PackedCollator(flatten=flatten, pad_token_id=tok.pad_token_id),
            _batches_packed(packed, rows_per_step, total),
        ),
    }
    state = {}
    for name in arms:
        model = _model(model_path, attn)
        state[name] = {
            "model": model,
            "opt": torch.optim.AdamW(model.parameters(), lr=1e-4),
            "seconds": 0.0,
            "cpu_seconds": 0.0,
            "useful": 0,
            "computed": 0,
        }
    for i in range(total):  # alternate arms step by step
        for name, (collate, batches) in arms.items():
            batch = collate(batches[i])
            seconds, cpu_seconds = _step(state[name]["model"], state[name]["opt"], batch)
            if i >= warmup:
                state[name]["seconds"] += seconds
                state[name]["cpu_seconds"] += cpu_seconds
                state[name]["useful"] += _useful(batch, tok.pad_token_id)
                state[name]["computed"] += batch["input_ids"].numel()

    result = {
        "model": model_path,
        "data": data,
        "steps": steps,
        "batch_size": batch_size,
        "packed_rows_per_step": rows_per_step,
        "max_length": max_length,
        "attn_implementation": attn,
        "flatten": flatten,
        "threads": torch.get_num_threads(),
        "conversations": len(rows),
        "waste": padding_waste([len(r["input_ids"]) for r in stream], batch_size, max_length),
    }
    for name, s in state.items():
        result[name] = {
            "useful_tokens": s["useful"],
            "computed_tokens": s["computed"],
            "seconds": round(s["seconds"], 3),
            "useful_tokens_per_s": round(s["useful"] / s["seconds"], 1),
            "cpu_seconds": round(s["cpu_seconds"], 3),
            "useful_tokens_per_cpu_s": round(s["useful"] / s["cpu_seconds"], 1),
            "pad_share": round(1 - s["useful"] / s["computed"], 3),
        }
    result["ratio"] = round(
        result["packed"]["useful_tokens_per_s"] / result["padded"]["useful_tokens_per_s"], 2
    )
    # On a shared machine the wall clock also counts waiting for a core; CPU time does not.
    result["ratio_cpu"] = round(
        result["packed"]["useful_tokens_per_cpu_s"] / result["padded"]["useful_tokens_per_cpu_s"],
        2,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(paths.TINY_MODEL))
    parser.add_argument("--data", default=str(paths.DATA_DIR / "sft"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--flatten", action="store_true", help="one joined row per step (flash)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    r = run(
        args.model,
        args.data,
        args.steps,
        args.batch_size,
        args.max_length,
        args.warmup,
        args.seed,
        args.attn,
        args.flatten,
    )
    print(f"{r['steps']} steps on {r['conversations']} conversations from {r['data']}")
    print(
        f"padded: {r['batch_size']} conversations/step; packed: {r['packed_rows_per_step']} rows of {r['max_length']}/step"
    )
    print(
        f"{'arm':<8}{'useful tok':>12}{'computed tok':>14}{'pad share':>11}{'seconds':>10}"
        f"{'useful tok/s':>14}{'CPU s':>9}{'tok/CPU s':>11}"
    )
    for arm in ("padded", "packed"):
        a = r[arm]
        print(
            f"{arm:<8}{a['useful_tokens']:>12}{a['computed_tokens']:>14}{a['pad_share']:>11.1%}"
            f"{a['seconds']:>10.2f}{a['useful_tokens_per_s']:>14.0f}{a['cpu_seconds']:>9.2f}"
            f"{a['useful_tokens_per_cpu_s']:>11.0f}"
        )
    print(f"packed / padded useful tokens per second: {r['ratio']:.2f}x (wall clock)")
    print(f"packed / padded useful tokens per CPU second: {r['ratio_cpu']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
