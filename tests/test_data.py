"""dojo.data loading, conversion and validation: every format, every bad input, every shipped file."""

import json

import pytest

from dojo import paths
from dojo.data import (
    FORMATS,
    DataError,
    detect_format,
    load,
    load_dataset_for,
    load_records,
    messages_to_alpaca,
    messages_to_sharegpt,
)
from dojo.data.load import data_files

USER_ASSISTANT = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "2 + 2 = 4"},
]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


# --- one record of each format, converted -------------------------------------------------------

SHAREGPT_TOOLS = {
    "conversations": [
        {"from": "system", "value": "Use tools."},
        {"from": "human", "value": "Weather in Paris?"},
        {
            "from": "function_call",
            "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        },
        {"from": "observation", "value": '{"temperature_c": 14}'},
        {"from": "gpt", "value": "14 °C."},
    ],
    "tools": '[{"name": "get_weather"}]',
}


def test_sharegpt_with_function_call_and_observation():
    ds = load([SHAREGPT_TOOLS], "sft")
    messages = ds[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    call = messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert ds[0]["tools"] == SHAREGPT_TOOLS["tools"]


def test_sharegpt_round_trips():
    converted = load([SHAREGPT_TOOLS], "sft")[0]["messages"]
    back = messages_to_sharegpt(converted)
    original = SHAREGPT_TOOLS["conversations"]
    assert [t["from"] for t in back] == [t["from"] for t in original]
    for a, b in zip(back, original):
        if a["from"] == "function_call":
            assert json.loads(a["value"]) == json.loads(b["value"])
        else:
            assert a["value"] == b["value"]


def test_alpaca_with_system_and_history_round_trips():
    record = {
        "system": "Be brief.",
        "history": [["Hi", "Hello!"]],
        "instruction": "Add the numbers.",
        "input": "2 and 3",
        "output": "5",
    }
    messages = load([record], "sft")[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[3]["content"] == "Add the numbers.\n2 and 3"
    back = messages_to_alpaca(messages)
    assert back["system"] == "Be brief." and back["history"] == [["Hi", "Hello!"]]
    assert back["output"] == "5"
    assert load([back], "sft")[0]["messages"] == messages


@pytest.mark.parametrize(
    "record, fmt",
    [
        ({"instruction": "Hi?", "output": "Hello."}, "instruction_output"),
        ({"question": "Hi?", "response": "Hello."}, "instruction_output"),
        ({"prompt": "Hi?", "completion": "Hello."}, "prompt_completion"),
        ({"prompt": USER_ASSISTANT[:1], "completion": USER_ASSISTANT[1:]}, "prompt_completion"),
        ({"messages": USER_ASSISTANT}, "openai"),
    ],
)
def test_single_turn_sft_formats(record, fmt):
    assert detect_format(record, "sft").name == fmt
    messages = load([record], "sft")[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_openai_tool_calls_keep_ids_and_get_string_arguments():
    record = {
        "messages": [
            {"role": "user", "content": "Coat in Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": {"city": "Oslo"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "3 C"},
            {"role": "assistant", "content": "Yes."},
        ],
        "tools": [{"type": "function", "function": {"name": "w"}}],
    }
    row = load([record], "sft")[0]
    call = row["messages"][1]["tool_calls"][0]
    assert call["id"] == "c1" and call["function"]["arguments"] == '{"city": "Oslo"}'
    assert json.loads(row["tools"]) == record["tools"]


def test_preference_explicit_implicit_and_sharegpt_variants_agree():
    prompt = USER_ASSISTANT[:1]
    chosen = [{"role": "assistant", "content": "4"}]
    rejected = [{"role": "assistant", "content": "5"}]
    explicit = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    implicit = {"chosen": prompt + chosen, "rejected": prompt + rejected}
    strings = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
    turns = [{"from": "human", "value": "What is 2 + 2?"}]
    factory = {
        "conversations": turns,
        "chosen": {"from": "gpt", "value": "4"},
        "rejected": {"from": "gpt", "value": "5"},
    }
    chosen_gpt = {
        "conversations": turns
        + [{"from": "chosen_gpt", "value": "4"}, {"from": "rejected_gpt", "value": "5"}]
    }
    ds = load([explicit, implicit, strings, factory, chosen_gpt], "preference")
    for row in ds:
        assert (row["prompt"], row["chosen"], row["rejected"]) == (prompt, chosen, rejected)
    assert detect_format(factory).name == detect_format(chosen_gpt).name == "sharegpt_preference"


def test_kto_label_fixed_and_counted():
    records = [
        {"prompt": "Q?", "completion": "A.", "label": True},
        {"prompt": "Q?", "completion": "B.", "label": "false"},
    ]
    ds, summary = load(records, "kto", return_summary=True)
    assert ds["label"] == [True, False]
    assert summary.kept == 2 and summary.fixed == 1
    assert summary.fixes["label converted to bool"] == 1


def test_prompt_only_keeps_answer_columns():
    records = [{"prompt": "What is 6 * 7?", "answer": 42, "task": "mul"}]
    row = load(records, "prompt")[0]
    assert row["prompt"] == [{"role": "user", "content": "What is 6 * 7?"}]
    assert row["answer"] == "42" and row["task"] == "mul"
    # An SFT conversation works as a prompt too: its last reply becomes the answer.
    row = load([{"messages": USER_ASSISTANT}], "prompt")[0]
    assert row["prompt"] == USER_ASSISTANT[:1] and row["answer"] == "2 + 2 = 4"


def test_text_from_txt_files_one_record_per_line(tmp_path):
    (tmp_path / "a.txt").write_text("First line.\n\nSecond line.\n", "utf-8")
    assert load(tmp_path / "a.txt", "text")["text"] == ["First line.", "Second line."]


def test_explicit_format_override():
    # Auto-detection would call this openai SFT data; asked as a prompt, it is a GRPO prompt.
    record = {"messages": USER_ASSISTANT, "answer": "4"}
    row = load([record], "prompt", format="openai_prompt")[0]
    assert row["answer"] == "4"
    with pytest.raises(ValueError, match="produces 'sft' data, not 'kto'"):
        load([record], "kto", format="openai")


def test_every_format_is_registered_once_with_its_kind():
    kinds = {f.kind for f in FORMATS.values()}
    assert kinds == {"sft", "preference", "kto", "prompt", "text"}
    assert {"sharegpt", "sharegpt_preference", "alpaca", "instruction_output", "openai"} <= set(
        FORMATS
    )


# --- file types, folders, sampling, splits -------------------------------------------------------


def test_json_jsonl_parquet_csv_load_the_same(tmp_path):
    import pandas as pd

    records = [{"instruction": f"Q{i}?", "output": f"A{i}."} for i in range(5)]
    _jsonl(tmp_path / "x.jsonl", records)
    (tmp_path / "x.json").write_text(json.dumps(records), "utf-8")
    pd.DataFrame(records).to_parquet(tmp_path / "x.parquet")
    pd.DataFrame(records).to_csv(tmp_path / "x.csv", index=False)
    # Messages in a CSV cell are JSON text.
    pd.DataFrame({"messages": [json.dumps(USER_ASSISTANT)]}).to_csv(tmp_path / "m.csv", index=False)
    expected = load(records, "sft")["messages"]
    for suffix in ("jsonl", "json", "parquet", "csv"):
        assert load(tmp_path / f"x.{suffix}", "sft")["messages"] == expected, suffix
    assert load(tmp_path / "m.csv", "sft")[0]["messages"] == USER_ASSISTANT


def test_folder_train_and_eval_files(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [{"messages": USER_ASSISTANT}] * 3)
    _jsonl(tmp_path / "a_eval.jsonl", [{"messages": USER_ASSISTANT}] * 2)
    (tmp_path / "README.md").write_text("not data")
    assert [p.name for p in data_files(tmp_path)] == ["a.jsonl"]
    train, eval_set, summary = load_dataset_for("sft", tmp_path)
    assert (len(train), len(eval_set)) == (3, 2)
    assert summary.eval.kept == 2
    # A single file finds its eval sibling too.
    train, eval_set, _ = load_dataset_for("sft", tmp_path / "a.jsonl")
    assert len(eval_set) == 2


def test_max_samples_seeded_shuffle_and_eval_fraction():
    records = [{"instruction": f"Q{i}?", "output": f"A{i}."} for i in range(50)]
    a = load(records, "sft", max_samples=10, seed=1)
    b = load(records, "sft", max_samples=10, seed=1)
    c = load(records, "sft", max_samples=10, seed=2)
    assert a["messages"] == b["messages"] != c["messages"]
    assert load(records, "sft", max_samples=3)[0]["messages"][0]["content"] == "Q0?"
    train, eval_set, _ = load_dataset_for("sft", records, eval_fraction=0.2, seed=0)
    assert (len(train), len(eval_set)) == (40, 10)


def test_hub_name_goes_through_datasets_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(repo, config=None, split=None):
        calls.append((repo, config, split))
        return datasets.Dataset.from_list([{"messages": USER_ASSISTANT}] * 4)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds, summary = load(
        "org/chat-data:default", "sft", split="test", max_samples=2, return_summary=True
    )
    assert calls == [("org/chat-data", "default", "test")]
    assert len(ds) == 2 and summary.source == "org/chat-data:default"


def test_load_dataset_for_each_method_gives_trl_columns():
    records = {
        "sft": [{"messages": USER_ASSISTANT}],
        "dpo": [{"prompt": "Q", "chosen": "A", "rejected": "B"}],
        "kto": [{"prompt": "Q", "completion": "A", "label": True}],
        "grpo": [{"prompt": "Q", "answer": "4"}],
        "pretrain": [{"text": "Some text."}],
        "reward": [{"prompt": "Q", "chosen": "A", "rejected": "B"}],
    }
    columns = {
        "sft": ["messages"],
        "dpo": ["prompt", "chosen", "rejected"],
        "kto": ["prompt", "completion", "label"],
        "grpo": ["prompt", "answer"],
        "pretrain": ["text"],
        "reward": ["prompt", "chosen", "rejected"],
    }
    for method, data in records.items():
        train, eval_set, _ = load_dataset_for(method, data)
        assert train.column_names == columns[method] and eval_set is None


# --- bad inputs: the message names file, line, field and the fix -------------------------------

BAD = [
    (
        {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]},
        r"line 2: conversations\[1\] has 'from': 'bot'; expected one of",
        "unknown role",
    ),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        r"line 2: messages\[1\] has role 'user' after 'user'; roles must alternate",
        "role order",
    ),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]},
        r"line 2: messages\[1\] \(assistant\) has empty content",
        "empty content",
    ),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
        r"line 2: messages\[1\] has unknown role 'robot'",
        "unknown role",
    ),
    (
        {"instruction": "a", "input": ""},
        r"line 2: missing field 'output'",
        "missing field",
    ),
    (
        {"instruction": "a", "input": "", "output": 7},
        r"line 2: field 'output' must be a string, got int",
        "type",
    ),
    (
        {"messages": [{"role": "user", "content": "a"}]},
        r"line 2: 'messages' has no assistant message",
        "no assistant",
    ),
]


@pytest.mark.parametrize("bad, message, reason", BAD, ids=[b[2] for b in BAD])
def test_bad_record_errors_name_file_line_and_field(tmp_path, bad, message, reason):
    good = {"messages": USER_ASSISTANT} if "messages" in bad else None
    good = good or (
        {"instruction": "q", "input": "", "output": "a"}
        if "instruction" in bad
        else {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    )
    path = _jsonl(tmp_path / "x.jsonl", [good, bad, good])
    with pytest.raises(DataError, match=str(path).replace(".", r"\.") + " " + message):
        load(path, "sft")
    ds, summary = load(path, "sft", on_error="skip", return_summary=True)
    assert len(ds) == 2 and summary.dropped == 1 and summary.drops[reason] == 1
    assert summary.total == 3 and summary.kept == 2


def test_identical_preference_pair_is_rejected():
    with pytest.raises(DataError, match=r"record 0: 'chosen' and 'rejected' are identical"):
        load([{"prompt": "Q", "chosen": "A", "rejected": "A"}], "preference")


def test_bad_json_line_and_kto_label(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text('{"prompt": "Q", "completion": "A", "label": true}\n{"prompt": "Q",\n')
    with pytest.raises(DataError, match=r"k\.jsonl line 2: not valid JSON"):
        load(path, "kto")
    with pytest.raises(DataError, match=r"record 0: 'label' must be true or false, got 'maybe'"):
        load([{"prompt": "Q", "completion": "A", "label": "maybe"}], "kto")


def test_unknown_format_lists_what_is_expected():
    with pytest.raises(DataError, match=r"record 0: no sft format recognises .*'foo'.*sharegpt"):
        load([{"foo": 1}], "sft")


def test_fixes_are_counted_never_silent():
    records = [
        {"messages": [{"role": "system", "content": ""}, *USER_ASSISTANT]},
        {"messages": [*USER_ASSISTANT, {"role": "user", "content": "thanks"}]},
        {"messages": USER_ASSISTANT},
    ]
    ds, summary = load(records, "sft", return_summary=True)
    assert all(row["messages"] == USER_ASSISTANT for row in ds)
    assert (summary.kept, summary.fixed, summary.dropped) == (3, 2, 0)
    assert summary.fixes == {"empty system message removed": 1, "trailing user turn removed": 1}
    assert "3 kept (2 fixed), 0 dropped" in str(summary)


# --- every shipped file converts and validates ---------------------------------------------------

KIND_OF_FOLDER = {"sft": "sft", "preference": "preference", "kto": "kto", "prompts": "prompt"}
SHIPPED = sorted(
    p
    for folder in KIND_OF_FOLDER
    for p in (paths.DATA_DIR / folder).glob("*")
    if p.suffix in (".json", ".jsonl")
)


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_every_shipped_file_converts_and_validates(path):
    records, summary = load_records(path, KIND_OF_FOLDER[path.parent.name])
    assert summary.dropped == 0 and summary.kept == summary.total == len(records) > 0
    assert len(summary.formats) == 1  # one format per file


def test_shipped_pretraining_text_loads():
    train, eval_set, summary = load_dataset_for("pretrain", paths.DATA_DIR / "pretrain")
    assert len(train) > 50 and summary.dropped == 0


@pytest.mark.parametrize(
    "records, kind, message",
    [
        (
            [{"prompt": "Q", "chosen": "A", "rejected": "B"}, {"prompt": "Q", "chosen": "A"}],
            "preference",
            r"missing field 'rejected'",
        ),
        (
            [{"prompt": "Q", "label": True, "completion": None}],
            "kto",
            r"missing field 'completion'",
        ),
        ([{"answer": "4", "prompt": None}], "prompt", r"missing field 'prompt'"),
        (
            [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]
            + [{"conversations": []}],
            "sft",
            r"field 'conversations' must be a non-empty list",
        ),
    ],
)
def test_missing_fields_name_the_field(records, kind, message):
    with pytest.raises(DataError, match=rf"record {len(records) - 1}: " + message):
        load(records, kind)


def test_explicit_format_on_the_wrong_shape_says_which_format_wanted_what():
    with pytest.raises(DataError, match=r"record 0: missing field 'messages' \(format openai"):
        load([{"foo": "Q"}], "sft", format="openai")
    with pytest.raises(DataError, match=r"record 0: missing field: one of \('instruction'"):
        load([{"foo": "Q"}], "sft", format="instruction_output")


# --- the deliberately broken files of data/broken (notebook 02 reads them) ----------------------

BROKEN = {
    "sft_broken.jsonl": (
        "sft",
        {
            2: "conversations[2] has role 'gpt' after 'gpt'; turns must alternate human/gpt",
            3: "conversations[1] ('gpt') has empty content",
            4: "conversations[1] has 'from': 'bot'; expected one of",
            5: "not valid JSON (Expecting ',' delimiter at column 95)",
            7: "conversations[1] is a function_call whose value is not JSON",
            8: "field 'conversations' must be a list, got str",
        },
        {"trailing user turn removed": 1},
    ),
    "preference_broken.jsonl": (
        "preference",
        {
            2: "'chosen' and 'rejected' are identical",
            3: "missing field 'rejected'",
            4: "'prompt' ends with an assistant message; it must end on a user turn",
            5: "'chosen' and 'rejected' share no prompt",
        },
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_report_every_bad_line(name):
    kind, expected, fixes = BROKEN[name]
    path = paths.DATA_DIR / "broken" / name
    lines = len(path.read_text("utf-8").splitlines())
    with pytest.raises(DataError, match=f"line {min(expected)}: "):
        load(path, kind)
    ds, summary = load(path, kind, on_error="skip", return_summary=True)
    assert len(summary.errors) == len(expected) == summary.dropped
    for error, (line, message) in zip(summary.errors, expected.items(), strict=True):
        assert error.startswith(f"{path} line {line}: {message}"), error
    assert len(ds) == summary.kept == lines - len(expected)
    assert dict(summary.fixes) == fixes


def test_broken_files_are_named_in_the_data_readme():
    readme = (paths.DATA_DIR / "README.md").read_text("utf-8")
    for path in (paths.DATA_DIR / "broken").iterdir():
        assert f"`broken/{path.name}`" in readme, path.name


def test_instruction_output_and_openai_round_trip():
    record = {"system": "Be brief.", "instruction": "Hi?", "output": "Hello."}
    messages = load([record], "sft")[0]["messages"]
    back = messages_to_alpaca(messages)
    assert (back["system"], back["instruction"], back["output"]) == ("Be brief.", "Hi?", "Hello.")
    assert load([{"messages": messages}], "sft")[0]["messages"] == messages


def test_sharegpt_turns_inside_preference_fields_are_located():
    record = {
        "prompt": [{"from": "human", "value": "Q"}, {"from": "bot", "value": "Q"}],
        "chosen": "A",
        "rejected": "B",
    }
    with pytest.raises(DataError, match=r"^record 0: prompt\[1\] has 'from': 'bot'; expected"):
        load([record], "preference")


def test_preference_turns_loaded_as_sft_say_which_kind_to_use():
    turns = [{"from": "human", "value": "Q"}]
    pair = [{"from": "chosen_gpt", "value": "A"}, {"from": "rejected_gpt", "value": "B"}]
    with pytest.raises(DataError, match=r"conversations\[1\] .*load it with kind='preference'"):
        load([{"conversations": turns + pair}], "sft")
    assert load([{"conversations": turns + pair}], "preference")[0]["chosen"][0]["content"] == "A"
