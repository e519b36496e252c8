"""Grouped-query attention (GQA) with rotary positions, a KV cache, and two equal code paths.

- Grouped query: `num_key_value_heads` key/value heads, each shared by a group of query heads
  (MHA when the counts are equal, MQA with one kv head); it shrinks the KV cache by the group size.
- `explicit_attention` writes the math out (scores, mask, softmax, weighted sum) for teaching;
  `sdpa_attention` calls PyTorch's fused `scaled_dot_product_attention` for speed. The tests check
  they agree.
- Masks are boolean, True = may attend. With a cache, query i sits at absolute position
  `past + i`, so the causal mask is offset (SDPA's `is_causal` alone would align it top-left).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dojo.models.config import TransformerConfig
from dojo.models.kv_cache import KVCache
from dojo.models.rope import apply_rope


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[batch, kv_heads, seq, d] -> [batch, kv_heads * groups, seq, d]: share kv heads across groups."""
    if groups == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, groups, s, d).reshape(b, h * groups, s, d)


def attention_mask(
    q_len: int,
    k_len: int,
    device: torch.device,
    sliding_window: int | None = None,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask [batch or 1, 1, q_len, k_len]: causal (offset by the cached past), windowed, padded."""
    past = k_len - q_len
    q_pos = torch.arange(past, k_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    mask = k_pos <= q_pos
    if sliding_window is not None:
        mask = mask & (k_pos > q_pos - sliding_window)
    mask = mask[None, None]
    if padding_mask is not None:
        # Padding keys are hidden; a query always sees itself so no softmax row is empty.
        mask = (mask & padding_mask[:, None, None, :k_len].bool()) | (k_pos == q_pos)
    return mask


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v, written out; q [b, h, s, d], k/v [b, h, t, d]."""
    # Shape [batch, heads, q_len, k_len]: how much each query looks at each key.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return weights @ v  # Shape [batch, heads, q_len, head_dim]


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """The same result through PyTorch's fused kernel (flash / memory-efficient / math).

    k/v may have fewer heads than q (GQA): the kernel shares them itself (`enable_gqa`), which
    saves materialising the repeated keys and values.
    """
    gqa = q.shape[1] != k.shape[1]
    if mask is None and q.shape[2] == k.shape[2] and q.shape[2] > 1:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class GroupedQueryAttention(nn.Module):
    """Project to q/k/v heads, rotate q and k, attend (causally), project back."""

    def __init__(self, config: TransformerConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.sliding_window = config.sliding_window
        self.implementation = config.attn_implementation
        h, d = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(h, self.num_heads * d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(h, self.num_kv_heads * d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(h, self.num_kv_heads * d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * d, h, bias=config.o_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [batch, seq, hidden] -> [batch, seq, hidden]."""
        b, s, _ = x.shape
        # Shape [batch, heads, seq, head_dim] for each of q, k, v.
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        out = self._attend(q, k, v, padding_mask)
        # Shape [batch, seq, heads * head_dim]: heads side by side again.
        out = out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)
        return self.o_proj(out)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        q_len, k_len = q.shape[2], k.shape[2]
        plain_causal = self.sliding_window is None and padding_mask is None
        if self.implementation == "sdpa" and plain_causal and (q_len == k_len or q_len == 1):
            # The fused kernel's own causal flag (prefill) or no mask at all (one new token).
            return sdpa_attention(q, k, v, None)
        mask = attention_mask(q_len, k_len, q.device, self.sliding_window, padding_mask)
        if self.implementation == "sdpa":
            return sdpa_attention(q, k, v, mask)
        groups = self.num_heads // self.num_kv_heads
        return explicit_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask)
