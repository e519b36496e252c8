"""Reward functions for GRPO: exact answer, format, length, and a weighted sum of them.

Every reward is a plain callable with TRL's reward-function signature,
`reward(completions, **kwargs) -> list[float]`, so it goes straight into
`trl.GRPOTrainer(reward_funcs=[...])`. Design choices:

- A completion may be a string or a conversation (a list of `{"role", "content"}` messages);
  `completion_text` reads either, so one function serves base and chat models.
- Dataset columns arrive as keyword arguments of the same name: `exact_answer_reward` reads the
  `answer` column, one entry per completion (TRL repeats it for each generation).
- Numbers are compared as exact fractions after normalisation, so "1,000", "1000.0", "$1000" and
  "1e3" are one answer and no float tolerance is needed.
- Parametrised rewards (`length_penalty`, `weighted_reward`) are small classes, not closures, so
  they pickle (TRL's async rollout workers pickle reward functions) and carry a `__name__`, which
  TRL uses for the metric key (`rewards/<name>/mean`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

RewardFunction = Callable[..., list]

# A number as people write it: optional sign and currency, thousands separators, decimals,
# exponent, or a simple fraction. Longest alternatives first so "1,000" is not read as "1".
_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?[$€£]?"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?|\.\d+)"
    r"%?"
)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_ANSWER = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


# --------------------------------------------------------------------------------------------
# Reading completions and answers
# --------------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The text of a completion: the string itself, or the content of a conversation's messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list):
        return "".join(_content_text(m.get("content", "")) for m in completion)
    raise TypeError(
        f"completion_text: expected a string or a list of messages, got {type(completion).__name__}; "
        "GRPOTrainer passes strings for plain prompts and message lists for conversational ones."
    )


def _content_text(content: Any) -> str:
    """Message content as text; multimodal content lists keep only their text parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def extract_answer(text: str) -> str | None:
    """The answer in a reply: inside the last `<answer>...</answer>`, else the last number, else None."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        return tagged[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def parse_number(text: str) -> Fraction | None:
    """An exact number from text such as "1,000", "$1000", "1000.0", "1e3", "-3/4" or "50%"; else None."""
    s = text.strip().replace("\u2212", "-").rstrip(".")
    s = re.sub(r"^([-+]?)[$€£]", r"\1", s)  # currency after the sign: "-$5"
    s = s.removesuffix("%")  # "50%" answers "50": the unit is in the question
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def normalize_answer(answer: Any) -> Fraction | str:
    """A canonical form to compare answers: an exact number if it parses, else casefolded text."""
    text = str(answer).strip()
    number = parse_number(text)
    if number is not None:
        return number
    return " ".join(text.casefold().rstrip(".").split())


def answers_match(predicted: str | None, expected: Any) -> bool:
    """Whether a predicted answer equals the expected one after normalisation (None never matches)."""
    return predicted is not None and normalize_answer(predicted) == normalize_answer(expected)


# --------------------------------------------------------------------------------------------
# Rewards
# --------------------------------------------------------------------------------------------


def exact_answer_reward(
    completions: list, answer: Sequence[Any] | None = None, **kwargs
) -> list[float]:
    """1.0 where the completion's answer (tagged, else last number) equals the `answer` column, else 0.0."""
    if answer is None:
        raise ValueError(
            "exact_answer_reward needs the dataset column 'answer' (one per completion); "
            "add it to the GRPO dataset next to 'prompt'."
        )
    if len(answer) != len(completions):
        raise ValueError(
            f"exact_answer_reward: {len(completions)} completions but {len(answer)} answers; "
            "there must be one answer per completion."
        )
    return [
        float(answers_match(extract_answer(completion_text(c)), a))
        for c, a in zip(completions, answer)
    ]


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 where the whole completion is `<think>...</think><answer>...</answer>` (whitespace aside), else 0.0."""
    rewards = []
    for c in completions:
        text = completion_text(c)
        match = _THINK_ANSWER.fullmatch(text)
        # Tags inside the sections would make the structure ambiguous: count them as malformed.
        ok = match is not None and all(text.count(tag) == 1 for tag in _FORMAT_TAGS)
        rewards.append(float(ok))
    return rewards


def tag_count_reward(completions: list, **kwargs) -> list[float]:
    """0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` present exactly once: a gentler format signal."""
    return [
        sum(0.25 for tag in _FORMAT_TAGS if completion_text(c).count(tag) == 1) for c in completions
    ]


class length_penalty:  # noqa: N801 - used like a function: length_penalty(max_length=64)
    """Soft overlong penalty (DAPO Eq. 13): 0 up to `max_length - cache`, then linear to -1 at `max_length`, -1 beyond.

    Length is counted in tokens (`completion_ids`, which GRPOTrainer passes) when available,
    else in characters of the completion text.
    """

    __name__ = "length_penalty"

    def __init__(self, max_length: int, cache: int = 0):
        if max_length <= 0 or not 0 <= cache <= max_length:
            raise ValueError(
                f"length_penalty(max_length={max_length}, cache={cache}): need max_length > 0 and "
                "0 <= cache <= max_length (cache is the soft zone before max_length)."
            )
        self.max_length = max_length
        self.cache = cache

    def __call__(
        self, completions: list, completion_ids: list | None = None, **kwargs
    ) -> list[float]:
        """One penalty in [-1, 0] per completion."""
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        else:
            lengths = [len(completion_text(c)) for c in completions]
        return [self.penalty(n) for n in lengths]

    def penalty(self, length: int) -> float:
        """The penalty for one completion of `length` tokens (or characters)."""
        free = self.max_length - self.cache
        if length <= free:
            return 0.0
        if length <= self.max_length:
            return (free - length) / self.cache
        return -1.0


class weighted_reward:  # noqa: N801 - used like a function: weighted_reward({f: 1.0, g: 0.5})
    """The weighted sum of several rewards as one reward; a reward returning None for an item is skipped.

    TRL can weight rewards itself (`GRPOConfig.reward_weights`) and logs each one; use this when
    one number is wanted, e.g. to score an evaluation set or to feed a trainer that takes a single reward.
    """

    def __init__(
        self, weights: dict[RewardFunction, float] | Sequence[tuple[RewardFunction, float]]
    ):
        pairs = list(weights.items()) if isinstance(weights, dict) else list(weights)
        if not pairs:
            raise ValueError("weighted_reward: give at least one (reward function, weight) pair.")
        for func, weight in pairs:
            if not callable(func) or not isinstance(weight, (int, float)):
                raise TypeError(
                    f"weighted_reward: expected (callable, number) pairs, got ({func!r}, {weight!r})."
                )
        self.pairs = pairs
        self.__name__ = "weighted(" + ",".join(_name(f) for f, _ in pairs) + ")"

    def __call__(self, completions: list, **kwargs) -> list[float | None]:
        """Sum of weight * reward per completion; None only where every reward returned None."""
        totals: list[float | None] = [None] * len(completions)
        for func, weight in self.pairs:
            scores = func(completions=completions, **kwargs)
            for i, score in enumerate(scores):
                if score is not None:
                    totals[i] = (totals[i] or 0.0) + weight * score
        return totals


def _name(func: Callable) -> str:
    return getattr(func, "__name__", type(func).__name__)


# --------------------------------------------------------------------------------------------
# Lookup by name (for recipes: `reward_funcs: [exact_answer, format, length_penalty:256:64]`)
# --------------------------------------------------------------------------------------------

REWARDS: dict[str, RewardFunction] = {
    "exact_answer": exact_answer_reward,
    "format": format_reward,
    "tag_count": tag_count_reward,
}
REWARD_NAMES = (*REWARDS, "length_penalty")


def get(name: str, max_completion_length: int | None = None) -> RewardFunction:
    """The reward called `name` in a recipe: exact_answer, format, tag_count or length_penalty[:MAX[:CACHE]].

    `length_penalty` alone penalises beyond `max_completion_length` (GRPOConfig's) with a soft
    zone of a quarter of it; `length_penalty:256:64` sets both. Full function names
    (`exact_answer_reward`) are accepted too.
    """
    base, *params = name.strip().split(":")
    base = base.removesuffix("_reward")
    if base in REWARDS and not params:
        return REWARDS[base]
    if base == "length_penalty":
        return _length_penalty_from_spec(name, params, max_completion_length)
    from difflib import get_close_matches

    close = get_close_matches(base, REWARD_NAMES, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(
        f"reward_funcs: unknown reward '{name}'.{hint} Known rewards: {', '.join(REWARD_NAMES)} "
        "(length_penalty takes optional ':MAX:CACHE')."
    )


def _length_penalty_from_spec(
    name: str, params: list[str], max_completion_length: int | None
) -> length_penalty:
    """Build length_penalty from 'length_penalty[:MAX[:CACHE]]'."""
    try:
        values = [int(p) for p in params]
    except ValueError:
        values = None
    if values is None or len(values) > 2 or (not values and max_completion_length is None):
        raise ValueError(
            f"reward_funcs: '{name}' should be length_penalty, length_penalty:MAX or "
            "length_penalty:MAX:CACHE with whole numbers of tokens (plain length_penalty needs "
            "max_completion_length)."
        )
    max_length = values[0] if values else max_completion_length
    cache = values[1] if len(values) == 2 else max_length // 4
    return length_penalty(max_length, cache)
