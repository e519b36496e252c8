"""The evaluation report: every run folder and the base model on the same eval sets.

    python -m dojo.eval --runs runs/ [--base data/models/dojo-tiny] [--out runs/evaluation]
    DOJO_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 python -m dojo.eval --runs runs/ --judge

writes `evaluation_results.json`, `evaluation_results.md` (one table of metrics, one of
training figures) and `comparison.png`.

Notable choices:
- A run folder is a sub-folder of `--runs` with `config.yaml`, `model/` or checkpoints (what
  `dojo.train` writes). Its model is `model/` (a full model or a PEFT adapter).
- DPO's implicit reward needs a reference: each run's reference is the model it started from
  (`model_name_or_path` in its `config.yaml`), which is what its trainer used.
- Training figures (steps, initial / final loss, wall time) come from the run's trainer state:
  `trainer_state.json` of the run folder or its newest checkpoint, else `metrics.jsonl` and
  `summary.json`.
- A run that cannot be evaluated (no model, a broken folder, an eval set with missing columns)
  gets its error in the results and the table; the others are still evaluated. So do judge
  replies without a verdict (left out of `judge_score`) and an unreachable judge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from dojo.eval.suite import EvalSuite


def find_runs(runs_dir: str | Path) -> list[Path]:
    """The run folders under `runs_dir`, sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no such folder of runs")
    return sorted(
        p
        for p in runs_dir.iterdir()
        if p.is_dir()
        and ((p / "config.yaml").exists() or (p / "model").exists() or any(p.glob("checkpoint-*")))
    )


def run_model(run_dir: Path) -> Path:
    """The trained model (or adapter) of a run folder, or a clear error saying what is missing."""
    model = run_dir / "model"
    if (model / "config.json").exists() or (model / "adapter_config.json").exists():
        return model
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    hint = (
        f"; it stopped at {checkpoints[-1].name}: resume it with the same command, or pass "
        "that checkpoint as a model"
        if checkpoints
        else "; did the run finish?"
    )
    raise FileNotFoundError(
        f"{run_dir}: no trained model in {model} (config.json or adapter){hint}"
    )


def _trainer_state(run_dir: Path) -> tuple[dict | None, str | None]:
    candidates = [run_dir / "trainer_state.json", run_dir / "model" / "trainer_state.json"]
    candidates += sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[1]),
        reverse=True,
    )
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text()), str(path.relative_to(run_dir))
    return None, None


def training_figures(run_dir: str | Path) -> dict:
    """Steps, initial / final training loss (and reward), wall time, from the run's state."""
    run_dir = Path(run_dir)
    state, source = _trainer_state(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if state is not None:
        history, steps = state.get("log_history", []), state.get("global_step")
    else:
        from dojo.train.folder import read_metrics

        history, steps, source = read_metrics(run_dir), summary.get("steps"), "metrics.jsonl"
    # A checkpoint's state may stop before the end; metrics.jsonl has every logged step.
    from dojo.train.folder import read_metrics

    logged = read_metrics(run_dir)
    if logged and (not history or logged[-1].get("step", 0) > history[-1].get("step", 0)):
        history, source = logged, "metrics.jsonl"
    losses = [r["loss"] for r in history if isinstance(r.get("loss"), (int, float))]
    rewards = [r["reward"] for r in history if isinstance(r.get("reward"), (int, float))]
    runtime = next((r["train_runtime"] for r in reversed(history) if "train_runtime" in r), None)
    figures = {
        "method": summary.get("method") or _config(run_dir).get("method"),
        "steps": summary.get("steps", steps),
        "initial_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "wall_time_s": summary.get("wall_time_s") or runtime,
        "train_runtime_s": runtime or summary.get("train_runtime_s"),
        "source": source if history else None,
    }
    if rewards:
        figures |= {"initial_reward": rewards[0], "final_reward": rewards[-1]}
    return figures


def _config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _load(model_path, loaded: dict):
    """(model, tokenizer) for a model folder, hub id or adapter folder, cached by path."""
    from dojo.infer.load import load_for_inference, resolve_model

    device = "cpu" if _cpu() else None
    path = Path(model_path)
    if (path / "adapter_config.json").exists():
        key = str(path.resolve())
        if key not in loaded:
            loaded[key] = load_for_inference(adapter=path, device=device)
    else:
        resolved = resolve_model(model_path)  # repo-relative paths of recipes work anywhere
        key = str(resolved)
        if key not in loaded:
            loaded[key] = load_for_inference(resolved, device=device)
    return loaded[key]


def _cpu() -> bool:
    import dojo

    return dojo.profile().device == "cpu"


def evaluate_model(name: str, model_path, suite: EvalSuite, ref_path=None, cache=None) -> dict:
    """One row of the report: metrics, samples and errors of one model."""
    cache = {} if cache is None else cache
    row = {"name": name, "path": str(model_path), "metrics": {}, "samples": [], "errors": {}}
    try:
        model, tokenizer = _load(model_path, cache)
    except (OSError, ValueError) as e:
        row["errors"]["model"] = f"{type(e).__name__}: {e}"
        return row
    ref, ref_error = None, None
    if ref_path and suite.preference is not None:
        try:
            ref = _load(ref_path, cache)[0]
        except (OSError, ValueError) as e:  # the other metrics do not need it
            ref_error = f"{type(e).__name__}: {e}; implicit-reward metrics left out"
    out = suite.run(model, tokenizer, ref_model=ref)
    row.update(metrics=out.metrics, samples=out.samples, errors=out.errors)
    if ref_error:
        row["errors"]["reference"] = ref_error
    if ref_path:
        row["reference"] = str(ref_path)
    return row


def evaluate_runs(
    runs_dir: str | Path,
    base_model: str | Path | None = None,
    suite: EvalSuite | None = None,
    out_dir: str | Path | None = None,
) -> dict:
    """Evaluate the base model and every run in `runs_dir`; write JSON, Markdown and plots."""
    import dojo

    suite = suite or EvalSuite.default()
    base_model = Path(base_model or dojo.profile().model)
    out_dir = Path(out_dir) if out_dir else Path(runs_dir) / "evaluation"
    cache: dict = {}
    rows = [evaluate_model("base", base_model, suite, cache=cache) | {"training": None}]
    for run_dir in find_runs(runs_dir):
        try:
            model_path = run_model(run_dir)
        except FileNotFoundError as e:
            row = {"name": run_dir.name, "path": str(run_dir), "metrics": {}, "samples": []}
            rows.append(row | {"errors": {"model": str(e)}, "training": training_figures(run_dir)})
            continue
        start = _config(run_dir).get("model_name_or_path")
        row = evaluate_model(run_dir.name, model_path, suite, start, cache)
        rows.append(row | {"training": training_figures(run_dir)})
    results = {"base_model": str(base_model), "runs_dir": str(runs_dir), "models": rows}
    write_report(results, out_dir)
    return results


METRIC_ORDER = [
    "accuracy",
    "judge_score",
    "perplexity",
    "pref_logp_accuracy",
    "pref_margin",
    "pref_reward_accuracy",
    "pref_reward_margin",
    "dpo_loss",
    "bleu",
    "chrf",
    "ter",
    "rouge1",
    "rouge2",
    "rougeL",
]


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(results: dict) -> str:
    """The metrics table (one row per model) and the training-figures table, in Markdown."""
    rows = results["models"]
    present = {m for r in rows for m in r["metrics"]}
    metrics = [m for m in METRIC_ORDER if m in present]
    metrics += sorted(present - set(metrics))
    lines = ["| model | " + " | ".join(metrics) + " | errors |"]
    lines.append("|" + " --- |" * (len(metrics) + 2))
    for r in rows:
        errors = "; ".join(f"{k}: {v}" for k, v in r["errors"].items()).replace("|", "/")
        cells = [_cell(r["metrics"].get(m)) for m in metrics]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {errors or ''} |")
    trained = [r for r in rows if r.get("training")]
    if trained:
        keys = ["method", "steps", "initial_loss", "final_loss", "wall_time_s"]
        lines += ["", "| run | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
        for r in trained:
            lines.append(
                f"| {r['name']} | " + " | ".join(_cell(r["training"].get(k)) for k in keys) + " |"
            )
    return "\n".join(lines) + "\n"


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """evaluation_results.json, evaluation_results.md and comparison.png in `out_dir`."""
    import matplotlib.pyplot as plt

    from dojo.viz.eval import plot_comparison

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "evaluation_results.json",
        "markdown": out_dir / "evaluation_results.md",
    }
    files["json"].write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    files["markdown"].write_text(markdown_table(results), encoding="utf-8")
    rows = [r for r in results["models"] if r["metrics"]]
    if rows:
        fig = plot_comparison(
            rows, [m for m in METRIC_ORDER if any(m in r["metrics"] for r in rows)]
        )
        files["plot"] = out_dir / "comparison.png"
        fig.savefig(files["plot"], dpi=100)
        plt.close(fig)
    return files
