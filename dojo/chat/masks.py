"""Assistant-token masks from a template's `{% generation %}` markers.

The mask is what `assistant_only_loss` trains on: 1 for every token the model must learn to
produce (the reply and its end-of-turn token), 0 for prompts, headers and tool results. It
comes from transformers' `return_assistant_tokens_mask`, so SFT here and in TRL agree.
"""

from __future__ import annotations

import re
from typing import Any

GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    """Whether a template marks assistant replies with `{% generation %}`."""
    return bool(template) and bool(GENERATION_TAG.search(template))


def tokenize_chat(tokenizer: Any, messages: list[dict], **kwargs: Any) -> dict[str, list[int]]:
    """Token ids of a conversation and its assistant mask: {'input_ids', 'assistant_masks'}."""
    if not has_generation_markers(tokenizer.chat_template):
        raise ValueError(
            "The tokenizer's chat template has no {% generation %} markers, so assistant tokens "
            "cannot be found. Attach one that has them: dojo.chat.apply_template(tokenizer, "
            "'<family>') (see dojo.chat.list_families())."
        )
    out = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        **kwargs,
    )
    return {"input_ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"])}


def assistant_mask(tokenizer: Any, messages: list[dict], **kwargs: Any) -> list[int]:
    """Per-token 0/1 mask (1 = assistant reply or its end-of-turn token) for the ids that
    `tokenizer.apply_chat_template(messages, **kwargs)` produces."""
    return tokenize_chat(tokenizer, messages, **kwargs)["assistant_masks"]


def mask_spans(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) spans of consecutive ones in a 0/1 mask: one per assistant turn."""
    spans, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((start, i))
            start = None
    return spans
