"""Plots for evaluation reports: one bar chart per metric, one bar per model."""

from __future__ import annotations

import math

# Metrics where lower is better; the chart says so in its title.
LOWER_IS_BETTER = {"perplexity", "ter", "dpo_loss"}
# Metrics that span orders of magnitude between an untuned and a tuned model.
LOG_SCALE = {"perplexity"}


def plot_comparison(rows: list[dict], metrics: list[str] | None = None, ncols: int = 3):
    """A figure of bar charts: `rows` are {"name", "metrics": {...}} (evaluation_results.json)."""
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    if metrics is None:
        metrics = []
        for r in rows:
            metrics += [m for m in r.get("metrics", {}) if m not in metrics]
    metrics = [m for m in metrics if any(m in r.get("metrics", {}) for r in rows)]
    if not metrics:
        raise ValueError("no metrics to plot: every model's evaluation failed or was empty")
    ncols = min(ncols, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes.flat, metrics):
        values = [r.get("metrics", {}).get(metric, float("nan")) for r in rows]
        ax.bar(
            range(len(names)), values, color=[colors[i % len(colors)] for i in range(len(names))]
        )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{metric} ({arrow})", fontsize=9)
        if metric in LOG_SCALE and all(v > 0 for v in values if not math.isnan(v)):
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig
