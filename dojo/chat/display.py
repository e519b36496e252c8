"""Notebook views of chat templates: families side by side, tokens coloured by the assistant
mask, and an ipywidgets explorer (family dropdown, editable messages, live rendering)."""

from __future__ import annotations

import html
import json
from typing import Any

from dojo.chat.masks import tokenize_chat
from dojo.chat.registry import list_families
from dojo.chat.render import render
from dojo.chat.tokenizer import apply_template
from dojo.chat.toy_tokenizer import byte_tokenizer

_TRAINED = "background:#c8f7c5;border-bottom:2px solid #2e7d32"  # in the loss
_PROMPT = "background:#eeeeee;color:#555"  # context only
_CELL = "font-family:monospace;font-size:12px;white-space:pre-wrap;margin:0"


def _show(text: str) -> str:
    # Make whitespace visible: a reply that starts with "\n" is a different training target.
    return html.escape(text).replace("\n", "⏎\n").replace(" ", "·")


def mask_html(tokenizer: Any, messages: list[dict], **kwargs: Any) -> str:
    """HTML of the tokenized conversation, one box per token: green = assistant mask 1
    (trained on), grey = 0 (prompt). Special tokens are bold."""
    out = tokenize_chat(tokenizer, messages, **kwargs)
    special = set(tokenizer.all_special_ids) | {
        tokenizer.convert_tokens_to_ids(t) for t in tokenizer.get_added_vocab()
    }
    boxes = []
    for token_id, bit in zip(out["input_ids"], out["assistant_masks"]):
        text = _show(tokenizer.decode([token_id]))
        if token_id in special:
            text = f"<b>{text}</b>"
        style = _TRAINED if bit else _PROMPT
        boxes.append(f'<span style="{style};margin:1px;padding:0 1px">{text}</span>')
    n_trained = sum(out["assistant_masks"])
    legend = (
        f'<div style="font-size:12px">{len(boxes)} tokens, {n_trained} in the loss '
        f'(<span style="{_TRAINED}">trained</span> / <span style="{_PROMPT}">prompt</span>)</div>'
    )
    return legend + f'<div style="{_CELL};line-height:1.9">{"".join(boxes)}</div>'


def side_by_side_html(
    families: list[str], messages: list[dict], add_generation_prompt: bool = False
) -> str:
    """HTML grid with the same conversation rendered by each family (⏎ marks newlines)."""
    cells = []
    for name in families:
        try:
            body = _show(render(name, messages, add_generation_prompt=add_generation_prompt))
        except Exception as err:  # noqa: BLE001 - a refusal is worth showing
            body = f'<span style="color:#b71c1c">raises: {html.escape(str(err))}</span>'
        cells.append(
            f'<div style="border:1px solid #ccc;padding:4px;min-width:0"><b>{name}</b>'
            f'<pre style="{_CELL}">{body}</pre></div>'
        )
    columns = f"repeat({min(len(families), 3)}, 1fr)"
    return (
        f'<div style="display:grid;grid-template-columns:{columns};gap:6px">{"".join(cells)}</div>'
    )


def family_tokenizer(family: str, base: Any | None = None) -> Any:
    """A tokenizer carrying `family`'s template: a copy of `base`, or a byte-level one."""
    import copy

    tok = copy.deepcopy(base) if base is not None else byte_tokenizer()
    apply_template(tok, family)
    return tok


def template_explorer(messages: list[dict], base_tokenizer: Any | None = None) -> Any:
    """An ipywidgets explorer: pick a family, edit the messages (JSON), see the rendered text
    and the tokens coloured by the assistant mask."""
    import ipywidgets as widgets

    family = widgets.Dropdown(options=list_families(), value="chatml", description="family")
    prompt = widgets.Checkbox(value=False, description="add_generation_prompt")
    editor = widgets.Textarea(
        value=json.dumps(messages, indent=1, ensure_ascii=False),
        layout=widgets.Layout(width="100%", height="180px"),
    )
    view = widgets.HTML()

    def refresh(_change: Any = None) -> None:
        try:
            convo = json.loads(editor.value)
            text = render(family.value, convo, add_generation_prompt=prompt.value)
            tok = family_tokenizer(family.value, base_tokenizer)
            coloured = mask_html(tok, convo, add_generation_prompt=prompt.value)
            view.value = f'<pre style="{_CELL}">{_show(text)}</pre><hr>{coloured}'
        except Exception as err:  # noqa: BLE001 - show the user what went wrong, keep the widget
            view.value = f'<pre style="color:#b71c1c">{html.escape(type(err).__name__)}: {html.escape(str(err))}</pre>'

    for control in (family, prompt, editor):
        control.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([family, prompt]), editor, view])
