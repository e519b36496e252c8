"""Exact-match accuracy on verifiable tasks: generate a reply, extract the answer, compare."""

from __future__ import annotations

from dataclasses import dataclass

from dojo.data.synthetic import extract_answer
from dojo.infer.generate import generate_replies


@dataclass
class AccuracyResult:
    """The score and every scored example, so a notebook can show the misses."""

    accuracy: float
    correct: int
    total: int
    examples: list[dict]  # prompt, reply, extracted, answer, correct


def exact_match(replies: list[str], answers: list, prompts: list[str] | None = None):
    """AccuracyResult of replies against answers: the extracted answer must equal it exactly.

    The answer is what `dojo.data.synthetic.extract_answer` finds: the text inside
    `<answer>...</answer>`, else the last number, else the last word ("The sum is 113." -> 113).
    """
    if len(replies) != len(answers):
        raise ValueError(f"{len(replies)} replies but {len(answers)} answers; give one each")
    prompts = prompts or [""] * len(replies)
    examples = []
    for prompt, reply, answer in zip(prompts, replies, answers):
        got = extract_answer(reply)
        examples.append(
            {
                "prompt": prompt,
                "reply": reply,
                "extracted": got,
                "answer": str(answer),
                "correct": got == str(answer),
            }
        )
    correct = sum(e["correct"] for e in examples)
    return AccuracyResult(correct / max(1, len(examples)), correct, len(examples), examples)


def task_accuracy(
    model, tokenizer, prompts: list[list[dict]], answers: list[str], max_new_tokens: int = 24
) -> AccuracyResult:
    """Share of prompts whose generated reply carries the expected answer (greedy decoding)."""
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    return exact_match(replies, answers, [p[-1]["content"] for p in prompts])
