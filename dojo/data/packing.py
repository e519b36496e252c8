"""Packing: many short tokenized sequences into few full rows, with no padding and no leaks.

Notable choices:
- Best-fit decreasing: sequences are placed longest first, each into the open row whose free
  space fits it most tightly (a sorted list of free spaces + bisect, O(n log n)). It fills rows
  as well as TRL's `pack_dataset(strategy="bfd")`, row for row (tested).
- Padding-free batches: the collator concatenates a batch's rows into ONE row and restarts
  `position_ids` at 0 for every sequence, with no attention mask (or, for the CPU path, keeps
  one row per packed row and fills only the short rows' tails). transformers reads the
  restarts (`find_packed_sequence_indices`) and builds a block-diagonal causal mask for SDPA and
  eager attention (the CPU path); flash-attention uses the `cu_seq_lens_*` it is also given.
  Either way no token attends to another sequence (tested: same logits and loss as unpacked;
  `check_packing` measures it on any model). transformers skips that detection when a KV cache
  exists, so the batch carries use_cache=False.
- The first label of every sequence is -100: otherwise the last token of one sequence would be
  trained to predict the first token of the next.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch

from dojo.data.sft import IGNORE_INDEX


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of sequence indices, each summing to at most `capacity` tokens (best-fit decreasing)."""
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(
            f"{len(too_long)} sequences are longer than the row ({capacity} tokens), e.g. index "
            f"{too_long[0]} with {lengths[too_long[0]]}; truncate first (tokenize_sft max_length)"
        )
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free space, bin index), sorted: the tightest fit first
    for i in order:
        n = lengths[i]
        if n == 0:
            continue
        slot = bisect.bisect_left(free, (n, -1))
        if slot == len(free):  # no open row has room: open a new one
            bins.append([i])
            space, b = capacity - n, len(bins) - 1
        else:
            space, b = free.pop(slot)
            bins[b].append(i)
            space -= n
        if space > 0:
            bisect.insort(free, (space, b))
    return bins


def pack_dataset(dataset: Any, max_length: int):
    """Tokenized rows (`input_ids`, `labels`) packed into rows of at most `max_length` tokens.

    Each packed row has `input_ids`, `labels`, `position_ids` (restarting per sequence) and
    `seq_lengths` (the lengths of the sequences in it).
    """
    import datasets

    ids, labels = dataset["input_ids"], dataset["labels"]
    bins = best_fit_decreasing([len(x) for x in ids], max_length)
    rows: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []}
    for members in bins:
        rows["input_ids"].append([t for i in members for t in ids[i]])
        rows["labels"].append([t for i in members for t in labels[i]])
        rows["position_ids"].append([p for i in members for p in range(len(ids[i]))])
        rows["seq_lengths"].append([len(ids[i]) for i in members])
    return datasets.Dataset.from_dict(rows)


@dataclass
class PackedCollator:
    """Batches of packed rows with positions restarting per sequence, and no attention mask.

    `flatten=True` (TRL's padding-free layout, for flash-attention's varlen kernel) joins every
    row of the batch into one row of shape [1, total_tokens]. `flatten=False` keeps one row per
    packed row, [rows, longest_row], the short rows' tails filled with `pad_token_id` (label -100,
    positions restarting so they form a sequence of their own). On the CPU path (SDPA / eager)
    the mask built from positions is dense, so one long flattened row costs attention quadratic in
    the whole batch; separate rows keep it quadratic only in `max_length`.
    """

    flatten: bool = True
    pad_token_id: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        if self.flatten:
            return self._one_row(examples)
        width = max(len(ex["input_ids"]) for ex in examples)
        parts = []
        for ex in examples:
            tail = width - len(ex["input_ids"])
            padded = {
                "input_ids": list(ex["input_ids"]) + [self.pad_token_id] * tail,
                "labels": list(ex.get("labels", ex["input_ids"])) + [IGNORE_INDEX] * tail,
                "seq_lengths": _seq_lengths(ex) + ([tail] if tail else []),
            }
            parts.append(self._one_row([padded]))
        out = {
            key: torch.cat([p[key] for p in parts])
            for key in ("input_ids", "labels", "position_ids")
        }
        return {**out, "use_cache": False}

    def _one_row(self, examples: list[dict]) -> dict[str, Any]:
        lengths = [n for ex in examples for n in _seq_lengths(ex)]
        input_ids = torch.tensor([t for ex in examples for t in ex["input_ids"]])
        labels = torch.tensor([t for ex in examples for t in ex.get("labels", ex["input_ids"])])
        position_ids = torch.cat([torch.arange(n) for n in lengths])
        labels[position_ids == 0] = IGNORE_INDEX  # never predict across a boundary
        cu_seq_lens = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
        return {
            "input_ids": input_ids[None],  # Shape [1, total_tokens]
            "labels": labels[None],
            "position_ids": position_ids[None],
            # For flash-attention's varlen kernel; SDPA and eager derive the same from positions.
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": max(lengths),
            "max_length_k": max(lengths),
            # transformers only reads sequence restarts from position_ids when no KV cache is
            # built; a model in eval mode would otherwise make one and attend across sequences.
            "use_cache": False,
        }


def _seq_lengths(example: dict) -> list[int]:
    return list(example.get("seq_lengths") or [len(example["input_ids"])])


@dataclass
class PaddedCollator:
    """The usual batches: each sequence right-padded to the longest in the batch."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(ex["input_ids"]) for ex in examples)
        ids = torch.full((len(examples), width), self.pad_token_id)
        labels = torch.full((len(examples), width), IGNORE_INDEX)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            ids[row, :n] = torch.tensor(ex["input_ids"])
            labels[row, :n] = torch.tensor(ex.get("labels", ex["input_ids"]))
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def padding_waste(lengths: list[int], batch_size: int, max_length: int) -> dict[str, float]:
    """Share of pad tokens: padded batches (in the given order) vs packed rows of `max_length`."""
    useful = sum(lengths)
    padded = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size])
        for i in range(0, len(lengths), batch_size)
    )
    rows = best_fit_decreasing(lengths, max_length)
    # Packed rows are used padding-free, so the only waste is a row's unused tail if it were padded.
    packed = len(rows) * max_length
    return {
        "useful_tokens": useful,
        "padded_tokens": padded,
        "padded_waste": 1 - useful / padded,
        "packed_rows": len(rows),
        "packed_tokens_if_padded": packed,
        "packed_waste_if_padded": 1 - useful / packed,
        "packed_waste_padding_free": 0.0,
    }


def check_packing(
    model: Any, rows: list[dict], max_length: int, flatten: bool = False, pad_token_id: int = 0
) -> dict[str, Any]:
    """Run `model` on `rows` packed and one at a time, and measure whether anything leaks.

    Returns the largest logit difference between each sequence inside its packed row and on its
    own (float error only, when nothing attends across a boundary), the loss of the packed batch
    and of the padded, unpacked batch (equal), and the same logit difference when positions do not
    restart per sequence (the leak that the restarts prevent, for contrast).
    """
    bins = best_fit_decreasing([len(r["input_ids"]) for r in rows], max_length)
    order = [i for b in bins for i in b]
    packed = [
        {
            "input_ids": [t for i in b for t in rows[i]["input_ids"]],
            "labels": [t for i in b for t in rows[i].get("labels", rows[i]["input_ids"])],
            "seq_lengths": [len(rows[i]["input_ids"]) for i in b],
        }
        for b in bins
    ]
    batch = PackedCollator(flatten=flatten, pad_token_id=pad_token_id)(packed)
    width = batch["input_ids"].shape[1]
    starts, offset = [], 0  # where each sequence (in `order`) starts in the flattened logits
    for b, row in enumerate(packed):
        offset = offset if flatten else b * width
        for n in row["seq_lengths"]:
            starts.append(offset)
            offset += n
    # Positions that run on across each row: the model then sees one long sequence per row.
    leaky = dict(batch, position_ids=torch.arange(width).expand_as(batch["input_ids"]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**batch)
            leak = model(**leaky).logits.flatten(0, 1)
            padded = model(**PaddedCollator(pad_token_id)([rows[i] for i in order])).loss
            logits = out.logits.flatten(0, 1)  # Shape [rows * width, vocab]
            diff = leaked = 0.0
            for i, start in zip(order, starts, strict=True):
                ids = rows[i]["input_ids"]
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                span = slice(start, start + len(ids))
                diff = max(diff, (logits[span] - alone).abs().max().item())
                leaked = max(leaked, (leak[span] - alone).abs().max().item())
    finally:
        model.train(was_training)
    return {
        "sequences": len(rows),
        "packed_rows": len(bins),
        "max_logit_diff": diff,
        "packed_loss": out.loss.item(),
        "padded_loss": padded.item(),
        "max_logit_diff_without_restarts": leaked,
    }
