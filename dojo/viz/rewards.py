"""Plots and tables for chapter 08 (GRPO): rewards per step, group advantages, before/after.

Notable choices:
- Reward curves read the run folder's `metrics.jsonl` (TRL's GRPO logs as `dojo.train` records
  them): `reward` is the weighted sum, `rewards/<function name>/mean` one line per reward
  function, so a reward that never fires is visible as a flat line at zero.
- Completions before/after come from `dojo.eval.task_accuracy`'s examples (the same greedy
  generations the run scores), paired by prompt.
"""

from __future__ import annotations

from pathlib import Path

from dojo.viz.preference import metric_series, read_rows


def reward_names(rows: list[dict]) -> list[str]:
    """The reward functions logged in `rows` (from keys `rewards/<name>/mean`), in first-seen order."""
    names: list[str] = []
    for row in rows:
        for key in row:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def plot_reward_curves(run: str | Path | list[dict]):
    """Mean reward per step (total and per reward function) and the mean completion length."""
    import matplotlib.pyplot as plt

    rows = read_rows(run)
    fig, (ax, length_ax) = plt.subplots(1, 2, figsize=(11, 3.2))
    steps, total = metric_series(rows, "reward")
    ax.plot(steps, total, color="black", lw=2, label="reward (weighted sum)")
    for name in reward_names(rows):
        ax.plot(*metric_series(rows, f"rewards/{name}/mean"), label=name, alpha=0.8)
    ax.set(xlabel="step", ylabel="mean reward over the group", title="reward per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    length_ax.plot(*metric_series(rows, "completions/mean_length"), label="mean")
    length_ax.plot(*metric_series(rows, "completions/max_length"), label="max", alpha=0.6)
    length_ax.set(xlabel="step", ylabel="tokens", title="completion length")
    length_ax.grid(alpha=0.3)
    length_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_group_advantages(rewards, advantages, group_size: int, labels=None):
    """Rewards and group-normalised advantages of each completion, one colour per prompt group."""
    import matplotlib.pyplot as plt

    rewards, advantages = list(map(float, rewards)), list(map(float, advantages))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bar_colors = [colors[(i // group_size) % len(colors)] for i in range(len(rewards))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3))
    for ax, values, title in zip(axes, (rewards, advantages), ("reward", "advantage")):
        ax.bar(range(len(values)), values, color=bar_colors)
        ax.axhline(0, color="black", lw=0.8)
        ax.set(title=title, xlabel="completion (grouped by prompt)")
        if labels:
            ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_accuracy_before_after(before: float, after: float, total: int, title: str = ""):
    """Two bars: exact-match accuracy before and after training."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    drawn = ax.bar(["before", "after"], [before, after], color=["tab:gray", "tab:green"])
    ax.bar_label(drawn, fmt="{:.1%}")
    ax.set(ylim=(0, max(before, after, 0.1) * 1.25), ylabel="exact match")
    ax.set_title(title or f"accuracy on {total} held-out problems", fontsize=10)
    fig.tight_layout()
    return fig


def completions_table(before: list[dict], after: list[dict], n: int = 8):
    """A DataFrame pairing each prompt's reply before and after training (with ✓ / ✗ marks)."""
    import pandas as pd

    after_by_prompt = {ex["prompt"]: ex for ex in after}
    rows = []
    for ex in before:
        later = after_by_prompt.get(ex["prompt"])
        if later is None:
            continue
        rows.append(
            {
                "prompt": ex["prompt"],
                "answer": ex["answer"],
                "before": ("✓ " if ex["correct"] else "✗ ") + ex["reply"],
                "after": ("✓ " if later["correct"] else "✗ ") + later["reply"],
            }
        )
        if len(rows) == n:
            break
    return pd.DataFrame(rows)
