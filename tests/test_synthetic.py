"""dojo.data.synthetic: seeded, deterministic tasks with a held-out split that never leaks."""

import itertools
import json
import random

import pytest

from dojo import paths
from dojo.data import synthetic


@pytest.mark.parametrize("task", list(synthetic.TASKS))
def test_problems_are_deterministic_and_checkable(task):
    a = synthetic.make_problems(task, 30, seed=3)
    assert a == synthetic.make_problems(task, 30, seed=3)
    assert a != synthetic.make_problems(task, 30, seed=4)
    for p in a:
        assert p.split == "train"
        assert synthetic.is_correct(p, p.solution)


def test_arithmetic_answers_are_right():
    for p in synthetic.make_problems("addition", 50) + synthetic.make_problems("subtraction", 50):
        a, op, b, _, c = p.solution.split()
        assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(p.answer)


def test_splits_are_disjoint():
    train = {p.solution for p in synthetic.make_problems("addition", 2000)}
    held_out = {p.solution for p in synthetic.make_problems("addition", 200, split="eval")}
    assert not train & held_out
    assert 0.05 < len(held_out) / (len(train) + len(held_out)) < 0.2


def test_pretraining_text_holds_no_held_out_problem():
    held_out = {
        p.solution
        for task in ("addition", "subtraction")
        for p in synthetic.make_problems(task, 300, "eval")
    }
    lines = list(itertools.islice(synthetic.pretraining_lines(5000), 5000))
    assert any(line.startswith("Question: ") for line in lines)
    assert not any(s in line for line in lines for s in held_out)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("23 + 45 = 68", "68"),
        ("<think>2+2</think><answer> 4 </answer>", "4"),
        ("'apple' backwards is elppa", "elppa"),
        ("", None),
        ("the answer is -7", "-7"),
    ],
)
def test_extract_answer(reply, expected):
    assert synthetic.extract_answer(reply) == expected


def test_wrong_solution_is_wrong_but_plausible():
    rng = random.Random(0)
    for p in synthetic.make_problems("addition", 20):
        wrong = synthetic.wrong_solution(p, rng)
        assert wrong != p.solution and wrong.startswith(p.solution.removesuffix(p.answer))


def test_unknown_task_and_split_are_named():
    with pytest.raises(ValueError, match="unknown task 'division'"):
        synthetic.make_problems("division", 1)
    with pytest.raises(ValueError, match="split must be"):
        synthetic.make_problems("addition", 1, split="test")


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    counts = synthetic.write_shipped_files(tmp_path)
    for name, n in counts.items():
        shipped = (paths.DATA_DIR / name).read_text(encoding="utf-8")
        assert shipped == (tmp_path / name).read_text(encoding="utf-8"), (
            f"{name} is stale: rerun python -m dojo.data.synthetic"
        )
        assert len(shipped.splitlines()) == n
    record = json.loads((paths.DATA_DIR / "sft/arithmetic_eval.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
