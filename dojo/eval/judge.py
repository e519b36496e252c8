"""LLM-as-judge over any OpenAI-compatible endpoint: single-answer grades and pairwise verdicts.

    judge = Judge.from_env()   # DOJO_JUDGE_BASE_URL, DOJO_JUDGE_MODEL, DOJO_JUDGE_API_KEY
    judge.grade("What is 2+2?", "4")                 # -> Grade(score=9, ...)
    judge.compare("What is 2+2?", "4", "5")          # -> Pairwise(winner="1", consistent=True)

Notable choices:
- Prompts follow MT-Bench's judge format: the verdict ends the reply as `Rating: [[7]]` or
  `[[A]]` / `[[B]]` / `[[C]]` (tie). Parsing takes the last well-formed verdict and falls back
  to looser forms (`Rating: 7`, `7/10`, `Verdict: A`); anything else is a `JudgeParseError`
  that quotes the reply, and batch calls record it per item and go on.
- Pairwise comparison asks twice with the answers swapped. Judges favour a position (often the
  first); a verdict counts only when both orders agree, otherwise it is a tie, and the
  disagreement rate is reported as the judge's position bias.
- Connection errors, timeouts, 429 and 5xx are retried with exponential back-off; other 4xx are
  not (the request itself is wrong). An unreachable server ends in `JudgeUnavailable`, naming
  the URL and how to start one.
- The API key is read from the environment and kept out of `repr`, errors and results.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

DEFAULT_RUBRIC = (
    "Judge helpfulness, correctness and clarity. A correct, direct answer scores high; a wrong "
    "or off-topic answer scores 1-3 however fluent it is."
)

SINGLE_PROMPT = """Rate the answer to the question on a scale of 1 to 10.
Rubric: {rubric}
{reference}[Question]
{question}
[Answer]
{answer}
Explain briefly, then end with the rating in this exact format: Rating: [[N]]"""

PAIR_PROMPT = """Which answer to the question is better?
Rubric: {rubric}
{reference}[Question]
{question}
[Answer A]
{answer_a}
[Answer B]
{answer_b}
Do not let the order or the length of the answers sway you. Explain briefly, then end with
the verdict in this exact format: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie."""


class JudgeError(RuntimeError):
    """The judge could not give a verdict."""


class JudgeUnavailable(JudgeError):
    """The endpoint could not be reached, or kept failing, after all retries."""


class JudgeParseError(JudgeError):
    """The judge replied, but with no verdict in the expected format."""

    def __init__(self, kind: str, reply: str):
        excerpt = reply if len(reply) <= 300 else reply[:150] + " ... " + reply[-150:]
        super().__init__(
            f"no {kind} found in the judge's reply (expected "
            f"{'Rating: [[N]] with N in 1..10' if kind == 'rating' else '[[A]], [[B]] or [[C]]'}"
            f"): {excerpt!r}"
        )
        self.reply = reply


RATING_PATTERNS = [
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"rating\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I),
    re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10\b"),
    re.compile(r"score\s*(?:of|[:=])?\s*\**\s*(\d+(?:\.\d+)?)", re.I),
]
VERDICT_PATTERNS = [
    re.compile(r"\[\[\s*([ABC])\s*\]\]"),
    re.compile(r"verdict\s*[:=]?\s*\**\s*\[?\s*([ABC])\b", re.I),
    re.compile(r"\b(?:answer|assistant)\s+([AB])\s+is\s+better\b", re.I),
    re.compile(r"\b(tie)\b", re.I),
]


def parse_rating(reply: str) -> float:
    """The 1–10 rating in a judge's reply: the last match of the strictest form that matches."""
    for pattern in RATING_PATTERNS:
        found = [float(x) for x in pattern.findall(reply) if 1 <= float(x) <= 10]
        if found:
            return found[-1]
    raise JudgeParseError("rating", reply)


def parse_verdict(reply: str) -> str:
    """'A', 'B' or 'tie' from a pairwise judge's reply."""
    for pattern in VERDICT_PATTERNS:
        found = pattern.findall(reply)
        if found:
            last = found[-1].upper()
            return "tie" if last in ("C", "TIE") else last
    raise JudgeParseError("verdict", reply)


@dataclass
class Grade:
    """A single-answer grade."""

    score: float
    reply: str


@dataclass
class Pairwise:
    """A position-swapped comparison of answer 1 and answer 2."""

    winner: str  # "1", "2" or "tie" (a tie also when the two orders disagree)
    first: str  # verdict with answer 1 shown as A: "A", "B" or "tie"
    swapped: str  # verdict with answer 2 shown as A
    consistent: bool  # both orders named the same winner (or both a tie)
    replies: tuple[str, str]


def _winner(verdict: str, swapped: bool) -> str:
    """Which answer (1 or 2) a verdict names, given whether answer 1 was shown as B."""
    if verdict == "tie":
        return "tie"
    return {"A": "2", "B": "1"}[verdict] if swapped else {"A": "1", "B": "2"}[verdict]


def _reference_block(reference: str | None) -> str:
    return f"[Reference answer]\n{reference}\n" if reference else ""


@dataclass
class Judge:
    """A judge model behind an OpenAI-compatible `/v1/chat/completions`."""

    base_url: str
    model: str | None = None  # None: the first model the server lists
    api_key: str = field(default="unused", repr=False)
    rubric: str = DEFAULT_RUBRIC
    max_tokens: int = 512
    temperature: float = 0.0
    timeout: float = 60.0
    max_retries: int = 3  # retries after the first attempt
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    _openai: object = field(default=None, init=False, repr=False, compare=False)

    ENV = ("DOJO_JUDGE_BASE_URL", "DOJO_JUDGE_MODEL", "DOJO_JUDGE_API_KEY")

    @classmethod
    def from_env(cls, **overrides) -> Judge:
        """A judge configured by DOJO_JUDGE_BASE_URL / _MODEL / _API_KEY (OPENAI_* as fallback)."""
        env = os.environ
        base_url = env.get("DOJO_JUDGE_BASE_URL") or env.get("OPENAI_BASE_URL")
        if not base_url and "base_url" not in overrides:
            raise JudgeError(
                "no judge endpoint: set DOJO_JUDGE_BASE_URL (e.g. http://127.0.0.1:8000/v1, "
                "what `python -m dojo.infer serve` prints) and DOJO_JUDGE_MODEL"
            )
        values = {
            "base_url": base_url,
            "model": env.get("DOJO_JUDGE_MODEL") or None,
            "api_key": env.get("DOJO_JUDGE_API_KEY") or env.get("OPENAI_API_KEY") or "unused",
        }
        return cls(**{**values, **overrides})

    def _client(self):
        import openai

        if self._openai is None:
            # Retries are ours (below), so their count and back-off are visible and testable.
            self._openai = openai.OpenAI(
                base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=0
            )
        return self._openai

    def _with_retries(self, call):
        import openai

        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return call()
            except (
                openai.APIConnectionError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as e:
                last = e  # APITimeoutError is an APIConnectionError
            except openai.APIStatusError as e:
                raise JudgeError(
                    f"the judge at {self.base_url} refused the request "
                    f"(HTTP {e.status_code}): {_error_message(e)}"
                ) from None
        kind = type(last).__name__
        detail = getattr(last, "status_code", None)
        raise JudgeUnavailable(
            f"could not get a reply from the judge at {self.base_url} after "
            f"{self.max_retries + 1} attempts ({kind}{f' HTTP {detail}' if detail else ''}). "
            "Is the server running? Start one with `python -m dojo.infer serve --model PATH "
            "--port 8000` or point DOJO_JUDGE_BASE_URL at another OpenAI-compatible endpoint."
        ) from None

    def resolve_model(self) -> str:
        """The model to ask: the configured one, else the first the server lists."""
        if self.model is None:
            models = self._with_retries(lambda: self._client().models.list())
            names = [m.id for m in models.data]
            if not names:
                raise JudgeError(f"the judge at {self.base_url} lists no models")
            self.model = names[0]
        return self.model

    def ask(self, prompt: str) -> str:
        """One chat completion with retries; the reply's text."""
        model = self.resolve_model()
        response = self._with_retries(
            lambda: self._client().chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        )
        return response.choices[0].message.content or ""

    def grade(self, question: str, answer: str, reference: str | None = None) -> Grade:
        """A 1–10 score for one answer, by the rubric (and a reference answer, if given)."""
        reply = self.ask(
            SINGLE_PROMPT.format(
                rubric=self.rubric,
                reference=_reference_block(reference),
                question=question,
                answer=answer,
            )
        )
        return Grade(parse_rating(reply), reply)

    def _verdict(self, question: str, a: str, b: str, reference: str | None) -> tuple[str, str]:
        reply = self.ask(
            PAIR_PROMPT.format(
                rubric=self.rubric,
                reference=_reference_block(reference),
                question=question,
                answer_a=a,
                answer_b=b,
            )
        )
        return parse_verdict(reply), reply

    def compare(
        self, question: str, answer_1: str, answer_2: str, reference: str | None = None
    ) -> Pairwise:
        """Answer 1 vs answer 2, asked in both orders; a winner only when both orders agree."""
        first, reply_1 = self._verdict(question, answer_1, answer_2, reference)
        swapped, reply_2 = self._verdict(question, answer_2, answer_1, reference)
        w1, w2 = _winner(first, swapped=False), _winner(swapped, swapped=True)
        return Pairwise(w1 if w1 == w2 else "tie", first, swapped, w1 == w2, (reply_1, reply_2))


def _error_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(error, "message", error))


def grade_many(judge: Judge, questions, answers, references=None) -> dict:
    """Grades for many answers: mean score, and per item a score or the error that stopped it."""
    references = references or [None] * len(questions)
    items = []
    for q, a, r in zip(questions, answers, references):
        try:
            g = judge.grade(q, a, r)
            items.append({"question": q, "answer": a, "score": g.score, "reply": g.reply})
        except JudgeParseError as e:
            items.append({"question": q, "answer": a, "score": None, "error": str(e)})
    scores = [i["score"] for i in items if i["score"] is not None]
    return {
        "mean_score": sum(scores) / len(scores) if scores else None,
        "graded": len(scores),
        "failed": len(items) - len(scores),
        "items": items,
    }


def compare_many(judge: Judge, questions, answers_1, answers_2, references=None) -> dict:
    """Position-swapped comparisons: win rate of answers 1 (ties half), position bias, items."""
    references = references or [None] * len(questions)
    items = []
    for q, a1, a2, r in zip(questions, answers_1, answers_2, references):
        try:
            p = judge.compare(q, a1, a2, r)
            items.append(
                {
                    "question": q,
                    "winner": p.winner,
                    "first": p.first,
                    "swapped": p.swapped,
                    "consistent": p.consistent,
                }
            )
        except JudgeParseError as e:
            items.append({"question": q, "winner": None, "error": str(e)})
    done = [i for i in items if i["winner"] is not None]
    n = len(done)
    wins = sum(i["winner"] == "1" for i in done) + 0.5 * sum(i["winner"] == "tie" for i in done)
    # Raw verdicts that picked the answer shown first, out of all non-tie raw verdicts.
    raw = [v for i in done for v in (i["first"], i["swapped"]) if v != "tie"]
    return {
        "win_rate_1": wins / n if n else None,
        "wins_1": sum(i["winner"] == "1" for i in done),
        "wins_2": sum(i["winner"] == "2" for i in done),
        "ties": sum(i["winner"] == "tie" for i in done),
        "inconsistent": sum(not i["consistent"] for i in done),
        "first_position_rate": sum(v == "A" for v in raw) / len(raw) if raw else None,
        "compared": n,
        "failed": len(items) - n,
        "items": items,
    }
