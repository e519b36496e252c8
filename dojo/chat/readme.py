"""Generate `chat_templates/README.md` from the templates themselves, so it cannot drift.

Every column of the table is measured by rendering probe conversations through the family's
template (does a system message appear, raise or vanish; what does the generation prompt add;
do tools and reasoning show up), and every example is rendered, not typed.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from dojo import paths
from dojo.chat.conversations import FROZEN_NOW, WEATHER_TOOL, example_conversation
from dojo.chat.registry import ALIASES, Family, get_family, list_families
from dojo.chat.render import frozen_clock, render

README_PATH = paths.CHAT_TEMPLATES_DIR / "README.md"
FIXTURE_DIR = paths.REPO_ROOT / "tests" / "fixtures" / "chat"
_USER = {"role": "user", "content": "QQQ"}


def _try(family: str, messages: list[dict], gen: bool = False, **kwargs) -> str | None:
    try:
        with frozen_clock(FROZEN_NOW):
            return render(family, messages, add_generation_prompt=gen, **kwargs)
    except Exception:  # noqa: BLE001 - a refusal is what we measure
        return None


def _code(text: str) -> str:
    return "`" + json.dumps(text, ensure_ascii=False)[1:-1].replace("|", "\\|") + "`"


def _system_role(fam: Family) -> str:
    text = _try(fam.name, [{"role": "system", "content": "SSS"}, _USER])
    if text is None:
        return "no (raises)"
    return "yes" if "SSS" in text else "dropped"


def _default_system(fam: Family) -> str:
    text = _try(fam.name, [_USER], gen=True)
    if text is None:
        return "?"
    for token in sorted({*fam.special_tokens, *fam.render_tokens.values()}, key=len, reverse=True):
        text = text.replace(token, "\n")
    lines = [line.strip() for line in text.split("\n") if "QQQ" not in line]
    longest = max(lines, key=len, default="")
    if len(re.sub(r"[^A-Za-z]", "", longest)) < 20:
        return "no"
    return "yes: " + _code(longest[:48] + ("…" if len(longest) > 48 else ""))


def _generation_prompt(fam: Family) -> str:
    bare, prompted = _try(fam.name, [_USER]), _try(fam.name, [_USER], gen=True)
    if bare is None or prompted is None:
        return "?"
    # Some templates close a conversation without a prompt with eos (Phi-3): drop it first.
    eos = fam.render_tokens.get("eos_token")
    if eos and not prompted.startswith(bare) and bare.endswith(eos):
        bare = bare[: -len(eos)]
    if not prompted.startswith(bare):
        return "?"
    added = prompted[len(bare) :]
    return _code(added) if added else "(none: the prompt already ends the user turn)"


def _tools(fam: Family) -> str:
    text = _try(fam.name, [_USER], gen=True, tools=[WEATHER_TOOL])
    if text and "get_weather" in text:
        return "yes"
    # GLM-4's convention: the tools ride on a message, and the `tools` argument is ignored.
    text = _try(fam.name, [{**_USER, "tools": [WEATHER_TOOL]}], gen=True)
    return "yes, from a `tools` key on a message" if text and "get_weather" in text else "no"


def _reasoning(fam: Family) -> str:
    convo = [_USER, {"role": "assistant", "reasoning_content": "RRR", "content": "AAA"}]
    text = _try(fam.name, convo) or ""
    prompt = _try(fam.name, [_USER], gen=True) or ""
    kinds = []
    if "RRR" in text:
        kinds.append("reasoning_content")
    if "<think>" in prompt:
        kinds.append("prompt opens `<think>`")
    no_think = _try(fam.name, [_USER], gen=True, enable_thinking=False)
    if no_think is not None and no_think != prompt:
        kinds.append("`enable_thinking`")
    return ", ".join(kinds) or "no"


def _source(name: str) -> str:
    path = FIXTURE_DIR / f"{name}.json"
    if not path.exists():
        return "no fixture yet"
    source = json.loads(path.read_text(encoding="utf-8"))["source"]
    return f"{source['repo']}, `{source['path']}` @ {source['commit']}"


def _example(fam: Family) -> str:
    convo = example_conversation()
    text = _try(fam.name, convo)
    note = ""
    if text is None:
        text = _try(fam.name, convo[1:])
        note = "(without the system message, which this family refuses)\n\n"
    if text is None:
        return "(the example conversation is refused)\n"
    return f"{note}````text\n{text}\n````\n"


def table_row(fam: Family) -> str:
    """One Markdown table row for `fam`."""
    eot = " ".join(_code(t) for t in fam.end_of_turn) or "(none)"
    cells = [
        f"[{fam.name}](#{fam.name.replace('.', '')})",
        _system_role(fam),
        _default_system(fam),
        _generation_prompt(fam),
        eot,
        _tools(fam),
        _reasoning(fam),
    ]
    return "| " + " | ".join(cells) + " |"


INTRO = """# Chat templates

One Jinja file per model family. Each renders **byte-identical** to the vendor's official
template (proved over {n_cases} shared conversations per family, plus family-specific ones where a
vendor has a convention of its own, in `tests/fixtures/chat/<family>.json`,
rendered from the official templates in transformers' own sandbox), and wraps every assistant
reply and its end-of-turn token in `{{% generation %}}` so `return_assistant_tokens_mask=True`
and TRL's `assistant_only_loss=True` train on exactly the tokens the model must produce.

Use one as it is:

```python
tokenizer.chat_template = open("chat_templates/llama-3.1.jinja").read()
# or, adding the special tokens it writes and setting bos/eos:
from dojo import chat
chat.apply_template(tokenizer, "llama-3.1")
print(chat.doctor(tokenizer))          # double BOS, EOS outside the mask, pad == eos, ...
```

Each file opens with a header (`family`, `models`, `special_tokens`, `bos_token`, `eos_token`,
`end_of_turn`, `quirks`) that `dojo.chat` reads. To add a family: write the file, then
`python tools/make_chat_fixtures.py --family NAME --official OFFICIAL.jinja --source-repo ...`
renders the official template into its fixture and reports every case where ours differs.

This file is generated by `python tools/make_chat_readme.py` (a test fails when it is stale).
Columns are measured by rendering probe conversations: *system role* says whether a system
message appears, is dropped, or makes the template raise; *generation prompt* is what
`add_generation_prompt=True` appends; dated templates are shown on {date}.
"""


def build_readme() -> str:
    """The full text of `chat_templates/README.md`."""
    from dojo.chat.conversations import conversation_cases

    families = [get_family(name) for name in list_families()]
    parts = [INTRO.format(n_cases=len(conversation_cases()), date=FROZEN_NOW[:10])]
    parts.append(
        "| family | system role | default system prompt | generation prompt | end of turn "
        "| tools | reasoning |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    parts.append("\n".join(table_row(fam) for fam in families) + "\n")
    for fam in families:
        parts.append(
            f"## {fam.name}\n\n"
            f"**Models:** {html.escape(fam.models, quote=False)}\n\n"
            f"**Special tokens:** {' '.join(f'`{t}`' for t in fam.special_tokens) or '(none)'}\n\n"
            f"**Quirks:** {html.escape(fam.quirks, quote=False)}\n\n"
            + (
                f"**Left out:** {html.escape(fam.left_out, quote=False)}\n\n"
                if fam.left_out
                else ""
            )
            + f"**Official source:** {_source(fam.name)}\n\n"
            f"Example (system, user, assistant, user, assistant):\n\n{_example(fam)}"
        )
    parts.append(closing_note(families))
    return "\n".join(parts)


def closing_note(families: list[Family]) -> str:
    """The aliases, and every piece of official behaviour a family leaves out, with the reason."""
    aliases = "\n".join(
        f"- `{alias}` → [{name}](#{name.replace('.', '')})" for alias, name in ALIASES.items()
    )
    left_out = "\n".join(
        f"- **{fam.name}**: {html.escape(fam.left_out, quote=False)}"
        for fam in families
        if fam.left_out
    )
    return (
        "## Aliases and what is left out\n\n"
        "These names load the same file, because the vendor ships the same template "
        "(checked by rendering the vendor's copy over the fixture set; sources in "
        "`dojo/chat/registry.py`):\n\n"
        f"{aliases}\n\n"
        "Official behaviour not reproduced, and why (everything else renders byte for byte):\n\n"
        f"{left_out}\n"
    )


def write_readme(path: Path = README_PATH) -> bool:
    """Write the README; return True if it changed."""
    text = build_readme()
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old != text:
        path.write_text(text, encoding="utf-8")
    return old != text
