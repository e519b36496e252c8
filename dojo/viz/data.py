"""Pictures of data for notebook 02: records side by side, tokens coloured by their labels, and
what padding versus packing does to a batch.

Notable choices:
- Colours follow `dojo.chat.display.mask_html` (green = in the loss, grey = context), but here
  the colour comes from the *labels* that training uses, so `train_on="last"` or truncation show.
- The packing picture draws tokens to scale: one bar per row, one coloured segment per sequence
  and grey for padding, so the wasted area is what the eye compares.
"""

from __future__ import annotations

import html
import json
from typing import Any

from dojo.data.packing import best_fit_decreasing
from dojo.data.sft import IGNORE_INDEX

_TRAINED = "background:#c8f7c5;border-bottom:2px solid #2e7d32"
_CONTEXT = "background:#eeeeee;color:#555"
_MONO = "font-family:monospace;font-size:12px;white-space:pre-wrap;margin:0"


def records_html(records: dict[str, Any], width: int = 320) -> str:
    """HTML grid: one titled box per record, its JSON pretty-printed."""
    cells = [
        f'<div style="border:1px solid #ccc;padding:4px;min-width:0"><b>{html.escape(title)}</b>'
        f'<pre style="{_MONO}">{html.escape(json.dumps(r, ensure_ascii=False, indent=1))}</pre>'
        "</div>"
        for title, r in records.items()
    ]
    grid = f"display:grid;grid-template-columns:repeat(auto-fill,minmax({width}px,1fr));gap:6px"
    return f'<div style="{grid}">{"".join(cells)}</div>'


def labels_html(tokenizer: Any, input_ids: list[int], labels: list[int]) -> str:
    """HTML of a tokenized example, one box per token: green when its label is trained on."""
    boxes = []
    for token_id, label in zip(input_ids, labels, strict=True):
        text = html.escape(tokenizer.decode([token_id])).replace("\n", "⏎\n").replace(" ", "·")
        style = _CONTEXT if label == IGNORE_INDEX else _TRAINED
        boxes.append(f'<span style="{style};margin:1px;padding:0 1px">{text}</span>')
    trained = sum(label != IGNORE_INDEX for label in labels)
    legend = f'<div style="font-size:12px">{len(boxes)} tokens, {trained} in the loss</div>'
    return legend + f'<div style="{_MONO};line-height:1.9">{"".join(boxes)}</div>'


def _draw_rows(ax: Any, rows: list[list[int]], widths: list[int], title: str) -> None:
    """One bar per row: a coloured segment per sequence, then grey padding up to its width."""
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab20").colors
    k = 0
    for y, (lengths, width) in enumerate(zip(rows, widths, strict=True)):
        x = 0
        for n in lengths:
            ax.barh(y, n, left=x, height=0.8, color=colours[k % len(colours)], edgecolor="white")
            x, k = x + n, k + 1
        if x < width:
            ax.barh(y, width - x, left=x, height=0.8, color="#dddddd", hatch="//")
    ax.set(title=title, xlabel="tokens", xlim=(0, max(widths)))
    ax.invert_yaxis()


def plot_packing(lengths: list[int], batch_size: int, max_length: int, rows: int = 16):
    """Padded batches (one sequence per row, padded to its batch's longest) next to the same
    sequences packed best-fit-decreasing into rows of `max_length` (first `rows` rows of each)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.28 * rows + 1.5))
    widths = [
        max(lengths[i - i % batch_size : i - i % batch_size + batch_size]) for i in range(rows)
    ]
    _draw_rows(left, [[n] for n in lengths[:rows]], widths, f"padded, batches of {batch_size}")
    bins = best_fit_decreasing(lengths, max_length)[:rows]
    packed = [[lengths[i] for i in b] for b in bins]
    _draw_rows(right, packed, [max_length] * len(packed), f"packed into rows of {max_length}")
    left.set_ylabel("row")
    fig.tight_layout()
    return fig


def plot_padding_waste(waste: dict[str, float]):
    """Bars of useful vs pad tokens: padded batches, packed rows padded, packed padding-free."""
    import matplotlib.pyplot as plt

    useful = waste["useful_tokens"]
    totals = {
        "padded batches": waste["padded_tokens"],
        "packed rows\n(tail padded)": waste["packed_tokens_if_padded"],
        "packed\npadding-free": useful,
    }
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(totals)
    ax.bar(names, [useful] * 3, color="#2e7d32", label="useful tokens")
    ax.bar(
        names, [t - useful for t in totals.values()], bottom=useful, color="#bbbbbb", label="pad"
    )
    for i, t in enumerate(totals.values()):
        ax.text(i, t, f"{1 - useful / t:.0%} pad", ha="center", va="bottom")
    ax.set(ylabel="tokens computed", title="padding waste")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
