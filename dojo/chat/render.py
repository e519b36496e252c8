"""Render conversations through a chat template, exactly as `tokenizer.apply_chat_template` does.

Design choices:
- No Jinja environment of our own: we call transformers' `render_jinja_template`, so templates
  run in the same sandbox (`ImmutableSandboxedEnvironment`, `trim_blocks`, `lstrip_blocks`,
  `raise_exception`, `strftime_now`, `tojson`, `{% generation %}`) that training and serving use.
- Inputs are normalised the way `apply_chat_template` normalises them (keys whose value is
  None are dropped; the family's special tokens are passed as `bos_token`, `eos_token`, ...).
- `frozen_clock` pins `strftime_now` so templates that print today's date are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from unittest import mock

import jinja2
from transformers.utils import chat_template_utils

from dojo.chat.registry import get_family

Message = dict[str, Any]


class ChatTemplateError(jinja2.exceptions.TemplateError):
    """A template refused a conversation (raised through its `raise_exception`)."""


@contextmanager
def frozen_clock(when: datetime | str) -> Iterator[None]:
    """Make `strftime_now` inside chat templates report `when` (a datetime or ISO string)."""
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ARG003 - same signature as datetime.now
            return moment

    with mock.patch.object(chat_template_utils, "datetime", _Frozen):
        yield


def _normalise(messages: list[Message]) -> list[Message]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"message {i} is a {type(message).__name__}, expected a dict")
        out.append({k: v for k, v in message.items() if v is not None})
    return out


def render_template(
    template: str,
    messages: list[Message],
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    special_tokens: dict[str, str] | None = None,
    return_spans: bool = False,
    **kwargs: Any,
) -> str | tuple[str, list[tuple[int, int]]]:
    """Render any (user-supplied) template in transformers' sandbox; optionally return the
    character spans of its `{% generation %}` blocks."""
    rendered, spans = chat_template_utils.render_jinja_template(
        conversations=[_normalise(messages)],
        tools=tools,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        return_assistant_tokens_mask=return_spans,
        **{**(special_tokens or {}), **kwargs},
    )
    if return_spans:
        return rendered[0], [tuple(s) for s in spans[0]]
    return rendered[0]


def render(
    family: str,
    messages: list[Message],
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    **kwargs: Any,
) -> str:
    """Render `messages` in the chat format of `family` (see `list_families()`)."""
    fam = get_family(family)
    try:
        return render_template(
            fam.template, messages, add_generation_prompt, tools, fam.render_tokens, **kwargs
        )
    except jinja2.exceptions.TemplateError as err:
        # Only raise_exception's refusals get the family prefix; Undefined/Security/Syntax
        # errors keep their own type, as apply_chat_template would raise them.
        if type(err) is not jinja2.exceptions.TemplateError:
            raise
        raise ChatTemplateError(f"{family}: {err}") from err


def render_with_spans(
    family: str,
    messages: list[Message],
    add_generation_prompt: bool = False,
    tools: list[dict] | None = None,
    **kwargs: Any,
) -> tuple[str, list[tuple[int, int]]]:
    """Render like `render` and return the (start, end) character span of every assistant
    reply marked by `{% generation %}`."""
    fam = get_family(family)
    return render_template(
        fam.template,
        messages,
        add_generation_prompt,
        tools,
        fam.render_tokens,
        return_spans=True,
        **kwargs,
    )
