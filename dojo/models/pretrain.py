"""A small, readable pretraining loop: next-token prediction over a stream of token ids.

Choices, each the usual one for small decoders:
- the stream is cut into fixed-length chunks (each epoch starts the cuts at a new random offset,
  so the model does not always see the same boundaries); a batch is `batch_size` chunks;
- AdamW with betas (0.9, 0.95); weight decay only on matrices (not on norm gains or biases);
- learning rate: linear warmup, then cosine decay to `min_lr_ratio * lr`;
- gradient-norm clipping at 1.0;
- works with our `Transformer` and with any HF causal LM: both take `input_ids` and `labels`
  and return an object with `.loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from dojo import paths


def read_texts(folder: str | Path | None = None) -> list[str]:
    """The documents (blank-line separated) of every .txt file in `folder` (default data/pretrain)."""
    folder = Path(folder or paths.DATA_DIR / "pretrain")
    docs = []
    for path in sorted(folder.glob("*.txt")):
        docs += [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    if not docs:
        raise FileNotFoundError(f"read_texts: no text in {folder}/*.txt")
    return docs


def lr_at(step: int, steps: int, warmup: int, lr: float, min_lr_ratio: float = 0.1) -> float:
    """Learning rate at `step` (0-based): linear warmup over `warmup` steps, then cosine decay."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * cosine)


def chunk_batches(
    token_ids: torch.Tensor, batch_size: int, seq_len: int, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Endless batches [batch_size, seq_len] of fixed-length chunks of the stream, shuffled per epoch."""
    if token_ids.numel() < seq_len + 1:
        raise ValueError(
            f"pretrain: the token stream has {token_ids.numel()} tokens, fewer than one chunk "
            f"of seq_len={seq_len}; pass more text or a shorter seq_len"
        )
    generator = torch.Generator().manual_seed(seed)
    while True:
        offset = int(torch.randint(0, seq_len, (1,), generator=generator))
        usable = (token_ids.numel() - offset) // seq_len * seq_len
        if usable == 0:
            offset, usable = 0, token_ids.numel() // seq_len * seq_len
        chunks = token_ids[offset : offset + usable].view(-1, seq_len)
        order = torch.randperm(len(chunks), generator=generator)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield chunks[order[i : i + batch_size]]
        if len(order) < batch_size:  # tiny stream: sample with replacement instead
            yield chunks[torch.randint(0, len(chunks), (batch_size,), generator=generator)]


def split_stream(
    token_ids: torch.Tensor, eval_fraction: float = 0.1, block: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) streams: every n-th block of `block` tokens is held out, n = 1 / fraction.

    Interleaved rather than the tail, so the held-out text has the same mix of topics and
    languages as the training text (the shipped files are sorted by topic, Chinese last).
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"split_stream: eval_fraction={eval_fraction} must be in (0, 1)")
    every = max(2, round(1 / eval_fraction))
    blocks = token_ids.split(block)
    held_out = [b for i, b in enumerate(blocks) if i % every == every - 1]
    if not held_out:
        raise ValueError(
            f"split_stream: {token_ids.numel()} tokens make fewer than {every} blocks of {block}; "
            f"pass a smaller block"
        )
    train = [b for i, b in enumerate(blocks) if i % every != every - 1]
    return torch.cat(train), torch.cat(held_out)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norm gains, biases) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def pretrain(
    model: nn.Module,
    token_ids: torch.Tensor | list[int],
    steps: int = 200,
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    warmup: int = 20,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    *,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    progress: bool = True,
) -> list[float]:
    """Train `model` on next-token prediction over `token_ids`; return the loss of every step.

    `callback(step, loss)` runs after each step (a live plot, logging, early checks).
    """
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    token_ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
    batches = chunk_batches(token_ids, batch_size, seq_len, seed)
    optimizer = make_optimizer(model, lr, weight_decay)
    model.train()
    history = []
    for step in tqdm(range(steps), desc="pretrain", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, warmup, lr, min_lr_ratio)
        batch = next(batches).to(device)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        history.append(loss.item())
        if callback is not None:
            callback(step, history[-1])
    model.eval()
    return history


class LiveLossPlot:
    """A `pretrain` callback that redraws the loss curve in a notebook every `every` steps."""

    def __init__(self, steps: int, every: int = 10, title: str = "pretraining loss") -> None:
        import matplotlib.pyplot as plt

        self.steps, self.every, self.losses = steps, every, []
        self.fig, self.ax = plt.subplots(figsize=(6, 3))
        self.ax.set(xlim=(0, steps), xlabel="step", ylabel="loss", title=title)
        (self.line,) = self.ax.plot([], [])
        plt.close(self.fig)  # shown through the display handle, not by the inline backend
        self.handle = None

    def __call__(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        if step % self.every and step != self.steps - 1:
            return
        self.line.set_data(range(len(self.losses)), self.losses)
        self.ax.set_ylim(0, max(self.losses) * 1.05)
        self._show()

    def _show(self) -> None:
        try:
            from IPython.display import display
        except ImportError:
            return
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
