"""The run folder: where a run's config, metrics, curves, samples, checkpoints and model live.

Layout of `runs/<name>/`:
    config.yaml             the resolved recipe (every key, secrets redacted)
    metrics.jsonl           one JSON object per logging step (loss, lr, grad norm, epoch…)
    loss.png                the training curve (reward.png for GRPO)
    samples_start.jsonl     generations before training; samples_end.jsonl after
    summary.json            accuracy before/after, steps, wall time, tokens/s
    checkpoint-*/           resumable checkpoints (optimizer, scheduler, RNG, data position),
                            written in .checkpoint-staging/ and renamed into place when whole
    model/                  the final model or adapter with its tokenizer

Re-running the same command finds the same folder: an unfinished run resumes from its last
checkpoint, a finished one is kept and the new run goes to `<name>-2`, `<name>-3`, …
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import yaml
from transformers import TrainerCallback

from dojo.viz.curves import read_metrics

DONE = "summary.json"
STAGING = ".checkpoint-staging"  # where a checkpoint is written before it is renamed into place


def resolve_run_dir(output_dir: str | Path) -> Path:
    """The folder to (re)use: the newest unfinished run of this name, else a fresh one."""
    base = Path(output_dir)
    candidates = [base] + sorted(
        base.parent.glob(f"{base.name}-[0-9]*"), key=lambda p: int(p.name.rsplit("-", 1)[1])
    )
    existing = [p for p in candidates if p.exists()]
    if not existing:
        return base
    if not (existing[-1] / DONE).exists():
        return existing[-1]
    return base.parent / f"{base.name}-{len(existing) + 1}"


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in the folder.

    transformers writes `trainer_state.json` last (after weights, optimizer, scheduler and RNG
    states), so a checkpoint without it was cut off while saving and is never resumed from.
    """
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[1]), default=None)


def drop_incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Delete checkpoints a killed run left half-written; returns what was deleted."""
    broken = [p for p in run_dir.glob("checkpoint-*") if not (p / "trainer_state.json").exists()]
    broken += [run_dir / STAGING] if (run_dir / STAGING).exists() else []
    for p in broken:
        shutil.rmtree(p, ignore_errors=True)
    return broken


def write_config(run_dir: Path, config_dict: dict) -> None:
    """The resolved recipe as YAML; values YAML cannot hold are written as strings."""
    clean = json.loads(json.dumps(config_dict, default=str))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(clean, sort_keys=True))


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def truncate_metrics(run_dir: Path, checkpoint: Path) -> None:
    """Drop the metrics logged after `checkpoint`: the resumed run logs those steps again."""
    step = int(checkpoint.name.split("-")[1])
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    write_jsonl(run_dir / "metrics.jsonl", kept)


class MetricsLogger(TrainerCallback):
    """Appends every log to metrics.jsonl, and stops the run on a NaN or infinite loss."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.jsonl"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLossError(state.global_step, loss, last_checkpoint(self.path.parent))


class NonFiniteLossError(RuntimeError):
    """Training diverged: says at which step, where to resume from, and what to try."""

    def __init__(self, step: int, loss: float, checkpoint: Path | None):
        where = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        super().__init__(
            f"loss became {loss} at step {step}; {where}. Try a lower learning_rate, "
            "max_grad_norm: 1.0, or bf16 instead of fp16 (fp16 overflows easily)."
        )


def plot_curves(run_dir: Path, metric: str = "loss") -> Path | None:
    """A PNG of `metric` (with the eval loss, when logged) against the step, in the run folder."""
    from dojo.viz.curves import plot_run, series

    if not series(run_dir, metric)[0]:
        return None
    out = run_dir / f"{metric.split('/')[0]}.png"
    plot_run(run_dir, [metric], path=out)
    return out


class AtomicCheckpoints:
    """Trainer mixin: each checkpoint is written whole in a staging folder, then renamed.

    transformers writes `checkpoint-N/` file by file; a run killed while saving would leave a
    folder that looks resumable but is not. Here the trainer saves into `.checkpoint-staging/`,
    and only a complete checkpoint is moved to `checkpoint-N/` (one rename, atomic on a POSIX
    file system) before older ones are rotated out.
    """

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial=trial))
        staging, name = run_dir / STAGING, f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._get_output_dir = lambda trial=None: str(staging)  # every rank writes its shards there
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = run_dir / name
            if final.exists():  # the same step saved again (a resumed run)
                shutil.rmtree(final)
            os.replace(staging / name, final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(
                str(run_dir), self.args.save_total_limit, self.state.best_model_checkpoint
            )
        self.accelerator.wait_for_everyone()


def with_atomic_checkpoints(trainer_cls: type) -> type:
    """`trainer_cls` whose checkpoints are written atomically (see AtomicCheckpoints)."""
    return type(trainer_cls.__name__, (AtomicCheckpoints, trainer_cls), {})
