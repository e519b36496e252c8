"""Validation of converted records, with errors a person can act on, and a summary of what happened.

Notable choices:
- Validation runs on the converted (TRL-format) record, so one set of rules covers every source
  format; the error still names the source file, its line or record, and the source field.
- Every record ends in exactly one bucket: kept, fixed (kept after a harmless repair that the
  summary names), or dropped (only with `on_error="skip"`, and always counted with its reason).
- Roles follow the OpenAI convention: an optional leading `system`, then turns that alternate
  between the user side (`user`, or `tool` results after a tool call) and the `assistant`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
MAX_ERRORS_KEPT = 20  # error messages a summary keeps verbatim; the rest are only counted


class DataError(ValueError):
    """An invalid record: the message names the file, the line or record, the field and the fix."""

    def __init__(self, where: str, problem: str, reason: str = "invalid"):
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem
        self.reason = reason  # a short key the summary counts drops by


@dataclass
class Summary:
    """What loading did to a dataset: how many records were kept, fixed and dropped, and why."""

    source: str
    kind: str
    format: str = "auto"
    total: int = 0
    kept: int = 0  # includes the fixed ones
    fixed: int = 0
    dropped: int = 0
    fixes: Counter = field(default_factory=Counter)  # repair -> records repaired
    drops: Counter = field(default_factory=Counter)  # reason -> records dropped
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_KEPT drop messages
    formats: Counter = field(default_factory=Counter)  # detected format -> records
    eval: Summary | None = None  # the eval split's own summary, when it came from eval files

    def record_fix(self, fixes: list[str]) -> None:
        """Count one kept record and the repairs made to it."""
        self.kept += 1
        if fixes:
            self.fixed += 1
            self.fixes.update(set(fixes))

    def record_drop(self, error: DataError) -> None:
        """Count one dropped record and keep its message."""
        self.dropped += 1
        self.drops[error.reason] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(str(error))

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, for logs and run folders."""
        return {
            "source": self.source,
            "kind": self.kind,
            "format": self.format,
            "total": self.total,
            "kept": self.kept,
            "fixed": self.fixed,
            "dropped": self.dropped,
            "fixes": dict(self.fixes),
            "drops": dict(self.drops),
            "formats": dict(self.formats),
            "errors": list(self.errors),
            "eval": self.eval.as_dict() if self.eval else None,
        }

    def __str__(self) -> str:
        lines = [
            f"{self.source} ({self.kind}, format {self.format}): {self.total} records, "
            f"{self.kept} kept ({self.fixed} fixed), {self.dropped} dropped"
        ]
        lines += [f"  fixed {n}: {why}" for why, n in self.fixes.most_common()]
        lines += [f"  dropped {n}: {why}" for why, n in self.drops.most_common()]
        lines += [f"    {e}" for e in self.errors[:5]]
        if self.eval:
            lines.append(f"eval split: {self.eval}")
        return "\n".join(lines)


def _fail(where: str, problem: str, reason: str) -> None:
    raise DataError(where, problem, reason)


def check_messages(
    messages: Any,
    where: str,
    field_name: str = "messages",
    need_assistant: bool = True,
    allow_system: bool = True,
    after: dict | None = None,
) -> None:
    """Check a conversation: a non-empty list of {role, content} with roles in order.

    `after` is the message this list continues (the prompt's last turn, for a reply).
    """
    if not isinstance(messages, list) or not messages:
        got = type(messages).__name__ if not isinstance(messages, list) else "an empty list"
        _fail(
            where, f"field '{field_name}' must be a non-empty list of messages, got {got}", "type"
        )
    previous = after
    for i, m in enumerate(messages):
        at = f"{field_name}[{i}]"
        if not isinstance(m, dict):
            _fail(where, f"{at} must be an object with 'role' and 'content'", "type")
        role = m.get("role")
        if role not in ROLES:
            _fail(where, f"{at} has unknown role {role!r}; expected one of {ROLES}", "unknown role")
        _check_content(m, at, where)
        _check_order(role, previous, i + (after is not None), at, where, allow_system)
        previous = m
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        _fail(where, f"'{field_name}' has no assistant message; nothing to learn", "no assistant")


def _check_content(m: dict, at: str, where: str) -> None:
    content = m.get("content")
    calls = m.get("tool_calls")
    if content is None and not calls:
        _fail(where, f"{at} ({m['role']}) is missing 'content'", "missing field")
    if content is not None and not isinstance(content, str):
        _fail(
            where,
            f"{at} ({m['role']}) content must be a string, got {type(content).__name__}",
            "type",
        )
    if not (content or "").strip() and not calls:
        _fail(where, f"{at} ({m['role']}) has empty content", "empty content")
    if calls is not None:
        _check_tool_calls(calls, at, where)


def _check_tool_calls(calls: Any, at: str, where: str) -> None:
    if not isinstance(calls, list) or not calls:
        _fail(where, f"{at} tool_calls must be a non-empty list", "type")
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not fn.get("name"):
            _fail(
                where,
                f"{at}.tool_calls[{j}] must be {{'type': 'function', 'function': "
                "{'name': ..., 'arguments': ...}}",
                "bad tool call",
            )


def _check_order(
    role: str, previous: dict | None, i: int, at: str, where: str, allow_system: bool
) -> None:
    prev = previous["role"] if previous else None
    if role == "system":
        if i != 0 or not allow_system:
            _fail(where, f"{at} is a system message; only the first message may be", "role order")
        return
    if role == "user" and prev not in (None, "system", "assistant"):
        _fail(
            where,
            f"{at} has role 'user' after '{prev}'; roles must alternate user/assistant",
            "role order",
        )
    if role == "user" and previous is not None and previous.get("tool_calls"):
        _fail(
            where,
            f"{at} is a user message after a tool call; expected a 'tool' result",
            "role order",
        )
    if role == "assistant" and prev not in ("user", "tool"):
        _fail(
            where,
            f"{at} has role 'assistant' after '{prev or 'nothing'}'; roles must alternate "
            "user/assistant",
            "role order",
        )
    if role == "tool" and not (prev == "tool" or (previous or {}).get("tool_calls")):
        _fail(where, f"{at} is a tool result with no tool call before it", "role order")


def check_preference(record: dict, where: str) -> None:
    """Check a preference pair: a prompt that ends on the user side and two different replies."""
    check_messages(record.get("prompt"), where, "prompt", need_assistant=False)
    if record["prompt"][-1]["role"] == "assistant":
        _fail(
            where,
            "'prompt' ends with an assistant message; it must end on a user turn",
            "role order",
        )
    for side in ("chosen", "rejected"):
        reply = record.get(side)
        check_messages(reply, where, side, allow_system=False, after=record["prompt"][-1])
        if reply[0]["role"] != "assistant":
            _fail(where, f"'{side}' must start with an assistant message", "role order")
    if record["chosen"] == record["rejected"]:
        _fail(
            where,
            "'chosen' and 'rejected' are identical; the pair teaches nothing",
            "identical pair",
        )


def check_kto(record: dict, where: str) -> None:
    """Check an unpaired (KTO) example: a prompt, one reply and a boolean label."""
    check_messages(record.get("prompt"), where, "prompt", need_assistant=False)
    if record["prompt"][-1]["role"] == "assistant":
        _fail(
            where,
            "'prompt' ends with an assistant message; it must end on a user turn",
            "role order",
        )
    reply = record.get("completion")
    check_messages(reply, where, "completion", allow_system=False, after=record["prompt"][-1])
    if not isinstance(record.get("label"), bool):
        _fail(where, f"'label' must be true or false, got {record.get('label')!r}", "type")


def check_prompt_only(record: dict, where: str) -> None:
    """Check a prompt-only (GRPO) example: a prompt that ends on a user turn."""
    check_messages(record.get("prompt"), where, "prompt", need_assistant=False)
    if record["prompt"][-1]["role"] != "user":
        _fail(where, "'prompt' must end with a user message for the model to answer", "role order")


def check_text(record: dict, where: str) -> None:
    """Check a plain-text (pretraining) example."""
    text = record.get("text")
    if not isinstance(text, str):
        _fail(where, f"'text' must be a string, got {type(text).__name__}", "type")
    if not text.strip():
        _fail(where, "'text' is empty", "empty content")


def check_sft(record: dict, where: str) -> None:
    """Check an SFT conversation."""
    check_messages(record.get("messages"), where, "messages")


CHECKS = {
    "sft": check_sft,
    "preference": check_preference,
    "kto": check_kto,
    "prompt": check_prompt_only,
    "text": check_text,
}
