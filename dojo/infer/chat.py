"""The interactive chat behind `python -m dojo.infer chat --model M [--adapter A]`.

The reply streams to the terminal as it is generated (`ReplyStream`); the conversation is kept
and re-rendered with the chat template every turn, dropping the oldest turns (never the system
prompt) when it no longer fits the context. Commands: `/reset`, `/system TEXT`,
`/set NAME VALUE` (any sampling option), `/help`, `/exit` (or Ctrl+D).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import TextIO

from dojo.infer.generate import ReplyStream, SamplingOptions, chat_prompt_ids

HELP = (
    "commands: /reset (forget the conversation), /system TEXT (set the system prompt), "
    "/set NAME VALUE (temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed), "
    "/exit"
)


def fit_context(messages: list[dict], tokenizer, budget: int) -> list[dict]:
    """`messages` without their oldest user/assistant turns until the prompt fits `budget`."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system) :]
    while len(turns) > 1 and chat_prompt_ids(tokenizer, system + turns).shape[1] > budget:
        turns = turns[2:] if len(turns) > 2 else turns[1:]
    return system + turns


def set_option(options: SamplingOptions, name: str, value: str) -> SamplingOptions:
    """A copy of `options` with one field changed from its text form (`/set top_p 0.9`)."""
    fields = {f.name: f for f in dataclasses.fields(SamplingOptions)}
    if name not in fields:
        raise ValueError(f"no sampling option {name!r}; options: {', '.join(fields)}")
    kind = int if name in ("max_new_tokens", "top_k", "seed") else float
    return dataclasses.replace(options, **{name: None if value == "none" else kind(value)})


def chat_loop(
    model,
    tokenizer,
    options: SamplingOptions | None = None,
    system: str | None = None,
    read: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
) -> list[dict]:
    """Talk until /exit or end of input; returns the conversation as it stood at the end."""
    options = options or SamplingOptions()
    context = getattr(model.config, "max_position_embeddings", 2048)
    messages = [{"role": "system", "content": system}] if system else []
    print(f"dojo chat ({HELP})", file=out)
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return messages
        if not line:
            continue
        if line.startswith("/"):
            command, _, arg = line[1:].partition(" ")
            if command in ("exit", "quit"):
                return messages
            if command == "reset":
                messages = [m for m in messages if m["role"] == "system"]
            elif command == "system":
                messages = [{"role": "system", "content": arg}] + [
                    m for m in messages if m["role"] != "system"
                ]
            elif command == "set":
                try:
                    options = set_option(options, *arg.split(maxsplit=1))
                except (ValueError, TypeError) as e:
                    print(f"! {e}", file=out)
            else:
                print(HELP, file=out)
            continue
        messages.append({"role": "user", "content": line})
        budget = context - options.max_new_tokens
        messages = fit_context(messages, tokenizer, budget)
        reply = ReplyStream(model, tokenizer, messages, options)
        print("assistant> ", end="", file=out, flush=True)
        for piece in reply:
            print(piece, end="", file=out, flush=True)
        print(file=out)
        messages.append({"role": "assistant", "content": reply.text.strip()})
