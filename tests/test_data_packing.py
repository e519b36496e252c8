"""Packing: best-fit decreasing like TRL's, positions restarting per sequence, and packed
sequences that never attend to each other (same logits and loss as unpacked, on CPU SDPA/eager)."""

import random

import pytest
import torch

from dojo.data.packing import (
    PackedCollator,
    PaddedCollator,
    best_fit_decreasing,
    pack_dataset,
    padding_waste,
)
from dojo.data.sft import IGNORE_INDEX


def _sequences(n=40, seed=0, vocab=50, low=3, high=30):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        ids = [rng.randrange(4, vocab) for _ in range(rng.randint(low, high))]
        cut = rng.randint(1, len(ids) - 1)  # the "prompt" part carries no labels
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * cut + ids[cut:]})
    return rows


def test_best_fit_decreasing_places_every_sequence_once_within_capacity():
    lengths = [len(r["input_ids"]) for r in _sequences(200, seed=1)]
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert len(bins) < len(lengths) / 3  # short sequences share rows


@pytest.mark.slow
def test_best_fit_decreasing_fills_rows_like_trl():
    from datasets import Dataset
    from trl.data_utils import pack_dataset as trl_pack

    rows = _sequences(300, seed=2)
    ours = best_fit_decreasing([len(r["input_ids"]) for r in rows], 64)
    theirs = trl_pack(Dataset.from_list(rows), 64, strategy="bfd")
    lengths = [len(r["input_ids"]) for r in rows]
    assert sorted(sum(lengths[i] for i in b) for b in ours) == sorted(
        sum(s) for s in theirs["seq_lengths"]
    )


def test_too_long_sequence_is_an_error_that_says_what_to_do():
    with pytest.raises(ValueError, match="longer than the row .*truncate first"):
        best_fit_decreasing([5, 70], 64)


def test_pack_dataset_restarts_positions_and_keeps_labels():
    from datasets import Dataset

    rows = _sequences(50, seed=3)
    packed = pack_dataset(Dataset.from_list(rows), 64)
    assert sum(len(r) for r in packed["input_ids"]) == sum(len(r["input_ids"]) for r in rows)
    for row in packed:
        assert len(row["input_ids"]) <= 64
        expected = [p for n in row["seq_lengths"] for p in range(n)]
        assert row["position_ids"] == expected
    # Labels travel with their tokens.
    pairs = {tuple(r["input_ids"]): r["labels"] for r in rows}
    row = packed[0]
    start = 0
    for n in row["seq_lengths"]:
        seg = tuple(row["input_ids"][start : start + n])
        assert row["labels"][start : start + n] == pairs[seg]
        start += n


def test_packed_collator_rows_mode_fills_only_tails():
    batch = PackedCollator(flatten=False, pad_token_id=0)(
        [
            {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [3, 2]},
            {"input_ids": [10, 11], "labels": [10, 11], "seq_lengths": [2]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 11, -100, -100, -100]]


def test_packed_collator_masks_first_label_of_each_sequence():
    batch = PackedCollator()(
        [
            {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [3, 2]},
            {"input_ids": [10, 11], "labels": [10, 11], "seq_lengths": [2]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, 11]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 7]
    assert "attention_mask" not in batch


def test_padding_waste_numbers():
    waste = padding_waste([10, 2, 10, 2], batch_size=2, max_length=12)
    assert waste["padded_tokens"] == 40 and waste["useful_tokens"] == 24
    assert waste["padded_waste"] == pytest.approx(0.4)
    assert waste["packed_rows"] == 2 and waste["packed_waste_if_padded"] == 0.0


def _tiny_llama(attn):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        attn_implementation=attn,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.slow
@pytest.mark.parametrize(
    "attn, flatten",
    [("sdpa", True), ("eager", True), ("sdpa", False)],
    ids=["sdpa", "eager", "rows"],
)
def test_packed_sequences_do_not_attend_across_boundaries(attn, flatten):
    from datasets import Dataset

    model = _tiny_llama(attn)
    rows = _sequences(6, seed=4, vocab=64, low=4, high=20)
    packed_rows = pack_dataset(Dataset.from_list(rows), 32)
    packed = PackedCollator(flatten=flatten)(list(packed_rows))
    # Put the sequences back in the order the packed batch holds them.
    by_ids = {tuple(r["input_ids"]): r for r in rows}
    rows, start = [], 0
    for row in packed_rows:
        for n in row["seq_lengths"]:
            rows.append(by_ids[tuple(row["input_ids"][start : start + n])])
            start += n
        start = 0
    padded = PaddedCollator(pad_token_id=0)(rows)
    with torch.no_grad():
        p = model(**packed)
        u = model(**padded)
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
    # Each sequence's logits in the packed batch are those it gets on its own.
    flat = p.logits.reshape(-1, p.logits.shape[-1])
    width = packed["input_ids"].shape[1]
    starts, offset = [], 0
    for b, row in enumerate(packed_rows):
        offset = offset if flatten else b * width
        for n in row["seq_lengths"]:
            starts.append(offset)
            offset += n
    for r, logits, start in zip(rows, alone, starts, strict=True):
        n = len(r["input_ids"])
        torch.testing.assert_close(flat[start : start + n], logits, atol=1e-5, rtol=1e-5)
    # Same loss as the padded, unpacked batch (same label tokens, mean over them).
    torch.testing.assert_close(p.loss, u.loss, atol=1e-5, rtol=1e-5)


def test_without_position_restarts_packed_sequences_leak():
    """The control: one running position range makes later sequences see earlier ones."""
    model = _tiny_llama("sdpa")
    rows = _sequences(3, seed=5, vocab=64, low=6, high=10)
    packed = PackedCollator()(rows)
    leaky = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
    with torch.no_grad():
        second_alone = model(input_ids=torch.tensor([rows[1]["input_ids"]])).logits[0]
        leaked = model(**leaky).logits[0]
    n0, n1 = len(rows[0]["input_ids"]), len(rows[1]["input_ids"])
    assert not torch.allclose(leaked[n0 : n0 + n1], second_alone, atol=1e-3)


@pytest.mark.parametrize("flatten", [False, True], ids=["rows", "flat"])
def test_check_packing_measures_no_leak_and_equal_loss(flatten):
    from dojo.data import check_packing

    model = _tiny_llama("sdpa").train()  # measured in eval mode, then put back as it was
    rows = _sequences(8, seed=6, vocab=64, low=4, high=20)
    report = check_packing(model, rows, max_length=32, flatten=flatten)
    assert report["sequences"] == 8 and report["packed_rows"] < 8
    assert report["max_logit_diff"] < 1e-4
    assert report["packed_loss"] == pytest.approx(report["padded_loss"], abs=1e-5)
    # Without restarts a later sequence sees the ones before it in its row.
    assert report["max_logit_diff_without_restarts"] > 1e-2
    assert model.training
