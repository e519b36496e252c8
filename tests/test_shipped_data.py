"""Checks on the hand-written datasets shipped under data/ (formats, splits, answers, READMEs).

The synthetic `arithmetic_*` files belong to `dojo.data.synthetic` and are tested there; here
they only count for the README check.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
FOLDERS = ("sft", "preference", "kto", "prompts", "pretrain")
MAX_BYTES = 1_000_000  # shipped files stay small enough to read in a notebook cell

Record = dict
Validator = Callable[[Record, str], None]


# ---------------------------------------------------------------- reading


def read_records(path: Path) -> list[Record]:
    """Records of a .json array or a .jsonl file; errors name the file and line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        records = json.loads(text)
        assert isinstance(records, list), f"{path}: top level must be a JSON array"
        return records
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        assert line.strip(), f"{path} line {number}: empty line in a .jsonl file"
        records.append(json.loads(line))
    return records


def nonempty_str(value: object, where: str) -> str:
    assert isinstance(value, str) and value.strip(), f"{where}: expected a non-empty string"
    assert value == value.strip(), f"{where}: leading or trailing whitespace"
    return value


def check_keys(record: Record, required: set[str], optional: set[str], where: str) -> None:
    keys = set(record)
    assert required <= keys, f"{where}: missing {sorted(required - keys)}"
    assert keys <= required | optional, f"{where}: unexpected {sorted(keys - required - optional)}"


# ---------------------------------------------------------------- OpenAI / TRL messages


def check_tool_specs(tools: object, where: str) -> set[str]:
    """JSON-schema function specs as TRL and transformers take them; returns the names."""
    assert isinstance(tools, list) and tools, f"{where}: tools must be a non-empty list"
    names = set()
    for spec in tools:
        assert spec["type"] == "function", f"{where}: tool type must be 'function'"
        function = spec["function"]
        nonempty_str(function["name"], f"{where}: tool name")
        nonempty_str(function["description"], f"{where}: tool description")
        assert function["parameters"]["type"] == "object", f"{where}: parameters must be an object"
        names.add(function["name"])
    return names


def check_messages(messages: object, where: str, last: str = "assistant", tools=None) -> None:
    """System first if any, then user/assistant alternating; tool calls answered by tool turns."""
    assert isinstance(messages, list) and messages, f"{where}: messages must be a non-empty list"
    tool_names = check_tool_specs(tools, where) if tools is not None else set()
    pending: list[str] = []  # tool_call ids waiting for their tool message
    expected = "user"
    for i, message in enumerate(messages):
        at = f"{where} message {i}"
        role = message["role"]
        if role == "system":
            assert i == 0, f"{at}: system message must come first"
            nonempty_str(message["content"], at)
            continue
        if role == "tool":
            assert pending, f"{at}: tool message without a pending tool call"
            assert message["tool_call_id"] == pending.pop(0), f"{at}: tool_call_id mismatch"
            assert message["name"] in tool_names, f"{at}: unknown tool {message['name']!r}"
            nonempty_str(message["content"], at)
            continue
        assert not pending, f"{at}: tool calls {pending} were not answered"
        assert role == expected, f"{at}: role {role!r} where {expected!r} was expected"
        if role == "assistant" and message.get("tool_calls"):
            assert message["content"] == "", f"{at}: a tool-calling turn has empty content"
            for call in message["tool_calls"]:
                assert call["type"] == "function", f"{at}: tool call type must be 'function'"
                assert call["function"]["name"] in tool_names, f"{at}: undeclared tool"
                assert isinstance(call["function"]["arguments"], dict), f"{at}: arguments dict"
                pending.append(call["id"])
            expected = "assistant"  # the answer follows the tool results
            continue
        check_keys(message, {"role", "content"}, set(), at)
        nonempty_str(message["content"], at)
        expected = "assistant" if role == "user" else "user"
    assert not pending, f"{where}: tool calls {pending} were not answered"
    final = messages[-1]["role"]
    assert final == last, f"{where}: conversation ends with {final!r}, expected {last!r}"


def validate_openai(record: Record, where: str) -> None:
    check_keys(record, {"messages"}, {"tools"}, where)
    check_messages(record["messages"], where, tools=record.get("tools"))


# ---------------------------------------------------------------- ShareGPT


USER_SIDE, ASSISTANT_SIDE = {"human", "observation"}, {"gpt", "function_call"}


def check_sharegpt_turns(turns: object, where: str, tools: set[str], last_side: set[str]) -> None:
    """Optional system, then user side and assistant side alternating."""
    assert isinstance(turns, list) and turns, f"{where}: conversations must be a non-empty list"
    if turns[0]["from"] == "system":
        nonempty_str(turns[0]["value"], f"{where} turn 0")
        turns = turns[1:]
    assert turns and turns[0]["from"] == "human", f"{where}: first turn must be 'human'"
    for i, turn in enumerate(turns):
        at = f"{where} turn {i}"
        check_keys(turn, {"from", "value"}, set(), at)
        side = USER_SIDE if i % 2 == 0 else ASSISTANT_SIDE
        assert turn["from"] in side, f"{at}: {turn['from']!r} where one of {sorted(side)} fits"
        nonempty_str(turn["value"], at)
        if turn["from"] == "function_call":
            call = json.loads(turn["value"])
            assert call["name"] in tools, f"{at}: calls undeclared tool {call['name']!r}"
            assert isinstance(call["arguments"], dict), f"{at}: arguments must be an object"
            assert turns[i + 1]["from"] == "observation", f"{at}: no observation follows"
    assert turns[-1]["from"] in last_side, f"{where}: wrong last turn {turns[-1]['from']!r}"


def sharegpt_tool_names(record: Record, where: str) -> set[str]:
    if "tools" not in record:
        return set()
    assert isinstance(record["tools"], str), f"{where}: tools must be a JSON string"
    specs = json.loads(record["tools"])
    for spec in specs:
        nonempty_str(spec["name"], f"{where}: tool name")
        assert spec["parameters"]["type"] == "object", f"{where}: parameters must be an object"
    return {spec["name"] for spec in specs}


def validate_sharegpt(record: Record, where: str) -> None:
    check_keys(record, {"conversations"}, {"tools"}, where)
    tools = sharegpt_tool_names(record, where)
    check_sharegpt_turns(record["conversations"], where, tools, last_side={"gpt"})


# ---------------------------------------------------------------- Alpaca and instruction/output


def validate_alpaca(record: Record, where: str) -> None:
    check_keys(record, {"instruction", "input", "output"}, {"system", "history"}, where)
    nonempty_str(record["instruction"], f"{where} instruction")
    nonempty_str(record["output"], f"{where} output")
    assert isinstance(record["input"], str), f"{where}: input must be a string"
    if "system" in record:
        nonempty_str(record["system"], f"{where} system")
    for j, pair in enumerate(record.get("history", [])):
        assert isinstance(pair, list) and len(pair) == 2, f"{where} history {j}: [user, assistant]"
        for text in pair:
            nonempty_str(text, f"{where} history {j}")


def validate_instruction_output(record: Record, where: str) -> None:
    check_keys(record, {"instruction", "output"}, set(), where)
    nonempty_str(record["instruction"], f"{where} instruction")
    nonempty_str(record["output"], f"{where} output")


# ---------------------------------------------------------------- preference, KTO, prompts


def assistant_turn(value: object, where: str) -> str:
    assert isinstance(value, list) and len(value) == 1, f"{where}: one assistant message"
    check_keys(value[0], {"role", "content"}, set(), where)
    assert value[0]["role"] == "assistant", f"{where}: role must be 'assistant'"
    return nonempty_str(value[0]["content"], where)


def validate_explicit_preference(record: Record, where: str) -> None:
    check_keys(record, {"prompt", "chosen", "rejected"}, set(), where)
    check_messages(record["prompt"], f"{where} prompt", last="user")
    chosen = assistant_turn(record["chosen"], f"{where} chosen")
    rejected = assistant_turn(record["rejected"], f"{where} rejected")
    assert chosen != rejected, f"{where}: chosen and rejected are identical"


def validate_implicit_preference(record: Record, where: str) -> None:
    check_keys(record, {"chosen", "rejected"}, set(), where)
    chosen, rejected = record["chosen"], record["rejected"]
    check_messages(chosen, f"{where} chosen")
    check_messages(rejected, f"{where} rejected")
    assert chosen[:-1] == rejected[:-1], f"{where}: chosen and rejected must share the prompt"
    assert chosen[-1] != rejected[-1], f"{where}: chosen and rejected are identical"


def validate_sharegpt_preference(record: Record, where: str) -> None:
    """LLaMA-Factory ranking format: chosen/rejected are single gpt turns."""
    check_keys(record, {"conversations", "chosen", "rejected"}, set(), where)
    check_sharegpt_turns(record["conversations"], where, set(), last_side={"human"})
    for key in ("chosen", "rejected"):
        check_keys(record[key], {"from", "value"}, set(), f"{where} {key}")
        assert record[key]["from"] == "gpt", f"{where} {key}: from must be 'gpt'"
        nonempty_str(record[key]["value"], f"{where} {key}")
    assert record["chosen"] != record["rejected"], f"{where}: chosen and rejected are identical"


def validate_sharegpt_chosen_gpt(record: Record, where: str) -> None:
    """The flat variant: chosen_gpt/rejected_gpt strings beside the conversation."""
    check_keys(record, {"conversations", "chosen_gpt", "rejected_gpt"}, set(), where)
    check_sharegpt_turns(record["conversations"], where, set(), last_side={"human"})
    chosen = nonempty_str(record["chosen_gpt"], f"{where} chosen_gpt")
    assert chosen != nonempty_str(record["rejected_gpt"], f"{where} rejected_gpt"), where


def validate_kto(record: Record, where: str) -> None:
    check_keys(record, {"prompt", "completion", "label"}, set(), where)
    check_messages(record["prompt"], f"{where} prompt", last="user")
    assistant_turn(record["completion"], f"{where} completion")
    assert isinstance(record["label"], bool), f"{where}: label must be true or false"


def validate_word_problem(record: Record, where: str) -> None:
    check_keys(record, {"prompt", "answer"}, set(), where)
    check_messages(record["prompt"], f"{where} prompt", last="user")
    assert len(record["prompt"]) == 1, f"{where}: a single user turn"
    assert re.fullmatch(r"-?\d+", record["answer"]), f"{where}: answer must be an integer string"


# ---------------------------------------------------------------- the registry of shipped files


def with_eval(stem: str, suffix: str, validator: Validator) -> dict[str, Validator]:
    return {f"{stem}{suffix}": validator, f"{stem}_eval{suffix}": validator}


FILES: dict[str, Validator] = {
    **with_eval("sft/sharegpt_en", ".jsonl", validate_sharegpt),
    **with_eval("sft/sharegpt_zh", ".jsonl", validate_sharegpt),
    **with_eval("sft/alpaca_en", ".json", validate_alpaca),
    **with_eval("sft/alpaca_zh", ".json", validate_alpaca),
    **with_eval("sft/instruction_output", ".jsonl", validate_instruction_output),
    **with_eval("sft/openai_messages", ".jsonl", validate_openai),
    **with_eval("preference/prompt_chosen_rejected", ".jsonl", validate_explicit_preference),
    **with_eval("preference/implicit_prompt", ".jsonl", validate_implicit_preference),
    **with_eval("preference/sharegpt_preference", ".json", validate_sharegpt_preference),
    **with_eval("preference/sharegpt_chosen_gpt", ".jsonl", validate_sharegpt_chosen_gpt),
    **with_eval("kto/kto", ".jsonl", validate_kto),
    **with_eval("prompts/word_problems", ".jsonl", validate_word_problem),
}
MIN_RECORDS = {"train": 20, "eval": 6}


def split_of(name: str) -> str:
    return "eval" if re.search(r"_eval\.jsonl?$", name) else "train"


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_parses_and_validates(name: str) -> None:
    path = DATA / name
    assert path.stat().st_size < MAX_BYTES, f"{name} is too large for a shipped file"
    records = read_records(path)
    assert len(records) >= MIN_RECORDS[split_of(name)], f"{name}: only {len(records)} records"
    for i, record in enumerate(records):
        FILES[name](record, f"{name} record {i}")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


BROKEN = [
    (validate_openai, {"messages": [user("a"), user("b"), assistant("c")]}, "role 'user'"),
    (validate_openai, {"messages": [user("a"), assistant("")]}, "non-empty string"),
    (validate_openai, {"messages": [assistant("hi"), user("a")]}, "role 'assistant'"),
    (validate_sharegpt, {"conversations": [{"from": "human", "value": "a"}]}, "last turn"),
    (
        validate_sharegpt,
        {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
        "'human' where",
    ),
    (validate_alpaca, {"instruction": "a", "output": "b"}, "missing ['input']"),
    (
        validate_explicit_preference,
        {"prompt": [user("a")], "chosen": [assistant("x")], "rejected": [assistant("x")]},
        "identical",
    ),
    (
        validate_implicit_preference,
        {"chosen": [user("a"), assistant("x")], "rejected": [user("b"), assistant("y")]},
        "share the prompt",
    ),
    (validate_kto, {"prompt": [user("a")], "completion": [assistant("x")], "label": 1}, "label"),
    (validate_word_problem, {"prompt": [user("a")], "answer": "4.5"}, "integer"),
]


@pytest.mark.parametrize("validator, record, message", BROKEN)
def test_validators_reject_broken_records(validator: Validator, record: Record, message: str):
    with pytest.raises(AssertionError, match=re.escape(message)):
        validator(record, "broken")


def test_every_file_loads_with_datasets() -> None:
    """Arrow must find one schema per file, or `load_dataset("json", ...)` fails for users."""
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    for name in sorted(FILES):
        loaded = datasets.load_dataset("json", data_files=str(DATA / name), split="train")
        assert len(loaded) == len(read_records(DATA / name)), name


def first_prompt(record: Record) -> str:
    """The opening user text of any shipped record, for the overlap check."""
    for key in ("instruction", "prompt"):
        if key in record:
            value = record[key]
            return value if isinstance(value, str) else first_prompt({"messages": value})
    if "conversations" in record:
        return next(t["value"] for t in record["conversations"] if t["from"] == "human")
    messages = record.get("messages") or record.get("chosen")
    return next(m["content"] for m in messages if m["role"] == "user")


def record_key(record: Record) -> str:
    return first_prompt(record) + "\x00" + json.dumps(record.get("input", ""), ensure_ascii=False)


@pytest.mark.parametrize("name", sorted(n for n in FILES if split_of(n) == "train"))
def test_eval_split_does_not_overlap_train(name: str) -> None:
    eval_name = re.sub(r"(\.jsonl?)$", r"_eval\1", name)
    train = {record_key(r) for r in read_records(DATA / name)}
    held_out = [record_key(r) for r in read_records(DATA / eval_name)]
    assert len(held_out) == len(set(held_out)), f"{eval_name}: duplicate prompts"
    leaked = [k.split("\x00")[0] for k in held_out if k in train]
    assert not leaked, f"{eval_name} repeats training prompts of {name}: {leaked}"


def test_sft_has_multi_turn_system_tools_and_both_languages() -> None:
    sharegpt = read_records(DATA / "sft/sharegpt_en.jsonl")
    assert (
        sum(len([t for t in r["conversations"] if t["from"] == "gpt"]) > 1 for r in sharegpt) >= 3
    )
    assert sum(r["conversations"][0]["from"] == "system" for r in sharegpt) >= 3
    assert sum("tools" in r for r in sharegpt) >= 2
    chinese = re.compile(r"[\u4e00-\u9fff]")
    zh = read_records(DATA / "sft/sharegpt_zh.jsonl")
    assert all(chinese.search(first_prompt(r)) for r in zh), "every zh prompt is in Chinese"
    openai = read_records(DATA / "sft/openai_messages.jsonl")
    assert sum("tools" in r for r in openai) >= 5
    alpaca = read_records(DATA / "sft/alpaca_en.json")
    assert sum("history" in r for r in alpaca) >= 3


def test_kto_has_both_labels_and_preference_both_languages() -> None:
    for name in ("kto/kto.jsonl", "kto/kto_eval.jsonl"):
        labels = [r["label"] for r in read_records(DATA / name)]
        assert 0.35 < sum(labels) / len(labels) < 0.65, f"{name}: labels should be balanced"
    chinese = re.compile(r"[\u4e00-\u9fff]")
    for name in [n for n in FILES if n.startswith("preference/")]:
        prompts = [first_prompt(r) for r in read_records(DATA / name)]
        assert any(chinese.search(p) for p in prompts), f"{name}: no Chinese prompt"
        assert any(not chinese.search(p) for p in prompts), f"{name}: no English prompt"


# Each word problem with its answer computed here from the numbers in the question
# (the expression is our reading of the problem); the prefix guards against misalignment.
WORD_PROBLEM_SOLUTIONS = {
    "prompts/word_problems.jsonl": [
        ("Mia has 14 apples. She", 14 + 9 - 3),
        ("A box holds 6 eggs. Ho", 6 * 7),
        ("Leo reads 15 pages a d", 15 * 14),
        ("A class of 28 pupils s", 28 // 4),
        ("A pencil costs 3 coins", 4 * 3 + 2 * 5),
        ("Sara had 50 coins. She", 50 - 18 - 7),
        ("A garden is 12 metres ", 12 * 5),
        ("A square has a perimet", 36 // 4),
        ("A bus leaves with 23 p", 23 - 8 + 11),
        ("Tom is 9 years old. Hi", 9 * 4),
        ("A farmer has 3 fields ", 3 * 45 - 20),
        ("A film lasts 95 minute", 6 * 60 + 50 + 95 - 8 * 60),
        ("Ana saves 12 coins eve", 96 // 12),
        ("A rope 60 metres long ", 60 // 8),
        ("A shop sells juice in ", math.ceil(40 / 6)),
        ("There are 120 sweets s", 120 // 8),
        ("A shirt costs 40 coins", 40 - 40 * 25 // 100),
        ("A car travels at 60 km", 60 * 3),
        ("A cyclist rides 84 km ", 84 // 4),
        ("A baker makes 144 roll", 144 // 12),
        ("A school has 6 classes", 6 * 25 - 17),
        ("Lily has 3 times as ma", 16 + 3 * 16),
        ("A tank holds 200 litre", 200 * 3 // 4),
        ("The temperature was -4", -4 + 11),
        ("A library had 350 book", 350 + 75 - 40),
        ("Each of 5 friends pays", 5 * 18),
        ("A train has 8 carriage", 8 * 52),
        ("Omar scored 7, 9 and 8", (7 + 9 + 8) // 3),
        ("A recipe needs 3 eggs ", 3 * 36 // 12),
        ("A rectangle has a leng", 2 * (9 + 6)),
        ("Nina walks 2 km to sch", 2 * 2 * 5),
        ("A jar has 64 marbles. ", 64 - 64 // 2 - 64 // 4),
        ("What number is 15 more", 2 * 23 + 15),
        ("A book has 240 pages. ", 240 * 3 // 8),
        ("A theatre has 18 rows ", 18 * 24),
        ("Three brothers share 1", 105 // 3),
        ("A plant grows 3 cm eve", 10 + 3 * 6),
        ("A phone battery starts", 100 - 8 * 7),
        ("I think of a number, m", (52 - 7) // 5),
        ("A ticket costs 12 coin", 2 * 12 + 3 * 7),
        ("小明有 35 颗糖，分给 5 个好朋友，每人", 35 // 5),
        ("一本故事书 86 页，小红第一天看了 27 ", 86 - 27 - 31),
        ("一箱苹果有 24 个，学校买了 9 箱。一共", 24 * 9),
        ("妈妈买了 3 千克香蕉，每千克 6 元，付了", 50 - 3 * 6),
        ("一个长方形花坛长 15 米，宽 8 米。它的", 15 * 8),
        ("同学们排队做操，每排 12 人，一共 7 排", 12 * 7 + 5),
        ("爷爷今年 72 岁，是小刚年龄的 8 倍。小", 72 // 8),
        ("一辆汽车每小时行 75 千米，4 小时行多少", 75 * 4),
        ("一根绳子长 100 米，用去 36 米，又用", 100 - 36 - 28),
        ("商店里一件衣服原价 200 元，打九折出售。", 200 * 9 // 10),
        ("一个数加上 18 再乘以 3 等于 75，这", 75 // 3 - 18),
        ("学校图书馆有故事书 420 本，科技书比故事", 420 + (420 - 150)),
        ("小华每天跳绳 150 下，一个星期一共跳多少", 150 * 7),
        ("一个正方形的边长是 7 厘米，它的周长是多少", 7 * 4),
        ("三个数的平均数是 20，其中两个数是 15 ", 20 * 3 - 15 - 28),
        ("鸡和兔共有 10 只，脚共有 28 只。兔有", (28 - 2 * 10) // 2),
        ("一桶水 18 升，倒出三分之一后，还剩多少升", 18 - 18 // 3),
        ("一场电影 9 点 40 分开始，放映了 11", 9 * 60 + 40 + 110 - 11 * 60),
        ("一个班有男生 23 人，女生比男生多 4 人", 23 + (23 + 4)),
        ("一本练习本 4 元，买 15 本需要多少元？", 4 * 15),
    ],
    "prompts/word_problems_eval.jsonl": [
        ("Jack has 27 cards. He ", 27 + 15 - 9),
        ("A packet has 8 biscuit", 8 * 9),
        ("A ribbon 72 cm long is", 72 // 6),
        ("A cinema ticket costs ", 9 * 7),
        ("A pool is 25 metres lo", 25 * 12),
        ("A bag of 90 marbles is", 90 // 6),
        ("A jacket costs 80 coin", 80 - 80 * 10 // 100),
        ("I think of a number, d", (31 + 9) // 2),
        ("小丽有 48 张邮票，送给同学 13 张，又", 48 - 13 + 20),
        ("一瓶牛奶 5 元，买 6 瓶要多少元？", 5 * 6),
        ("一条路长 960 米，每天修 120 米，几", 960 // 120),
        ("一个长方形长 12 厘米，宽 7 厘米，周长", 2 * (12 + 7)),
        ("果园里有桃树 45 棵，梨树是桃树的 3 倍", 45 * 3),
        ("四个数的平均数是 15，它们的和是多少？", 15 * 4),
        ("鸡和兔共有 8 只，脚共有 22 只。鸡有几", 8 - (22 - 2 * 8) // 2),
    ],
}


@pytest.mark.parametrize("name", sorted(WORD_PROBLEM_SOLUTIONS))
def test_word_problem_answers_are_correct(name: str) -> None:
    records = read_records(DATA / name)
    solutions = WORD_PROBLEM_SOLUTIONS[name]
    assert len(records) == len(solutions), (
        f"{name}: {len(records)} records, {len(solutions)} solutions"
    )
    for i, (record, (prefix, value)) in enumerate(zip(records, solutions)):
        question = record["prompt"][0]["content"]
        assert question.startswith(prefix), f"{name} record {i}: solutions out of order"
        assert value == int(value), f"{name} record {i}: answer {value} is not a whole number"
        assert record["answer"] == str(int(value)), f"{name} record {i}: answer should be {value}"


# ---------------------------------------------------------------- pretraining text


PRETRAIN = sorted((DATA / "pretrain").glob("*.txt"))


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.name)
def test_pretrain_text_is_documents_of_titled_paragraphs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is too large for a shipped file"
    assert text.endswith("\n") and not text.endswith("\n\n"), f"{path.name}: one final newline"
    assert "\n\n\n" not in text, f"{path.name}: documents are separated by exactly one blank line"
    for i, document in enumerate(text.strip().split("\n\n")):
        lines = document.split("\n")
        assert len(lines) >= 2, f"{path.name} document {i}: a title and at least one paragraph"
        assert all(line == line.strip() and line for line in lines), f"{path.name} document {i}"
        assert len(lines[0]) < 60, f"{path.name} document {i}: the first line is a short title"


def test_pretrain_has_english_and_chinese() -> None:
    texts = {p.name: p.read_text(encoding="utf-8") for p in PRETRAIN}
    chinese = [n for n, t in texts.items() if len(re.findall(r"[\u4e00-\u9fff]", t)) > 1000]
    assert chinese and len(texts) - len(chinese) >= 4
    assert sum(len(t.encode()) for t in texts.values()) > 150_000


# ---------------------------------------------------------------- READMEs


def mentioned(name: str, readme: str) -> bool:
    """A file counts as mentioned when its name, or a `glob` matching it, is in backticks."""
    quoted = re.findall(r"`([^`\s]+)`", readme)
    return any(name == q or fnmatch.fnmatch(name, q) for q in quoted)


def test_data_readme_indexes_every_folder() -> None:
    index = (DATA / "README.md").read_text(encoding="utf-8")
    for folder in FOLDERS:
        assert f"({folder}/README.md)" in index, f"data/README.md does not link {folder}/README.md"


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_readme_mentions_every_file_and_licence(folder: str) -> None:
    readme = (DATA / folder / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in (DATA / folder).iterdir() if p.name != "README.md")
    missing = [name for name in files if not mentioned(name, readme)]
    assert not missing, f"data/{folder}/README.md does not mention {missing}"
    assert "CC-BY-4.0" in readme and "LLM Dojo" in readme, f"data/{folder}/README.md: licence"
