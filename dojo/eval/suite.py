"""An evaluation suite: fixed eval sets and the metrics run on them, for any model.

The same suite scores the base model and every run in the report (`dojo.eval.report`) and a
model during training (`dojo.eval.callback`), so their numbers are comparable. Each part is
optional; a part whose data is wrong is reported as an error and the others still run.

Parts and the metrics they give (all flat keys, so they sit in a table or a training log):
- `perplexity`: texts or conversations -> `perplexity` (assistant tokens only for conversations)
- `problems`: (prompt, answer) pairs -> `accuracy` (exact match of the extracted answer)
- `preference`: prompt / chosen / rejected -> `pref_logp_accuracy`, `pref_margin`, and with a
  reference model `pref_reward_accuracy`, `pref_reward_margin`, `dpo_loss`
- `generation`: (prompt, reference reply) pairs -> `bleu`, `chrf`, `ter`, `rouge1/2/L`, and
  the first few generations as samples; with a `judge` (`dojo.eval.judge.Judge`) also
  `judge_score`, the judge's mean 1-10 grade of the generated replies (the reference reply is
  shown to the judge). Replies the judge's answer could not be parsed for are left out of the
  mean and counted in the `judge` error; an unreachable judge is an error of its own, and the
  text metrics stand either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PARTS = ("perplexity", "problems", "preference", "generation")


@dataclass
class EvalOutput:
    """Metrics, sample generations, and the error of each part that could not run."""

    metrics: dict[str, float] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _load(path, kind: str, n: int | None):
    from dojo.data import load

    return [dict(r) for r in load(str(path), kind, max_samples=n)]


def load_problems(path, n: int | None = None) -> list[tuple[list[dict], str]]:
    """(prompt messages, answer) pairs from a prompt file with an `answer` column."""
    rows = _load(path, "prompt", n)
    if "answer" not in rows[0]:
        raise ValueError(f"{path}: no 'answer' column; exact match needs one per prompt")
    return [(r["prompt"], str(r["answer"])) for r in rows]


def load_generation(path, n: int | None = None) -> list[tuple[list[dict], str]]:
    """(prompt messages, reference reply) pairs: each conversation up to its last reply."""
    rows = _load(path, "sft", n)
    pairs = []
    for i, r in enumerate(rows):
        messages = r["messages"]
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"{path} record {i}: the last message is not an assistant reply")
        pairs.append((messages[:-1], messages[-1]["content"]))
    return pairs


@dataclass
class EvalSuite:
    """Eval sets and settings; `run(model, tokenizer)` scores a model on all of them."""

    perplexity: list | None = None  # strings, or conversations (scored on assistant tokens)
    problems: list[tuple[list[dict], str]] | None = None
    preference: list[dict] | None = None
    generation: list[tuple[list[dict], str]] | None = None
    max_new_tokens: int = 32
    stride: int | None = None
    beta: float = 0.1  # DPO's beta for the implicit reward
    n_samples: int = 3  # generations kept as samples
    judge: object | None = None  # a dojo.eval.judge.Judge grading the generations, or None
    load_errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_files(
        cls,
        perplexity=None,
        problems=None,
        preference=None,
        generation=None,
        max_samples: int | None = 50,
        **settings,
    ) -> EvalSuite:
        """A suite from data files; a file that fails to load becomes that part's error."""
        loaders = {
            "perplexity": lambda p: [r["messages"] for r in _load(p, "sft", max_samples)],
            "problems": lambda p: load_problems(p, max_samples),
            "preference": lambda p: _load(p, "preference", max_samples),
            "generation": lambda p: load_generation(p, max_samples),
        }
        parts, errors = {}, {}
        for name, path in zip(PARTS, (perplexity, problems, preference, generation)):
            if path is None:
                continue
            try:
                parts[name] = loaders[name](Path(path))
            except (ValueError, KeyError, OSError) as e:  # DataError is a ValueError
                errors[name] = f"{path}: {e}"
        return cls(**parts, load_errors=errors, **settings)

    @classmethod
    def default(cls, max_samples: int = 50, **settings) -> EvalSuite:
        """The shipped held-out arithmetic sets (the tasks dojo-tiny is tuned on)."""
        from dojo import paths

        data = paths.DATA_DIR
        return cls.from_files(
            perplexity=data / "sft" / "arithmetic_eval.jsonl",
            problems=data / "prompts" / "arithmetic_eval.jsonl",
            preference=data / "preference" / "arithmetic_eval.jsonl",
            generation=data / "sft" / "arithmetic_eval.jsonl",
            max_samples=max_samples,
            **settings,
        )

    def run(self, model, tokenizer, ref_model=None) -> EvalOutput:
        """Every part's metrics for `model`; `ref_model` adds DPO implicit-reward metrics."""
        out = EvalOutput(errors=dict(self.load_errors))
        steps = {
            "perplexity": lambda: self._perplexity(model, tokenizer),
            "problems": lambda: self._accuracy(model, tokenizer),
            "preference": lambda: self._preference(model, tokenizer, ref_model),
            "generation": lambda: self._generation(model, tokenizer, out),
        }
        for name in PARTS:
            if getattr(self, name) is None or name in out.errors:
                continue
            try:
                out.metrics.update(steps[name]())
            except (ValueError, KeyError, TypeError) as e:
                out.errors[name] = f"{type(e).__name__}: {e}"
        return out

    def _perplexity(self, model, tokenizer) -> dict:
        from dojo.eval.perplexity import perplexity

        texts = self.perplexity
        conversations = bool(texts) and not isinstance(texts[0], str)
        result = perplexity(
            model, tokenizer, texts, stride=self.stride, assistant_only=conversations
        )
        return {"perplexity": result.perplexity}

    def _accuracy(self, model, tokenizer) -> dict:
        from dojo.eval.accuracy import task_accuracy

        prompts, answers = zip(*self.problems)
        result = task_accuracy(model, tokenizer, list(prompts), list(answers), self.max_new_tokens)
        return {"accuracy": result.accuracy}

    def _preference(self, model, tokenizer, ref_model) -> dict:
        from dojo.eval.preference import preference_accuracy

        result = preference_accuracy(model, tokenizer, self.preference, ref_model, self.beta)
        names = {
            "logp_accuracy": "pref_logp_accuracy",
            "logp_margin": "pref_margin",
            "reward_accuracy": "pref_reward_accuracy",
            "reward_margin": "pref_reward_margin",
            "dpo_loss": "dpo_loss",
        }
        return {names[k]: v for k, v in result.as_dict().items() if k in names}

    def _generation(self, model, tokenizer, out: EvalOutput) -> dict:
        from dojo.eval.text import text_scores
        from dojo.infer.generate import generate_replies

        prompts, references = zip(*self.generation)
        replies = generate_replies(model, tokenizer, list(prompts), self.max_new_tokens)
        out.samples = [
            {"prompt": p[-1]["content"], "reply": r, "reference": ref}
            for p, r, ref in list(zip(prompts, replies, references))[: self.n_samples]
        ]
        metrics = text_scores(replies, list(references))
        if self.judge is not None:
            metrics |= self._judge(prompts, replies, references, out)
        return metrics

    def _judge(self, prompts, replies, references, out: EvalOutput) -> dict:
        """The judge's mean grade of `replies`; what went wrong goes to `out.errors['judge']`."""
        from dojo.eval.judge import JudgeError, grade_many

        questions = [p[-1]["content"] for p in prompts]
        try:
            graded = grade_many(self.judge, questions, replies, list(references))
        except JudgeError as e:  # unreachable, or it refused the request: no grades at all
            out.errors["judge"] = str(e)
            return {}
        for sample, item in zip(out.samples, graded["items"]):
            sample["judge_score"] = item["score"]
        if graded["failed"]:
            first = next(i["error"] for i in graded["items"] if i["score"] is None)
            out.errors["judge"] = (
                f"{graded['failed']} of {len(replies)} judge replies had no verdict and were "
                f"left out of judge_score; the first: {first}"
            )
        return {"judge_score": graded["mean_score"]} if graded["graded"] else {}
