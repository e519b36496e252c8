"""The data a run needs: the trainer's datasets, held-out problems to score, sample prompts.

Notable choices:
- Everything goes through `dojo.data` (format detection, conversion to TRL's conversational
  format, validation with file/line errors), so a recipe may point at ShareGPT, Alpaca, OpenAI
  `messages` or TRL-format files alike.
- The scored problems come from `accuracy_dataset` (prompts with an `answer` column, or
  conversations whose last reply is the answer); they are the same for every method, so SFT, DPO
  and GRPO runs on dojo-tiny report comparable accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset

from dojo.train.config import RunConfig

# dojo.data's loader knows the trainers by the kind of data they read; SimPO reads DPO's.
DATA_METHOD = {"simpo": "dpo"}

# The columns each TRL trainer reads; others (task, answer…) are dropped before training,
# except for GRPO, which hands extra columns (the answer) to the reward functions.
COLUMNS = {
    "pretrain": ("text",),
    "sft": ("messages", "tools"),
    "dpo": ("prompt", "chosen", "rejected"),
    "orpo": ("prompt", "chosen", "rejected"),
    "simpo": ("prompt", "chosen", "rejected"),
    "reward": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}


@dataclass
class TrainingData:
    """The trainer's datasets plus what the run scores and shows before and after training."""

    train: Dataset
    eval: Dataset | None
    problems: list[tuple[list[dict], str]]  # (prompt messages, expected answer) to score
    sample_prompts: list[list[dict]]
    summary: dict = field(default_factory=dict)


def _keep_columns(ds: Dataset | None, method: str) -> Dataset | None:
    keep = COLUMNS.get(method)
    if ds is None or keep is None:
        return ds
    return ds.select_columns([c for c in ds.column_names if c in keep])


def load_training_data(config: RunConfig) -> TrainingData:
    """Read, convert, validate and trim the recipe's datasets for its method's trainer."""
    from dojo.data import load, load_dataset_for
    from dojo.data.load import METHOD_KINDS

    d = config.dojo
    method = DATA_METHOD.get(d.method, d.method)
    fmt = d.dataset_format or "auto"
    train, eval_ds, _ = load_dataset_for(
        method,
        d.dataset,
        split=d.dataset_split,
        max_samples=d.max_samples,
        seed=config.trainer.seed,
        format=fmt,
    )
    if d.eval_dataset:
        eval_ds = load(d.eval_dataset, METHOD_KINDS[method], fmt)
    if d.max_eval_samples and eval_ds is not None:
        eval_ds = eval_ds.select(range(min(d.max_eval_samples, len(eval_ds))))
    problems = []
    if d.accuracy_dataset and d.accuracy_samples > 0:
        from dojo.eval.suite import load_problems

        problems = load_problems(d.accuracy_dataset, d.accuracy_samples)
    samples = [prompt for prompt, _ in problems[: d.sample_prompts]]
    summary = {"train_records": len(train), "eval_records": len(eval_ds) if eval_ds else 0}
    return TrainingData(
        _keep_columns(train, d.method), _keep_columns(eval_ds, d.method), problems, samples, summary
    )
