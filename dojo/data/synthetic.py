"""Seeded, deterministic generators of tasks whose answers a program can check.

Notable choices:
- Every problem belongs to exactly one split, decided by a hash of its question, so held-out
  problems never appear in pretraining text, SFT data or preference pairs, whatever the seed.
- The assistant's worked reply restates the problem ("23 + 45 = 68"): the same pattern
  dojo-tiny saw in pretraining, so SFT only has to teach the chat format and when to stop.
- Answers are checked by `extract_answer`: the text inside <answer>…</answer> if present,
  else the last number (or, for word tasks, the last word) in the reply.

`python -m dojo.data.synthetic` rewrites the shipped synthetic files under `data/`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

EVAL_SHARE = 10  # one problem in EVAL_SHARE is held out


@dataclass(frozen=True)
class Problem:
    """One verifiable problem: a question, its canonical answer and a worked reply."""

    task: str
    question: str
    answer: str
    solution: str  # the reply an assistant should give, ending in the answer

    def __post_init__(self) -> None:
        if not self.solution.endswith(self.answer):
            raise ValueError(f"solution {self.solution!r} must end with the answer {self.answer!r}")

    @property
    def split(self) -> str:
        """`eval` or `train`, fixed by the problem itself (a hash of task and solution)."""
        digest = hashlib.sha256(f"{self.task}|{self.solution}".encode()).digest()
        return "eval" if digest[0] % EVAL_SHARE == 0 else "train"


_ADD_QUESTIONS = ["What is {a} + {b}?", "Compute {a} + {b}.", "{a} + {b} = ?", "Add {a} and {b}."]
_SUB_QUESTIONS = [
    "What is {a} - {b}?",
    "Compute {a} - {b}.",
    "{a} - {b} = ?",
    "Subtract {b} from {a}.",
]
_MUL_QUESTIONS = ["What is {a} * {b}?", "Compute {a} * {b}.", "Multiply {a} by {b}."]
_CMP_QUESTIONS = ["Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?"]
_REV_QUESTIONS = ["Reverse the word '{w}'.", "Spell '{w}' backwards."]
_WORDS = [
    "apple",
    "river",
    "stone",
    "light",
    "cloud",
    "tiger",
    "paper",
    "music",
    "green",
    "table",
    "house",
    "dream",
    "smile",
    "bread",
    "plant",
    "ocean",
    "chair",
    "water",
    "night",
    "heart",
    "earth",
    "train",
    "glass",
    "sugar",
    "field",
]


def _addition(rng: random.Random) -> Problem:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    q = rng.choice(_ADD_QUESTIONS).format(a=a, b=b)
    return Problem("addition", q, str(a + b), f"{a} + {b} = {a + b}")


def _subtraction(rng: random.Random) -> Problem:
    a, b = sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=True)
    q = rng.choice(_SUB_QUESTIONS).format(a=a, b=b)
    return Problem("subtraction", q, str(a - b), f"{a} - {b} = {a - b}")


def _multiplication(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 9), rng.randint(2, 19)
    q = rng.choice(_MUL_QUESTIONS).format(a=a, b=b)
    return Problem("multiplication", q, str(a * b), f"{a} * {b} = {a * b}")


def _comparison(rng: random.Random) -> Problem:
    a, b = rng.sample(range(10, 100), 2)
    q = rng.choice(_CMP_QUESTIONS).format(a=a, b=b)
    big = max(a, b)
    return Problem("comparison", q, str(big), f"Between {a} and {b}, the larger is {big}")


def _reverse(rng: random.Random) -> Problem:
    w = rng.choice(_WORDS)
    q = rng.choice(_REV_QUESTIONS).format(w=w)
    return Problem("reverse", q, w[::-1], f"'{w}' backwards is {w[::-1]}")


TASKS: dict[str, Callable[[random.Random], Problem]] = {
    "addition": _addition,
    "subtraction": _subtraction,
    "multiplication": _multiplication,
    "comparison": _comparison,
    "reverse": _reverse,
}


def make_problems(task: str, n: int, split: str = "train", seed: int = 0) -> list[Problem]:
    """`n` problems of `task` from `split`, deterministic for a seed; unique while the split
    has room, then repeating (the reverse task has only a few dozen distinct problems)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng = random.Random(f"{task}-{split}-{seed}")
    seen: set[str] = set()
    problems: list[Problem] = []
    tries = 0
    while len(problems) < n:
        p = TASKS[task](rng)
        tries += 1
        if p.split != split:
            continue
        if p.solution in seen and tries < 50 * n:
            continue
        seen.add(p.solution)
        problems.append(p)
    return problems


def mixed_problems(tasks: dict[str, int], split: str = "train", seed: int = 0) -> list[Problem]:
    """Problems from several tasks ({task: count}), shuffled together deterministically."""
    problems = [p for task, n in tasks.items() for p in make_problems(task, n, split, seed)]
    random.Random(seed).shuffle(problems)
    return problems


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(reply: str) -> str | None:
    """The answer in a model's reply: inside <answer> tags, else the last number, else the
    last word (for word tasks); None when the reply is empty."""
    tagged = _ANSWER_TAG.findall(reply)
    if tagged:
        return tagged[-1].strip()
    numbers = _NUMBER.findall(reply)
    if numbers:
        return numbers[-1]
    words = re.findall(r"[^\W\d_]+", reply)
    return words[-1] if words else None


def is_correct(problem: Problem, reply: str) -> bool:
    """Whether `reply` gives the problem's answer (exact match after extraction)."""
    return extract_answer(reply) == problem.answer


def to_messages(problem: Problem) -> list[dict[str, str]]:
    """The problem as an OpenAI-style conversation: the question and the worked reply."""
    return [
        {"role": "user", "content": problem.question},
        {"role": "assistant", "content": problem.solution},
    ]


def wrong_solution(problem: Problem, rng: random.Random) -> str:
    """A plausible wrong reply: the worked form ending in a slip (off by a little, or, for word
    tasks, the word left unreversed)."""
    if problem.answer.lstrip("-").isdigit():
        wrong = str(int(problem.answer) + rng.choice([-10, -2, -1, 1, 2, 10]))
    else:
        wrong = problem.answer[::-1]
    return problem.solution.removesuffix(problem.answer) + wrong


# Weights of each task in the pretraining text, and the sentence form of each arithmetic task.
_PRETRAIN_TASKS = {"addition": 0.55, "subtraction": 0.2, "multiplication": 0.15, "comparison": 0.1}
_SENTENCES = {
    "addition": "The sum of {a} and {b} is {c}.",
    "subtraction": "{a} minus {b} is {c}.",
    "multiplication": "{a} times {b} is {c}.",
}


def pretraining_lines(n: int, seed: int = 0) -> Iterator[str]:
    """Raw text about arithmetic for pretraining, from train-split problems only: bare equations,
    sentences, and question/answer pairs. The pairs teach copying a question's numbers into the
    answer; they are plain text, so the chat format stays new to the model until SFT."""
    rng = random.Random(f"pretrain-{seed}")
    tasks, weights = zip(*_PRETRAIN_TASKS.items())
    produced = 0
    while produced < n:
        p = TASKS[rng.choices(tasks, weights)[0]](rng)
        if p.split != "train":
            continue
        yield rng.choice(_pretraining_forms(p))
        produced += 1


def _pretraining_forms(p: Problem) -> list[str]:
    forms = [p.solution, f"Question: {p.question}\nAnswer: {p.solution}"]
    if p.task in _SENTENCES:
        a, _, b, _, c = p.solution.split()
        forms.append(_SENTENCES[p.task].format(a=a, b=b, c=c))
    return forms


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# The shipped synthetic files: what each holds and how many problems per task.
SFT_TASKS = {"addition": 1500, "subtraction": 600, "comparison": 300, "multiplication": 300}
EVAL_TASKS = {"addition": 200, "subtraction": 100, "comparison": 50, "multiplication": 50}


def write_shipped_files(data_dir: Path, seed: int = 0) -> dict[str, int]:
    """(Re)write data/{sft,preference,kto,prompts}/arithmetic_{train,eval}.jsonl."""
    counts = {}
    for split, tasks in (("train", SFT_TASKS), ("eval", EVAL_TASKS)):
        problems = mixed_problems(tasks, split, seed)
        rng = random.Random(f"wrong-{split}-{seed}")
        files = {
            "sft": [
                {"messages": to_messages(p), "task": p.task, "answer": p.answer} for p in problems
            ],
            "preference": [_preference(p, rng) for p in problems],
            "kto": [_kto(p, rng, i) for i, p in enumerate(problems)],
            "prompts": [
                {"prompt": to_messages(p)[:1], "answer": p.answer, "task": p.task} for p in problems
            ],
        }
        for kind, records in files.items():
            path = data_dir / kind / f"arithmetic_{split}.jsonl"
            _write_jsonl(path, records)
            counts[str(path.relative_to(data_dir))] = len(records)
    return counts


def _preference(p: Problem, rng: random.Random) -> dict:
    return {
        "prompt": to_messages(p)[:1],
        "chosen": [{"role": "assistant", "content": p.solution}],
        "rejected": [{"role": "assistant", "content": wrong_solution(p, rng)}],
    }


def _kto(p: Problem, rng: random.Random, i: int) -> dict:
    good = i % 2 == 0  # alternate so desirable and undesirable examples are balanced
    reply = p.solution if good else wrong_solution(p, rng)
    return {
        "prompt": to_messages(p)[:1],
        "completion": [{"role": "assistant", "content": reply}],
        "label": good,
    }


def main() -> None:
    from dojo import paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=paths.DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, n in write_shipped_files(args.data_dir, args.seed).items():
        print(f"{name}: {n} records")


if __name__ == "__main__":
    main()
