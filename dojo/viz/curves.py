"""Training curves from run folders: loss, reward or any logged metric, one run or several.

Every `dojo.train` run writes `metrics.jsonl` (one JSON object per logging step, with `step`);
these helpers read it and draw it, so notebooks 06-09 and the run folder's own `loss.png`
share one picture. Notable choices:
- A run is named by its folder, a `RunResult`, or a list of metric dicts, so a notebook can
  plot what it just trained without touching the disk twice.
- `smooth` is an exponential moving average (TensorBoard's slider), drawn over the faint raw
  curve: tiny-model losses are noisy and the trend is what a reader should see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Run = Any  # a run folder (str | Path), a RunResult (has .run_dir), or a list of metric dicts


def read_metrics(run: Run) -> list[dict]:
    """The logged rows of a run (empty when nothing was logged yet)."""
    if isinstance(run, list):
        return run
    run_dir = Path(getattr(run, "run_dir", run))
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(run: Run, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric; rows that did not log it are skipped."""
    rows = [r for r in read_metrics(run) if metric in r and r[metric] is not None]
    return [r["step"] for r in rows], [float(r[metric]) for r in rows]


def ema(values: Sequence[float], smooth: float) -> list[float]:
    """Exponential moving average with TensorBoard's bias correction (smooth in [0, 1))."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = smooth * avg + (1 - smooth) * v
        out.append(avg / (1 - smooth**i))
    return out


def _label(run: Run) -> str:
    return Path(getattr(run, "run_dir", run)).name if not isinstance(run, list) else "run"


def plot_metric(
    runs: Run | Sequence[Run] | Mapping[str, Run],
    metric: str = "loss",
    ax=None,
    smooth: float = 0.0,
    title: str | None = None,
):
    """Draw `metric` against the step for one run or several (a dict gives them labels)."""
    import matplotlib.pyplot as plt

    if isinstance(runs, Mapping):
        named = list(runs.items())
    elif isinstance(runs, (str, Path)) or hasattr(runs, "run_dir") or _is_rows(runs):
        named = [(_label(runs), runs)]
    else:
        named = [(_label(r), r) for r in runs]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, run in named:
        steps, values = series(run, metric)
        if not steps:
            continue
        if smooth:
            (line,) = ax.plot(steps, values, alpha=0.25)
            ax.plot(steps, ema(values, smooth), color=line.get_color(), label=label)
        else:
            ax.plot(steps, values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.grid(alpha=0.3)
    if len(named) > 1:
        ax.legend()
    return ax


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and (not value or isinstance(value[0], dict))


def plot_run(run: Run, metrics: Sequence[str] = ("loss",), smooth: float = 0.0, path=None):
    """One panel per metric of a single run (train and eval loss share a panel); with `path`,
    saves it there (off-screen) instead of showing it. Returns the figure."""
    size = (5.5 * len(metrics), 3.5)
    if path is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size)
    else:  # a bare Figure draws without pyplot, leaving a notebook's backend alone
        from matplotlib.figure import Figure

        fig = Figure(figsize=size)
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        plot_metric(run, metric, ax=ax, smooth=smooth, title=metric)
        if metric == "loss" and series(run, "eval_loss")[0]:
            ax.plot(*series(run, "eval_loss"), "o-", label="eval loss")
            ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
