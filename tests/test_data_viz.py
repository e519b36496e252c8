"""The pictures notebook 02 draws from data: coloured labels, packing rows and padding waste."""

import re

import matplotlib
import pytest

from dojo.data.sft import IGNORE_INDEX
from dojo.viz.data import labels_html, plot_packing, plot_padding_waste, records_html

matplotlib.use("Agg")


class CharTokenizer:
    """Decodes id i to chr(i): enough to draw tokens."""

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_labels_html_colours_exactly_the_trained_tokens():
    ids = [ord(c) for c in "Q: hi\nA: yo"]
    labels = [IGNORE_INDEX] * 9 + ids[9:]
    page = labels_html(CharTokenizer(), ids, labels)
    assert f"{len(ids)} tokens, 2 in the loss" in page
    assert len(re.findall(r"background:#c8f7c5", page)) == 2  # green boxes: "y", "o"
    assert "⏎" in page and "&lt;" not in page
    with pytest.raises(ValueError):
        labels_html(CharTokenizer(), ids, labels[:-1])  # labels must match the ids


def test_records_html_escapes_and_keeps_unicode():
    page = records_html({"a <b>": {"text": "计算 <x>"}})
    assert "a &lt;b&gt;" in page and "计算" in page and "<x>" not in page


def test_plot_packing_draws_every_token_and_the_padding():
    lengths = [10, 4, 7, 3]
    fig = plot_packing(lengths, batch_size=2, max_length=12, rows=4)
    padded, packed = fig.axes
    # Left: one bar per sequence plus a pad bar where a row is shorter than its batch's longest.
    widths = [p.get_width() for p in padded.patches]
    assert sum(widths) == 10 + 10 + 7 + 7  # two batches, widths 10 and 7
    # Right: best-fit decreasing gives rows [10], [7, 4], [3], each padded out to 12.
    sequences = sorted(p.get_width() for p in packed.patches if p.get_hatch() is None)
    pads = sorted(p.get_width() for p in packed.patches if p.get_hatch() == "//")
    assert sequences == [3, 4, 7, 10] and pads == [1, 2, 9]


def test_plot_padding_waste_labels_the_pad_share():
    waste = {"useful_tokens": 60, "padded_tokens": 100, "packed_tokens_if_padded": 80}
    fig = plot_padding_waste(waste)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["40% pad", "25% pad", "0% pad"]
