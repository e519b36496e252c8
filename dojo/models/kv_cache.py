"""A key/value cache: generation reuses the keys and values of tokens it has already seen.

Without it, producing token n+1 runs attention over all n previous tokens again (quadratic work
per step); with it, each step computes q/k/v for the one new token only and attends to the stored
keys and values. The cache holds, per layer, tensors of shape [batch, kv_heads, seq, head_dim]
(after RoPE, so stored keys never need rotating again).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer growing key/value tensors; `seq_len` is how many positions are stored."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @property
    def seq_len(self) -> int:
        """Positions already cached (0 before the first forward)."""
        return self.keys[0].shape[2] if self.keys else 0

    def update(
        self, layer_idx: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v for `layer_idx`; return all keys and values seen so far."""
        if layer_idx == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], k], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], v], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]
