"""Evaluation: metrics, an LLM judge, evaluation during training, and reports over runs.

- `dojo.eval.perplexity`: sliding-window perplexity on texts or assistant tokens only.
- `dojo.eval.text`: BLEU, chrF, TER (sacrebleu, `zh` tokenizer for Chinese), ROUGE-1/2/L.
- `dojo.eval.accuracy`: exact-match accuracy on verifiable tasks (`exact_match`,
  `task_accuracy`).
- `dojo.eval.preference`: chosen-over-rejected accuracy by log-prob and by DPO implicit reward.
- `dojo.eval.judge`: LLM-as-judge over any OpenAI-compatible endpoint (grades, pairwise).
- `dojo.eval.scripted`: `ScriptedModel`, a model with scripted replies, to test a judge pipeline.
- `dojo.eval.suite`: fixed eval sets and the metrics run on them, for any model.
- `dojo.eval.callback`: `EvalCallback`, the suite every N training steps, logged with the loss.
- `dojo.eval.report`: `python -m dojo.eval --runs runs/`: JSON, Markdown table and plots.
"""

from dojo.eval.accuracy import AccuracyResult, exact_match, task_accuracy
from dojo.eval.judge import Judge, JudgeError, JudgeParseError, JudgeUnavailable
from dojo.eval.perplexity import PerplexityResult, perplexity
from dojo.eval.preference import PreferenceResult, preference_accuracy
from dojo.eval.suite import EvalOutput, EvalSuite
from dojo.eval.text import bleu, chrf, rouge, ter, text_scores

__all__ = [
    "AccuracyResult",
    "EvalOutput",
    "EvalSuite",
    "Judge",
    "JudgeError",
    "JudgeParseError",
    "JudgeUnavailable",
    "PerplexityResult",
    "PreferenceResult",
    "bleu",
    "chrf",
    "exact_match",
    "perplexity",
    "preference_accuracy",
    "rouge",
    "task_accuracy",
    "ter",
    "text_scores",
]
