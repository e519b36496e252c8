"""Chat templates: the registry of families in `chat_templates/`, rendering, masks and a doctor.

Notable choices:
- A family is one Jinja file; its header comment carries the metadata (models, special tokens,
  end-of-turn tokens, quirks), so adding a family touches one place.
- Every family renders byte-identical to the vendor's official template (proved by
  `tests/fixtures/chat/<family>.json`, written by `tools/make_chat_fixtures.py`) and wraps each
  assistant reply plus its end-of-turn token in `{% generation %}`, so assistant masks work.
- Rendering goes through transformers' own sandboxed Jinja environment, so what we render is
  what `tokenizer.apply_chat_template` renders, for our templates and for user-supplied ones.

Modules: `registry` (families, aliases), `render`, `masks`, `tokenizer` (attach, detect),
`doctor`, `bugs` (classic bugs reproduced), `display` (notebook views), `readme`,
`conversations` (the shared fixture conversations), `toy_tokenizer`.
"""

from dojo.chat.doctor import Finding, doctor
from dojo.chat.masks import assistant_mask, has_generation_markers, mask_spans, tokenize_chat
from dojo.chat.registry import (
    ALIASES,
    Family,
    UnknownFamilyError,
    get_family,
    list_families,
    load_template,
    parse_header,
)
from dojo.chat.render import (
    ChatTemplateError,
    frozen_clock,
    render,
    render_template,
    render_with_spans,
)
from dojo.chat.tokenizer import apply_template, detect_family
from dojo.chat.toy_tokenizer import byte_tokenizer

__all__ = [
    "ALIASES",
    "Finding",
    "apply_template",
    "byte_tokenizer",
    "detect_family",
    "doctor",
    "ChatTemplateError",
    "assistant_mask",
    "has_generation_markers",
    "mask_spans",
    "tokenize_chat",
    "Family",
    "UnknownFamilyError",
    "frozen_clock",
    "get_family",
    "list_families",
    "load_template",
    "parse_header",
    "render",
    "render_template",
    "render_with_spans",
]
