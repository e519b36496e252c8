"""Evaluation during training: run an `EvalSuite` every N steps and log it with the losses.

    trainer = trl.SFTTrainer(...)
    EvalCallback.attach(trainer, EvalSuite.default(max_samples=20), every_n_steps=20)
    trainer.train()   # log_history / metrics.jsonl gain eval_accuracy, eval_perplexity, ...

Notable choices:
- Metrics go through `trainer.log`, so they land where the training metrics do: the trainer
  state's `log_history` (and `trainer_state.json`), every logging callback (dojo.train's
  metrics.jsonl, TensorBoard), with the step they were measured at. Keys get an `eval_` prefix,
  like the Trainer's own evaluation metrics.
- Only the main process evaluates (the model is the same on every process); the model is put
  back in training mode afterwards.
- `at_start=True` measures step 0 too, so a curve starts at the untrained model.
"""

from __future__ import annotations

from transformers import Trainer, TrainerCallback

from dojo.eval.suite import EvalSuite


class EvalCallback(TrainerCallback):
    """Runs `suite` on the trainer's model every `every_n_steps` steps and logs the metrics."""

    def __init__(self, trainer, suite: EvalSuite, every_n_steps: int = 50, at_start: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: must be >= 1")
        self.trainer, self.suite = trainer, suite
        self.every_n_steps, self.at_start = every_n_steps, at_start
        self.history: list[dict] = []  # what was logged, step by step

    @classmethod
    def attach(cls, trainer, suite: EvalSuite, every_n_steps: int = 50, at_start: bool = True):
        """Create the callback for `trainer` and add it; returns the callback."""
        callback = cls(trainer, suite, every_n_steps, at_start)
        trainer.add_callback(callback)
        return callback

    def _evaluate(self, state, control, model, processing_class) -> None:
        if not state.is_world_process_zero:
            return
        was_training = model.training
        try:
            out = self.suite.run(model, processing_class)
        finally:
            model.train(was_training)
        metrics = {f"eval_{k}": v for k, v in out.metrics.items()}
        self.history.append({"step": state.global_step, **metrics, "errors": out.errors})
        if metrics:
            # The base Trainer.log: TRL's trainers override it to fold their running training
            # averages (entropy, token accuracy...) into whatever is logged next, which would
            # move them from the loss record to ours.
            # Logging clears `should_log`; keep it, or the step's loss would go unlogged.
            should_log = control.should_log
            Trainer.log(self.trainer, metrics)
            control.should_log = self.trainer.control.should_log = should_log

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.at_start and state.global_step == 0:
            self._evaluate(state, control, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._evaluate(state, control, model, processing_class)
