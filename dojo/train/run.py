"""One training run, the same in a notebook cell and under `accelerate launch -m dojo.train`.

`train()` resolves the recipe, finds (or resumes) the run folder, loads model and data, scores
held-out problems and writes sample generations, trains with the method's TRL trainer, then
scores again and writes the curves and a summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from dojo.train import folder
from dojo.train.config import RunConfig, load_config
from dojo.train.data import load_training_data
from dojo.train.model import load_model, load_tokenizer, peft_config_for


@dataclass
class RunResult:
    """What a finished run produced: its folder, the summary, and the trained model."""

    run_dir: Path
    summary: dict
    model: object
    tokenizer: object


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _say(*args) -> None:
    if _is_main_process():
        print(*args, flush=True)


def trainer_class(method: str):
    """The TRL trainer that runs `method`."""
    import trl

    if method == "orpo":
        from trl.experimental.orpo import ORPOTrainer

        return ORPOTrainer
    if method == "simpo":
        from trl.experimental.cpo import CPOTrainer

        return CPOTrainer
    return {
        "pretrain": trl.SFTTrainer,
        "sft": trl.SFTTrainer,
        "dpo": trl.DPOTrainer,
        "kto": trl.KTOTrainer,
        "grpo": trl.GRPOTrainer,
        "reward": trl.RewardTrainer,
    }[method]


def score(model, tokenizer, problems, label: str) -> dict | None:
    """Exact-match accuracy on the held-out problems, printed with a few examples."""
    if not problems:
        return None
    from dojo.eval.accuracy import task_accuracy

    prompts, answers = zip(*problems)
    result = task_accuracy(model, tokenizer, list(prompts), list(answers))
    _say(f"\n[{label}] accuracy on {result.total} held-out problems: {result.accuracy:.1%}")
    for ex in result.examples[:3]:
        mark = "ok " if ex["correct"] else "BAD"
        _say(f"  {mark} {ex['prompt']!r} -> {ex['reply']!r} (expected {ex['answer']})")
    return {
        "accuracy": result.accuracy,
        "correct": result.correct,
        "total": result.total,
        "examples": result.examples[:20],
    }


def train(config: RunConfig | None = None, **overrides) -> RunResult:
    """Run a recipe (default: SFT of dojo-tiny on shipped arithmetic) and return its result."""
    config = config or load_config(overrides=overrides)
    start = time.time()
    args = config.trainer
    run_dir = folder.resolve_run_dir(args.output_dir)
    args.output_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = folder.last_checkpoint(run_dir)
    if _is_main_process():
        folder.write_config(run_dir, config.to_dict())
    world = args.world_size
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    _say(
        f"dojo.train: {config.dojo.method} ({config.dojo.tuning}) of "
        f"{config.model.model_name_or_path}\n  run folder: {run_dir}"
        + (f" (resuming from {resume_from.name})" if resume_from else "")
        + f"\n  effective batch size: {args.per_device_train_batch_size} per device x "
        f"{args.gradient_accumulation_steps} accumulation x {world} processes = {effective}"
    )

    if _is_main_process():
        folder.drop_incomplete_checkpoints(run_dir)
        if resume_from:
            folder.truncate_metrics(run_dir, resume_from)
    data = load_training_data(config)
    tokenizer = load_tokenizer(config)
    model = load_model(config, tokenizer, for_reward=config.dojo.method == "reward")
    generative = config.dojo.method not in ("reward", "pretrain")
    before = score(model, tokenizer, data.problems, "before") if generative else None
    if generative and _is_main_process():
        folder.write_jsonl(run_dir / "samples_start.jsonl", _samples(model, tokenizer, data))

    trainer = _build_trainer(config, model, tokenizer, data, run_dir)
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    model = trainer.model
    trainer.save_model(str(run_dir / "model"))

    summary = {
        "method": config.dojo.method,
        "tuning": config.dojo.tuning,
        "model": config.model.model_name_or_path,
        "steps": trainer.state.global_step,
        "effective_batch_size": effective,
        "train_loss": output.training_loss,
        "train_runtime_s": output.metrics.get("train_runtime"),
        "tokens_per_s": _tokens_per_s(trainer.state.log_history, output.metrics),
        "resumed_from": resume_from.name if resume_from else None,
        "data": data.summary,
    }
    if generative:
        after = score(model, tokenizer, data.problems, "after")
        if before and after:
            summary |= {"accuracy_before": before, "accuracy_after": after}
            _say(
                f"\naccuracy: {before['accuracy']:.1%} -> {after['accuracy']:.1%} "
                f"({(after['accuracy'] - before['accuracy']) * 100:+.1f} points)"
            )
        if _is_main_process():
            folder.write_jsonl(run_dir / "samples_end.jsonl", _samples(model, tokenizer, data))
    summary["wall_time_s"] = round(time.time() - start, 1)
    if _is_main_process():
        folder.plot_curves(run_dir, "reward" if config.dojo.method == "grpo" else "loss")
        (run_dir / folder.DONE).write_text(json.dumps(summary, indent=2, default=str))
        _say(f"\nrun folder: {run_dir}  ({summary['wall_time_s']} s)")
    return RunResult(run_dir, summary, model, tokenizer)


def _build_trainer(config: RunConfig, model, tokenizer, data, run_dir: Path):
    cls = folder.with_atomic_checkpoints(trainer_class(config.dojo.method))
    kwargs = dict(
        model=model,
        args=config.trainer,
        train_dataset=data.train,
        processing_class=tokenizer,
        callbacks=[folder.MetricsLogger(run_dir)],
    )
    if config.trainer.eval_strategy != "no" and data.eval is not None:
        kwargs["eval_dataset"] = data.eval
    task = "SEQ_CLS" if config.dojo.method == "reward" else "CAUSAL_LM"
    peft_config = peft_config_for(config, task_type=task)
    if peft_config is not None:
        kwargs["peft_config"] = peft_config
    if config.dojo.method == "grpo":
        from dojo import rewards

        kwargs["reward_funcs"] = [rewards.get(name) for name in config.dojo.reward_funcs]
    return cls(**kwargs)


def _samples(model, tokenizer, data) -> list[dict]:
    from dojo.infer.generate import generate_replies

    prompts = data.sample_prompts
    if not prompts:
        return []
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=48)
    return [{"prompt": p, "reply": r} for p, r in zip(prompts, replies)]


def _tokens_per_s(log_history: list[dict], metrics: dict) -> float | None:
    tokens = max((r.get("num_tokens", 0) for r in log_history), default=0)
    runtime = metrics.get("train_runtime")
    return round(tokens / runtime, 1) if tokens and runtime else None
