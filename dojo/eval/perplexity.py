"""Perplexity with a sliding window, on whole texts or on the assistant's tokens only.

Notable choices:
- A text longer than the window is scored in windows of `max_length` tokens that advance by
  `stride`, as in the transformers docs ("Perplexity of fixed-length models"): each window
  scores only the tokens no earlier window scored, and the overlap is context. A smaller stride
  gives each token more context (a lower, fairer perplexity) and costs more forward passes.
- Each text is its own document (windows never cross texts), and the corpus perplexity is
  exp(total negative log-likelihood / total scored tokens), so long texts weigh by their length.
- Conversations (lists of messages) go through the tokenizer's chat template; with
  `assistant_only=True` only the reply tokens (the template's `{% generation %}` spans) count.
- Windows from all texts are batched (right padding, -100 labels on padding), so a corpus of
  short texts costs a few forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PerplexityResult:
    """Corpus perplexity and what it is made of."""

    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens: int  # tokens scored
    windows: int  # forward-pass rows


def _encode(tokenizer, item, assistant_only: bool, where: str) -> tuple[list[int], list[int]]:
    """Token ids of a text or conversation and the 0/1 mask of the tokens to score."""
    if isinstance(item, str):
        if assistant_only:
            raise ValueError(
                f"{where}: assistant_only=True needs conversations (lists of messages), got text"
            )
        ids = tokenizer(item, verbose=False)["input_ids"]  # long texts are windowed
        return ids, [1] * len(ids)
    if not isinstance(item, list) or not all(isinstance(m, dict) for m in item):
        raise ValueError(
            f"{where}: expected a string or a list of messages, got {type(item).__name__}"
        )
    if assistant_only:
        from dojo.chat.masks import tokenize_chat

        out = tokenize_chat(tokenizer, item)
        if not any(out["assistant_masks"]):
            raise ValueError(f"{where}: the conversation has no assistant reply to score")
        return out["input_ids"], out["assistant_masks"]
    ids = list(tokenizer.apply_chat_template(item, tokenize=True, return_dict=True)["input_ids"])
    return ids, [1] * len(ids)


def windows(
    ids: list[int], score: list[int], max_length: int, stride: int
) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per window; labels are -100 for context and unscored tokens.

    Token 0 of a text is never scored: nothing precedes it to predict it from.
    """
    out, prev_end = [], 0
    for begin in range(0, max(1, len(ids) - 1), stride):
        end = min(begin + max_length, len(ids))
        labels = [
            tok if (i >= prev_end and i > 0 and score[i]) else -100
            for i, tok in zip(range(begin, end), ids[begin:end])
        ]
        out.append((ids[begin:end], labels))
        prev_end = end
        if end == len(ids):
            break
    return out


@torch.no_grad()
def _nll_sum(model, rows: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int):
    """Summed next-token NLL and the number of scored tokens over all rows."""
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (row_ids, row_labels) in enumerate(batch):
            ids[r, : len(row_ids)] = torch.tensor(row_ids)
            labels[r, : len(row_labels)] = torch.tensor(row_labels)
            attention[r, : len(row_ids)] = 1
        device = model.device
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
        # Position t predicts token t+1.
        shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
        shift_labels = labels[:, 1:].reshape(-1).to(device)
        total += F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
        count += int((shift_labels != -100).sum())
    return float(total), count


def perplexity(
    model,
    tokenizer,
    texts,
    stride: int | None = None,
    max_length: int | None = None,
    assistant_only: bool = False,
    batch_size: int = 16,
) -> PerplexityResult:
    """exp(mean NLL per token) of `texts` (strings or conversations) under `model`.

    `max_length`: the window (default: the model's context length); `stride`: how far the
    window advances (default: half the window, so every scored token sees at least half a
    window of context).
    """
    if isinstance(texts, str):
        texts = [texts]
    max_length = max_length or getattr(model.config, "max_position_embeddings", 1024)
    stride = stride or max(1, max_length // 2)
    if not 0 < stride <= max_length:
        raise ValueError(f"stride={stride} must be in 1..max_length={max_length}")
    rows = []
    for i, item in enumerate(texts):
        ids, score = _encode(tokenizer, item, assistant_only, f"texts[{i}]")
        rows += windows(ids, score, max_length, stride)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    try:
        total, count = _nll_sum(model, rows, pad_id, batch_size)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no tokens to score: every text is shorter than two tokens")
    nll = total / count
    return PerplexityResult(math.exp(nll), nll, count, len(rows))
