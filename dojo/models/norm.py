"""RMSNorm: scale each vector by the inverse of its root-mean-square, then by a learned gain.

Unlike LayerNorm there is no mean subtraction and no bias: cheaper, and what Llama, Qwen2 and
Mistral use. The statistics are taken in float32 even for bf16 inputs (as HF does), because the
mean of squares overflows or loses precision in half precision.
"""

import torch
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, over the last dimension."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
