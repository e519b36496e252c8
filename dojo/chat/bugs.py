"""The classic chat-template bugs, reproduced on a copy of a ChatML tokenizer (dojo-tiny's
format), so notebook 01 and the tests can show `doctor` finding each one."""

from __future__ import annotations

import copy
from typing import Any

from tokenizers import processors
from transformers import AddedToken

_REPLY_WITH_EOT = "{{- message['content'] + '<|im_end|>' }}\n        {%- endgeneration %}"
_REPLY_WITHOUT_EOT = (
    "{{- message['content'] }}\n        {%- endgeneration %}\n        {{- '<|im_end|>' }}"
)
_PROMPT = "{{- '<|im_start|>assistant\\n' }}\n{%- endif %}"


def _chatml_copy(tokenizer: Any) -> Any:
    tok = copy.deepcopy(tokenizer)
    if _REPLY_WITH_EOT not in (tok.chat_template or ""):
        raise ValueError(
            "these reproductions edit the ChatML template of chat_templates/chatml.jinja; "
            "call dojo.chat.apply_template(tokenizer, 'chatml') first"
        )
    return tok


def with_double_bos(tokenizer: Any, bos_token: str = "<|endoftext|>") -> Any:
    """The template writes BOS and the tokenizer adds it again (Llama-style post-processor)."""
    tok = _chatml_copy(tokenizer)
    if bos_token not in tok.get_vocab():
        tok.add_tokens([AddedToken(bos_token, special=True, normalized=False)], special_tokens=True)
    tok.bos_token = bos_token
    tok.chat_template = "{{- bos_token }}\n" + tok.chat_template
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos_token} $A",
        pair=f"{bos_token} $A $B",
        special_tokens=[(bos_token, tok.convert_tokens_to_ids(bos_token))],
    )
    return tok


def with_eos_outside_mask(tokenizer: Any) -> Any:
    """Same rendered text, but <|im_end|> sits after {% endgeneration %}: out of the loss."""
    tok = _chatml_copy(tokenizer)
    tok.chat_template = tok.chat_template.replace(_REPLY_WITH_EOT, _REPLY_WITHOUT_EOT)
    return tok


def with_pad_as_eos(tokenizer: Any) -> Any:
    """pad_token = eos_token, the usual quick fix that hides every eos from the labels."""
    tok = _chatml_copy(tokenizer)
    tok.pad_token = tok.eos_token
    return tok


def with_prompt_without_newline(tokenizer: Any) -> Any:
    """The generation prompt lacks the newline that follows the header in training."""
    tok = _chatml_copy(tokenizer)
    tok.chat_template = tok.chat_template.replace(
        _PROMPT, "{{- '<|im_start|>assistant' }}\n{%- endif %}"
    )
    return tok
