"""The family registry: one `chat_templates/<family>.jinja` file per family, described by its header.

Design choices:
- Adding a family touches one place: the Jinja file. Its opening comment carries the metadata
  (`family:`, `models:`, `special_tokens:`, `bos_token:`, `eos_token:`, `end_of_turn:`, `quirks:`,
  `left_out:` for official behaviour not reproduced, with the reason)
  as `key: value` lines; a line without a key continues the previous value.
- Tokens named `*_token` in the header are passed to the template when rendering, exactly as
  `tokenizer.apply_chat_template` passes the tokenizer's special tokens.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from dojo import paths

_HEADER = re.compile(r"\A\{#-?(.*?)-?#\}", re.DOTALL)
_KEY_LINE = re.compile(r"^\s*([a-z_]+):\s?(.*)$")
# Header keys whose value is a whitespace-separated list of tokens.
_TOKEN_LISTS = ("special_tokens", "end_of_turn")


# Other names people use for a family whose template is the same file. Each vendor copy renders
# all fixture conversations exactly as the target family's fixture expects:
# - llama-3.3: ye-NX/llama.cpp models/templates/meta-llama-Llama-3.3-70B-Instruct.jinja @ b354d7c
#   (byte-identical to TRL's llama3_1.jinja);
# - gemma-2: ye-NX/llama.cpp models/templates/google-gemma-2-2b-it.jinja @ b354d7c;
# - mistral-v0.2: the mistral-v0.1 fixture is rendered from Mistral-7B-Instruct-v0.2's template;
# - deepseek-r1-distill: TRL's deepseek_r1_distill.jinja, the deepseek-r1 fixture's source.
ALIASES = {
    "llama-3.3": "llama-3.1",
    "gemma-2": "gemma",
    "mistral-v0.2": "mistral-v0.1",
    "deepseek-r1-distill": "deepseek-r1",
}


class UnknownFamilyError(KeyError):
    """Raised for a family name that has no `chat_templates/<name>.jinja` file."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Family:
    """One chat-template family: its name, template text and the metadata from its header."""

    name: str
    template: str
    models: str = ""
    quirks: str = ""
    left_out: str = ""  # official behaviour not reproduced, and why
    special_tokens: tuple[str, ...] = ()
    end_of_turn: tuple[str, ...] = ()
    render_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return template_dir() / f"{self.name}.jinja"


def template_dir() -> Path:
    """The folder holding the family templates."""
    return paths.CHAT_TEMPLATES_DIR


def list_families() -> list[str]:
    """Names of every family with a template in `chat_templates/`, sorted."""
    return sorted(p.stem for p in template_dir().glob("*.jinja"))


def parse_header(template: str) -> dict[str, str]:
    """The `key: value` metadata of a template's opening `{# ... #}` comment ({} if none)."""
    match = _HEADER.match(template)
    if not match:
        return {}
    meta: dict[str, str] = {}
    key = None
    for line in match.group(1).splitlines():
        found = _KEY_LINE.match(line)
        if found:
            key = found.group(1)
            meta[key] = found.group(2).strip()
        elif key and line.strip():
            meta[key] = (meta[key] + " " + line.strip()).strip()
    return meta


def resolve(name: str) -> str:
    """The family file stem for `name` (an alias such as 'llama-3.3' maps to 'llama-3.1')."""
    name = ALIASES.get(name, name)
    known = list_families()
    if name not in known:
        closest = difflib.get_close_matches(name, [*known, *ALIASES], n=1, cutoff=0.0)
        hint = f" Did you mean '{closest[0]}'?" if closest else ""
        raise UnknownFamilyError(
            f"Unknown chat-template family '{name}'.{hint} Known families: {', '.join(known)}. "
            f"Add one as {template_dir()}/{name}.jinja."
        )
    return name


def load_template(family: str) -> str:
    """The Jinja source of a family's template, exactly as a tokenizer would store it."""
    return (template_dir() / f"{resolve(family)}.jinja").read_text(encoding="utf-8")


def get_family(name: str) -> Family:
    """The family `name` with its template and header metadata."""
    name = resolve(name)
    return _family_from_text(name, load_template(name))


@lru_cache(maxsize=256)
def _family_from_text(name: str, template: str) -> Family:
    meta = parse_header(template)
    # "end_of_turn: none" declares a format whose replies end without a token of their own
    # (ChatGLM: the next role tag ends the turn).
    lists = {
        key: tuple(t for t in meta.get(key, "").split() if t != "none") for key in _TOKEN_LISTS
    }
    render_tokens = {k: v for k, v in meta.items() if k.endswith("_token") and v}
    return Family(
        name=name,
        template=template,
        models=meta.get("models", ""),
        quirks=meta.get("quirks", ""),
        left_out=meta.get("left_out", ""),
        special_tokens=lists["special_tokens"],
        end_of_turn=lists["end_of_turn"],
        render_tokens=render_tokens,
    )
