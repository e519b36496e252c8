"""Attach a family's template to a tokenizer, and recognise which family a template is.

Design choices:
- `apply_template` sets the template and makes sure every special token it writes is one token
  in the vocabulary (added if missing; the caller then resizes the model's embeddings).
- `detect_family` first looks for a byte-identical template, then renders a few probe
  conversations with the unknown template and with each family: a vendor's original template
  and ours render the same strings, so the vendor's template is recognised too.
"""

from __future__ import annotations

import difflib
from typing import Any

from transformers import AddedToken

from dojo.chat.registry import get_family, list_families
from dojo.chat.render import render_template

# Probe conversations: a family matches when it renders (or refuses) each one the same way.
_PROBES = [
    ([{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}], False),
    ([{"role": "user", "content": "Hi!"}], True),
    (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "2+2?"},
        ],
        True,
    ),
    ([{"role": "user", "content": "Hi!"}, {"role": "user", "content": "Hi again."}], False),
    ([{"role": "system", "content": ""}, {"role": "user", "content": "Hi!"}], True),
    (
        [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call00001",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call00001", "content": "18 C"},
        ],
        True,
    ),
]


def apply_template(tokenizer: Any, family: str) -> list[str]:
    """Give `tokenizer` the chat template of `family` and the special tokens it writes;
    return the tokens that had to be added (resize the model's embeddings if any)."""
    fam = get_family(family)
    vocab = tokenizer.get_vocab()
    wanted = [*fam.special_tokens, *fam.end_of_turn, *fam.render_tokens.values()]
    missing = [t for t in dict.fromkeys(wanted) if t not in vocab]
    if missing:
        tokenizer.add_tokens(
            [AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True
        )
    # The template prints bos_token / eos_token: they must be the family's, not the base model's.
    for name, token in fam.render_tokens.items():
        setattr(tokenizer, name, token)
    tokenizer.chat_template = fam.template
    return missing


def _outcome(template: str, messages: list, gen: bool, tokens: dict[str, str]) -> str:
    try:
        return render_template(template, messages, add_generation_prompt=gen, special_tokens=tokens)
    except Exception as err:  # noqa: BLE001 - refusing a probe is part of a template's behaviour
        return f"<raises {type(err).__name__}>"


def detect_family(tokenizer_or_template: Any) -> str | None:
    """The family whose template is, or renders exactly like, the given tokenizer's template
    (or template string); None when no family matches."""
    template = (
        tokenizer_or_template
        if isinstance(tokenizer_or_template, str)
        else getattr(tokenizer_or_template, "chat_template", None)
    )
    if not template:
        return None
    families = [get_family(name) for name in list_families()]
    for fam in families:
        if fam.template == template:
            return fam.name
    matches = []
    for fam in families:
        same = all(
            _outcome(template, msgs, gen, fam.render_tokens)
            == _outcome(fam.template, msgs, gen, fam.render_tokens)
            for msgs, gen in _PROBES
        )
        if same:
            matches.append(fam)
    if not matches:
        return None
    # Several families can render the probes alike; the closest source text wins.
    return max(
        matches, key=lambda f: difflib.SequenceMatcher(None, f.template, template).ratio()
    ).name
