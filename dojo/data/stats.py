"""Length statistics of a conversational dataset: tokens per role, turns, what truncation cuts.

Notable choices:
- A message's length is the token count of its content alone (no template tokens), so the
  per-role histograms compare across chat templates; the templated total per conversation is
  counted separately, and that is what `max_length` and truncation apply to.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from dojo.data.sft import tokenize_conversation


def _templated_length(tokenizer: Any, example: dict) -> int:
    out = tokenize_conversation(tokenizer, example["messages"], example.get("tools"), "all")
    return len(out["input_ids"])


def length_stats(dataset: Any, tokenizer: Any, max_length: int | None = None) -> dict[str, Any]:
    """Token lengths per role, turns per conversation, templated lengths and truncation counts."""
    per_role: dict[str, list[int]] = defaultdict(list)
    turns, totals = [], []
    for example in dataset:
        messages = example["messages"]
        for m in messages:
            content = m.get("content") or ""
            per_role[m["role"]].append(
                len(tokenizer(content, add_special_tokens=False)["input_ids"])
            )
        turns.append(sum(m["role"] == "assistant" for m in messages))
        totals.append(_templated_length(tokenizer, example))
    truncated = sum(n > max_length for n in totals) if max_length else 0
    return {
        "conversations": len(totals),
        "tokens_per_role": dict(per_role),
        "assistant_turns": turns,
        "templated_lengths": totals,
        "max_length": max_length,
        "truncated": truncated,
        "summary": _summary_table(per_role, turns, totals),
    }


def _describe(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 1) if values else 0.0,
        "median": statistics.median(values) if values else 0,
        "p95": ordered[int(0.95 * (len(ordered) - 1))] if values else 0,
        "max": ordered[-1] if values else 0,
    }


def _summary_table(per_role: dict, turns: list[int], totals: list[int]) -> dict[str, dict]:
    table = {f"{role} tokens": _describe(v) for role, v in per_role.items()}
    table["assistant turns"] = _describe(turns)
    table["templated tokens"] = _describe(totals)
    return table


def plot_length_stats(stats: dict[str, Any], bins: int = 30):
    """Histograms: content tokens per role, assistant turns, templated length with max_length."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    for role, values in stats["tokens_per_role"].items():
        axes[0].hist(values, bins=bins, alpha=0.6, label=f"{role} ({len(values)})")
    axes[0].set(title="content tokens per message", xlabel="tokens", ylabel="messages")
    axes[0].legend()
    turns = stats["assistant_turns"]
    axes[1].hist(turns, bins=range(1, max(turns) + 2), align="left", rwidth=0.8)
    axes[1].set(title="assistant turns per conversation", xlabel="turns", ylabel="conversations")
    axes[2].hist(stats["templated_lengths"], bins=bins, color="gray")
    if stats["max_length"]:
        axes[2].axvline(stats["max_length"], color="red", linestyle="--", label="max_length")
        axes[2].legend(title=f"{stats['truncated']} truncated")
    axes[2].set(title="templated tokens per conversation", xlabel="tokens", ylabel="conversations")
    fig.tight_layout()
    return fig
