"""Tokenization for SFT: token ids and labels that train only on what the assistant says.

Notable choices:
- Ids and the assistant mask come from the chat template itself (`{% generation %}` markers via
  `dojo.chat`), exactly as TRL's `SFTTrainer(assistant_only_loss=True)` builds them, so the
  default output is token-for-token the trainer's (tested in tests/test_data_sft.py).
- `train_on` picks the loss tokens: "assistant" (every assistant turn, TRL's choice), "last"
  (only the final assistant turn, for data whose earlier turns are context) or "all" (every token).
- Truncation keeps whole turns: an over-long conversation is cut after the last assistant turn
  that fits, so no reply is cut in half. Only when even the first reply does not fit does it cut
  mid-turn, keeping the start (as TRL does), and a conversation left with no label raises.
"""

from __future__ import annotations

import json
from typing import Any

from dojo.data.validate import DataError, Summary

IGNORE_INDEX = -100  # label of a token the loss skips (PyTorch's cross-entropy default)
TRAIN_ON = ("assistant", "last", "all")


def _tokenize_chat(tokenizer: Any, messages: list[dict], tools: Any) -> tuple[list[int], list[int]]:
    """Token ids and assistant mask, as TRL's `_tokenize` asks the template for them."""
    try:
        from dojo.chat.masks import tokenize_chat
    except ImportError:  # dojo.chat not installed alongside: the same transformers call
        out = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    out = tokenize_chat(tokenizer, messages, tools=tools)
    return out["input_ids"], out["assistant_masks"]


def _labels(ids: list[int], mask: list[int], train_on: str) -> list[int]:
    if train_on == "all":
        return list(ids)
    keep = [0] * len(ids)
    from dojo.chat.masks import mask_spans

    spans = mask_spans(mask)
    for start, end in spans[-1:] if train_on == "last" else spans:
        keep[start:end] = [1] * (end - start)
    return [t if k else IGNORE_INDEX for t, k in zip(ids, keep)]


def _turn_boundary(
    tokenizer: Any, messages: list[dict], tools: Any, ids: list[int], max_length: int
) -> int | None:
    """Token length of the longest prefix ending on an assistant turn that fits `max_length`."""
    for k in range(len(messages), 0, -1):
        if messages[k - 1]["role"] != "assistant":
            continue
        prefix, _ = _tokenize_chat(tokenizer, messages[:k], tools)
        # Only a true token prefix of the whole conversation can be cut there.
        if len(prefix) <= max_length and ids[: len(prefix)] == prefix:
            return len(prefix)
    return None


def tokenize_conversation(
    tokenizer: Any,
    messages: list[dict],
    tools: Any = None,
    train_on: str = "assistant",
    max_length: int | None = None,
    where: str = "",
) -> dict[str, Any]:
    """`input_ids`, `labels` (-100 off the loss) and how it was truncated, for one conversation."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}; expected one of {TRAIN_ON}")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    ids, mask = _tokenize_chat(tokenizer, messages, tools)
    if train_on != "all" and 1 not in mask:
        raise DataError(
            where,
            "no assistant tokens after templating; the chat template needs {% generation %} "
            "markers and the conversation an assistant reply",
            "no assistant",
        )
    truncation = None
    if max_length is not None and len(ids) > max_length:
        cut = _turn_boundary(tokenizer, messages, tools, ids, max_length)
        truncation = "at a turn boundary" if cut else "mid-turn"
        cut = cut or max_length
        ids, mask = ids[:cut], mask[:cut]
    labels = _labels(ids, mask, train_on)
    if all(label == IGNORE_INDEX for label in labels):
        raise DataError(
            where,
            f"truncation to max_length={max_length} would drop every assistant token (the prompt "
            "alone fills it); raise max_length or shorten the prompt",
            "answer truncated",
        )
    return {"input_ids": ids, "labels": labels, "truncation": truncation}


def tokenize_sft(
    dataset: Any,
    tokenizer: Any,
    train_on: str = "assistant",
    max_length: int | None = None,
    on_error: str = "raise",
):
    """A `messages` dataset as `input_ids`/`labels` (TRL's prepared SFT columns) and a summary."""
    import datasets

    summary = Summary(source="tokenize_sft", kind="sft tokens", format=train_on)
    columns: dict[str, list] = {"input_ids": [], "labels": []}
    has_tools = "tools" in dataset.column_names
    for i, example in enumerate(dataset):
        summary.total += 1
        try:
            out = tokenize_conversation(
                tokenizer,
                example["messages"],
                example["tools"] if has_tools else None,
                train_on,
                max_length,
                where=f"record {i}",
            )
        except DataError as e:
            if on_error == "raise":
                raise
            summary.record_drop(e)
            continue
        summary.record_fix([f"truncated {out['truncation']}"] if out["truncation"] else [])
        columns["input_ids"].append(out["input_ids"])
        columns["labels"].append(out["labels"])
    return datasets.Dataset.from_dict(columns), summary
