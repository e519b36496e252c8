"""Converters from the dataset formats people bring to TRL's conversational formats.

Notable choices:
- One small converter per format, registered in one place (`FORMATS`, filled by `@register`):
  adding a format touches this file only. Detection tries the formats in registration order,
  most specific first, and the first whose `detect` accepts a record wins.
- Every converter returns TRL's shape for its kind (`messages`; `prompt`/`chosen`/`rejected`;
  `prompt`/`completion`/`label`; `prompt` + answer columns; `text`) and a list of the harmless
  repairs it made, which the summary counts as "fixed".
- Tool calls follow the OpenAI API: `{"type": "function", "function": {"name", "arguments"}}`
  with `arguments` a JSON string, and `tools` a JSON string per record. Strings keep Arrow
  schemas stable across records whose arguments differ; TRL and `dojo.data.sft` decode them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dojo.data.validate import DataError

Converted = tuple[dict[str, Any], list[str]]  # (TRL record, repairs made)

KINDS = ("sft", "preference", "kto", "prompt", "text")


@dataclass(frozen=True)
class Format:
    """A source format: which kind it feeds, how to recognise a record, how to convert one."""

    name: str
    kind: str
    keys: str  # the fields that identify it, for error messages and the notebook's table
    detect: Callable[[dict], bool]
    convert: Callable[[dict, str], Converted]


FORMATS: dict[str, Format] = {}


def register(name: str, kind: str, keys: str, detect: Callable[[dict], bool]):
    """Register a converter under `name` (decorator)."""

    def wrap(convert: Callable[[dict, str], Converted]) -> Callable[[dict, str], Converted]:
        FORMATS[name] = Format(name, kind, keys, detect, convert)
        return convert

    return wrap


def detect_format(record: Any, kind: str | None = None, where: str = "") -> Format:
    """The first registered format (of `kind`, if given) that recognises `record`."""
    if not isinstance(record, dict):
        raise DataError(
            where, f"a record must be a JSON object, got {type(record).__name__}", "type"
        )
    for fmt in FORMATS.values():
        if (kind is None or fmt.kind == kind) and fmt.detect(record):
            return fmt
    known = "; ".join(f"{f.name}: {f.keys}" for f in FORMATS.values() if kind in (None, f.kind))
    raise DataError(
        where,
        f"no {kind or ''} format recognises a record with fields {sorted(record)}; "
        f"expected one of: {known}. Pass format=... to choose one explicitly",
        "unknown format",
    )


def get_format(name: str) -> Format:
    """The registered format called `name`."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; registered formats: {', '.join(FORMATS)}")
    return FORMATS[name]


# ---------------------------------------------------------------------------------------------
# Helpers shared by the converters


def _require(record: dict, key: str, where: str, what: str = "a string") -> Any:
    if key not in record or record[key] is None:
        raise DataError(where, f"missing field '{key}' ({what})", "missing field")
    return record[key]


def _as_text(value: Any, field_name: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(
            where, f"field '{field_name}' must be a string, got {type(value).__name__}", "type"
        )
    return value


def _as_messages(value: Any, role: str, field_name: str, where: str) -> list[dict]:
    """A conversation as it is, or a plain string wrapped as one message of `role`."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return [
            _from_value(m, where, f"{field_name}[{i}]")
            if isinstance(m, dict) and "from" in m
            else m
            for i, m in enumerate(value)
        ]
    raise DataError(
        where,
        f"field '{field_name}' must be a string or a list of messages, got {type(value).__name__}",
        "type",
    )


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _drop_empty_system(messages: list[dict], fixes: list[str]) -> list[dict]:
    if (
        messages
        and messages[0].get("role") == "system"
        and not (messages[0].get("content") or "").strip()
    ):
        fixes.append("empty system message removed")
        return messages[1:]
    return messages


def _drop_trailing_prompt(messages: list[dict], fixes: list[str]) -> list[dict]:
    """SFT learns from assistant turns: a conversation that ends on the user side loses that tail."""
    end = len(messages)
    while end > 0 and messages[end - 1].get("role") in ("user", "tool"):
        end -= 1
    if 0 < end < len(messages) and any(m.get("role") == "assistant" for m in messages[:end]):
        fixes.append("trailing user turn removed")
        return messages[:end]
    return messages


def _tools(record: dict) -> dict:
    tools = record.get("tools")
    if tools in (None, "", []):
        return {}
    return {"tools": tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)}


def _normalise_tool_calls(calls: Any) -> Any:
    """Arguments as a JSON string (the OpenAI convention), whatever the source gave."""
    if not isinstance(calls, list):
        return calls
    out = []
    for call in calls:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            fn = dict(call["function"])
            if not isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
            call = {**call, "type": call.get("type", "function"), "function": fn}
        out.append(call)
    return out


# ---------------------------------------------------------------------------------------------
# ShareGPT: {"conversations": [{"from": ..., "value": ...}], "tools"?}

SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
PREFERENCE_TURNS = ("chosen_gpt", "rejected_gpt")  # the last two turns of a ShareGPT pair


def _function_call(value: str, where: str, at: str) -> list[dict]:
    """A ShareGPT `function_call` value (JSON: one call or a list) as OpenAI tool calls."""
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as e:
        raise DataError(
            where,
            f"{at} is a function_call whose value is not JSON ({e}); expected "
            '{"name": ..., "arguments": {...}}',
            "bad tool call",
        ) from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for call in calls:
        if not isinstance(call, dict) or "name" not in call:
            raise DataError(
                where, f"{at} function_call must name the function: {value[:80]!r}", "bad tool call"
            )
        args = call.get("arguments", {})
        args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        out.append({"type": "function", "function": {"name": call["name"], "arguments": args}})
    return out


def _from_value(turn: dict, where: str = "", at: str = "message") -> dict:
    """One ShareGPT turn as an OpenAI message."""
    source = turn.get("from")
    if source not in SHAREGPT_ROLES:
        hint = (
            "; chosen_gpt/rejected_gpt turns make a preference pair: load it with kind='preference'"
            if source in PREFERENCE_TURNS
            else ""
        )
        raise DataError(
            where,
            f"{at} has 'from': {source!r}; expected one of {sorted(SHAREGPT_ROLES)}{hint}",
            "unknown role",
        )
    value = turn.get("value")
    if value is None:
        raise DataError(where, f"{at} ({source}) is missing 'value'", "missing field")
    if source == "function_call":
        return {"role": "assistant", "content": "", "tool_calls": _function_call(value, where, at)}
    return {"role": SHAREGPT_ROLES[source], "content": value}


def _sharegpt_turns(record: dict, where: str, key: str = "conversations") -> list[dict]:
    turns = _require(record, key, where, "a list of {from, value} turns")
    if not isinstance(turns, list):
        raise DataError(where, f"field '{key}' must be a list, got {type(turns).__name__}", "type")
    return [
        _from_value(t, where, f"{key}[{i}]")
        for i, t in enumerate(turns)
        if _turn_ok(t, where, key, i)
    ]


def _turn_ok(turn: Any, where: str, key: str, i: int) -> bool:
    if not isinstance(turn, dict):
        raise DataError(where, f"{key}[{i}] must be an object with 'from' and 'value'", "type")
    return True


def _is_sharegpt(record: dict) -> bool:
    turns = record.get("conversations")
    return _is_messages(turns) and "from" in turns[0]


def _is_sharegpt_preference(record: dict) -> bool:
    if not _is_sharegpt(record):
        return False
    tail = {t.get("from") for t in record["conversations"][-2:] if isinstance(t, dict)}
    top = {"chosen", "rejected"} <= set(record) or set(PREFERENCE_TURNS) <= set(record)
    return top or set(PREFERENCE_TURNS) <= tail


@register(
    "sharegpt_preference",
    "preference",
    "conversations + chosen/rejected (or chosen_gpt/rejected_gpt turns)",
    _is_sharegpt_preference,
)
def convert_sharegpt_preference(record: dict, where: str) -> Converted:
    """ShareGPT preference (LLaMA-Factory's chosen/rejected, or chosen_gpt/rejected_gpt turns)."""
    turns = list(record["conversations"])
    tail = {t.get("from"): t for t in turns[-2:] if isinstance(t, dict)}
    if set(PREFERENCE_TURNS) <= set(tail):
        chosen, rejected = tail["chosen_gpt"], tail["rejected_gpt"]
        record = {**record, "conversations": turns[:-2]}
    else:
        chosen = record.get("chosen", record.get("chosen_gpt"))
        rejected = record.get("rejected", record.get("rejected_gpt"))
    fixes: list[str] = []
    prompt = _drop_empty_system(_sharegpt_turns(record, where), fixes)
    replies = {}
    for side, reply in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(reply, dict):
            reply = {**reply, "from": "gpt"} if reply.get("from") in PREFERENCE_TURNS else reply
            replies[side] = [_from_value(reply, where, side)]
        else:
            replies[side] = [{"role": "assistant", "content": _as_text(reply, side, where)}]
    out = {"prompt": prompt, **replies, **_tools(record)}
    return out, fixes


@register("sharegpt", "sft", "conversations: [{from, value}]", _is_sharegpt)
def convert_sharegpt(record: dict, where: str) -> Converted:
    """ShareGPT (`from`/`value`, roles human/gpt/system/function_call/observation) to messages."""
    fixes: list[str] = []
    messages = _drop_empty_system(_sharegpt_turns(record, where), fixes)
    messages = _drop_trailing_prompt(messages, fixes)
    return {"messages": messages, **_tools(record)}, fixes


def messages_to_sharegpt(messages: list[dict]) -> list[dict]:
    """The inverse of `convert_sharegpt`: OpenAI messages back to ShareGPT turns."""
    back = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
    turns = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                for c in m["tool_calls"]
            ]
            value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            turns.append({"from": "function_call", "value": value})
        else:
            turns.append({"from": back[m["role"]], "value": m["content"]})
    return turns


# ---------------------------------------------------------------------------------------------
# Preference and KTO in TRL's own shapes


def _is_preference(record: dict) -> bool:
    return "chosen" in record and "rejected" in record and "conversations" not in record


def _common_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@register("preference", "preference", "prompt? + chosen + rejected", _is_preference)
def convert_preference(record: dict, where: str) -> Converted:
    """Preference pairs, explicit prompt or implicit (the prompt is the shared prefix)."""
    chosen = _require(record, "chosen", where, "the preferred reply")
    rejected = _require(record, "rejected", where, "the dispreferred reply")
    if record.get("prompt") is not None:
        prompt = _as_messages(record["prompt"], "user", "prompt", where)
        chosen = _as_messages(chosen, "assistant", "chosen", where)
        rejected = _as_messages(rejected, "assistant", "rejected", where)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **_tools(record)}, []
    if not (_is_messages(chosen) and _is_messages(rejected)):
        raise DataError(
            where,
            "a preference pair without 'prompt' must give 'chosen' and 'rejected' as full "
            "conversations (the prompt is their shared start); add a 'prompt' field for strings",
            "missing field",
        )
    chosen = _as_messages(chosen, "assistant", "chosen", where)
    rejected = _as_messages(rejected, "assistant", "rejected", where)
    # Implicit prompt: everything the two conversations share, up to the last user-side turn.
    n = _common_prefix(chosen, rejected)
    while n > 0 and chosen[n - 1].get("role") == "assistant":
        n -= 1
    if n == 0:
        raise DataError(
            where,
            "'chosen' and 'rejected' share no prompt; they must start with the same turns",
            "missing field",
        )
    out = {"prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:], **_tools(record)}
    return out, []


LABELS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


@register("kto", "kto", "prompt + completion + label", lambda r: "completion" in r and "label" in r)
def convert_kto(record: dict, where: str) -> Converted:
    """Unpaired preference (KTO): prompt, completion, and whether the completion is desirable."""
    fixes = []
    label = _require(record, "label", where, "true or false")
    if not isinstance(label, bool):
        key = str(label).strip().lower()
        if key not in LABELS:
            raise DataError(where, f"'label' must be true or false, got {label!r}", "type")
        label = LABELS[key]
        fixes.append("label converted to bool")
    prompt = _as_messages(_require(record, "prompt", where, "the prompt"), "user", "prompt", where)
    reply = _require(record, "completion", where, "the reply being judged")
    completion = _as_messages(reply, "assistant", "completion", where)
    return {"prompt": prompt, "completion": completion, "label": label}, fixes


# ---------------------------------------------------------------------------------------------
# SFT formats


@register(
    "prompt_completion",
    "sft",
    "prompt + completion (no label)",
    lambda r: "prompt" in r and "completion" in r,
)
def convert_prompt_completion(record: dict, where: str) -> Converted:
    """TRL prompt/completion to one conversation."""
    prompt = _as_messages(_require(record, "prompt", where), "user", "prompt", where)
    reply = _require(record, "completion", where, "the reply to learn")
    completion = _as_messages(reply, "assistant", "completion", where)
    return {"messages": prompt + completion, **_tools(record)}, []


def _is_openai(record: dict) -> bool:
    return _is_messages(record.get("messages")) and "role" in record["messages"][0]


@register("openai", "sft", "messages: [{role, content, tool_calls?}]", _is_openai)
def convert_openai(record: dict, where: str) -> Converted:
    """OpenAI chat `messages` (with tool calls and tool results) as they are."""
    fixes: list[str] = []
    messages = []
    for m in record["messages"]:
        m = {k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
        if isinstance(m, dict) and "tool_calls" in m:
            m["tool_calls"] = _normalise_tool_calls(m["tool_calls"])
            m.setdefault("content", "")
        messages.append(m)
    messages = _drop_trailing_prompt(_drop_empty_system(messages, fixes), fixes)
    return {"messages": messages, **_tools(record)}, fixes


def _alpaca_query(record: dict, where: str) -> str:
    instruction = _as_text(_require(record, "instruction", where), "instruction", where)
    extra = record.get("input") or ""
    # LLaMA-Factory's convention: the input follows the instruction on a new line.
    return f"{instruction}\n{_as_text(extra, 'input', where)}" if extra else instruction


@register(
    "alpaca",
    "sft",
    "instruction + input + output (+ system, history)",
    lambda r: "instruction" in r and "output" in r and ("input" in r or "history" in r),
)
def convert_alpaca(record: dict, where: str) -> Converted:
    """Alpaca (instruction, input, output, system, history [[user, assistant], ...])."""
    fixes: list[str] = []
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": _as_text(record["system"], "system", where)})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise DataError(where, "field 'history' must be a list of [user, assistant] pairs", "type")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise DataError(
                where, f"history[{i}] must be a [user, assistant] pair, got {pair!r:.80}", "type"
            )
        messages += [
            {"role": "user", "content": _as_text(pair[0], f"history[{i}][0]", where)},
            {"role": "assistant", "content": _as_text(pair[1], f"history[{i}][1]", where)},
        ]
    output = _as_text(_require(record, "output", where), "output", where)
    messages += [
        {"role": "user", "content": _alpaca_query(record, where)},
        {"role": "assistant", "content": output},
    ]
    return {"messages": messages}, fixes


def messages_to_alpaca(messages: list[dict]) -> dict:
    """The inverse of `convert_alpaca` (the input is folded into the instruction)."""
    out: dict[str, Any] = {}
    if messages and messages[0]["role"] == "system":
        out["system"] = messages[0]["content"]
        messages = messages[1:]
    turns = [m["content"] for m in messages]
    pairs = [list(turns[i : i + 2]) for i in range(0, len(turns) - 2, 2)]
    out.update({"instruction": turns[-2], "input": "", "output": turns[-1]})
    if pairs:
        out["history"] = pairs
    return out


INSTRUCTION_KEYS = ("instruction", "question", "query", "input")
OUTPUT_KEYS = ("output", "response", "answer")


def _first(record: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in record), None)


@register(
    "instruction_output",
    "sft",
    "instruction/question/query/input + output/response/answer",
    lambda r: _first(r, INSTRUCTION_KEYS) is not None and _first(r, OUTPUT_KEYS) is not None,
)
def convert_instruction_output(record: dict, where: str) -> Converted:
    """Single-turn instruction/output pairs (with an optional system prompt)."""
    q, a = _first(record, INSTRUCTION_KEYS), _first(record, OUTPUT_KEYS)
    for key, options in ((q, INSTRUCTION_KEYS), (a, OUTPUT_KEYS)):
        if key is None:
            raise DataError(where, f"missing field: one of {options}", "missing field")
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": _as_text(record["system"], "system", where)})
    messages += [
        {"role": "user", "content": _as_text(record[q], q, where)},
        {"role": "assistant", "content": _as_text(record[a], a, where)},
    ]
    return {"messages": messages}, []


# ---------------------------------------------------------------------------------------------
# Prompt-only (GRPO) and plain text


@register(
    "prompt_only",
    "prompt",
    "prompt (+ answer columns)",
    lambda r: "prompt" in r and "completion" not in r and "chosen" not in r,
)
def convert_prompt_only(record: dict, where: str) -> Converted:
    """A prompt for the policy to answer; every other column (the answer) is kept for rewards."""
    fixes = []
    prompt = _require(record, "prompt", where, "a string or a list of messages")
    out = {"prompt": _as_messages(prompt, "user", "prompt", where)}
    for key, value in record.items():
        if key == "prompt":
            continue
        if key == "answer" and value is not None and not isinstance(value, str):
            value = str(value)
            fixes.append("answer converted to string")
        out[key] = value
    return out, fixes


@register(
    "openai_prompt",
    "prompt",
    "messages ending in an assistant answer (the answer becomes the 'answer' column)",
    lambda r: _is_openai(r) and r["messages"][-1].get("role") == "assistant",
)
def convert_openai_prompt(record: dict, where: str) -> Converted:
    """An SFT conversation as a GRPO prompt: the last assistant reply becomes `answer`."""
    messages = record["messages"]
    out = {"prompt": messages[:-1], "answer": record.get("answer", messages[-1].get("content"))}
    out.update({k: v for k, v in record.items() if k not in ("messages", "answer")})
    return out, []


@register("text", "text", "text", lambda r: "text" in r)
def convert_text(record: dict, where: str) -> Converted:
    """Plain text for (continued) pretraining."""
    return {"text": _require(record, "text", where)}, []
