"""Rotary position embeddings (RoPE) and the scaling variants HF configs use.

Position enters attention by rotating each (even, odd)-paired slice of a query or key by an angle
`position * inv_freq[i]`; the dot product of a rotated query and key then depends only on their
distance. The variants differ only in `inv_freq` (all as in transformers' `modeling_rope_utils`):
- "default": inv_freq[i] = 1 / theta^(2i/d)
- "linear": every frequency divided by `factor` (positions squeezed into the trained range)
- "dynamic": NTK-aware: theta grows with the current length once it passes max_position_embeddings
- "llama3": low frequencies divided by `factor`, high ones kept, a smooth ramp between
Like HF we pair dimension i with i + d/2 ("rotate_half"), not 2i with 2i+1: the same rotation up
to a fixed permutation of the weights, kept so checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dojo.models.config import TransformerConfig


def rope_inv_freq(
    config: TransformerConfig, seq_len: int | torch.Tensor | None = None
) -> torch.Tensor:
    """The rotation frequency of each dimension pair, shape [head_dim // 2], float32."""
    dim = config.head_dim
    scaling = config.rope_scaling or {"rope_type": "default"}
    rope_type = scaling["rope_type"]
    base = config.rope_theta
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    if rope_type == "dynamic":
        # NTK: stretch theta so the longest wavelength covers the current length.
        factor, max_pos = scaling["factor"], config.max_position_embeddings
        if seq_len is None:
            seq_len = max_pos
        elif isinstance(seq_len, torch.Tensor):
            seq_len = torch.clamp(seq_len, min=max_pos)
        else:
            seq_len = max(seq_len, max_pos)
        base = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base**exponents)
    if rope_type == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif rope_type == "llama3":
        inv_freq = _llama3_scale(inv_freq, scaling)
    return inv_freq


def _llama3_scale(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Llama 3.1: divide long wavelengths by `factor`, keep short ones, interpolate between."""
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """Turns position ids into the (cos, sin) tables that `apply_rope` multiplies in."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.dynamic = config.rope_scaling["rope_type"] == "dynamic"
        # Not persistent: derived from the config, so it never goes into a checkpoint.
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [batch, seq] -> cos, sin each [batch, seq, head_dim]."""
        inv_freq = self.inv_freq
        if self.dynamic:
            seq_len = position_ids.max() + 1
            if seq_len > self.config.max_position_embeddings:
                inv_freq = rope_inv_freq(self.config, seq_len).to(position_ids.device)
        # Shape [batch, seq, head_dim // 2]: angle of each position for each dimension pair.
        freqs = position_ids[..., None].float() * inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a 90 degree turn per pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [batch, heads, seq, head_dim] by the angles in cos/sin [batch, seq, head_dim]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return x * cos + rotate_half(x) * sin
