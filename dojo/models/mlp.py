"""SwiGLU feed-forward: down(silu(gate(x)) * up(x)).

A gated MLP: one projection (`gate`, through SiLU) decides how much of the other (`up`) passes.
Three matrices instead of two, so `intermediate_size` is usually ~8/3 x hidden to keep the
parameter count of a classic 4x MLP.
"""

import torch
from torch import nn
from torch.nn import functional as F


class SwiGLU(nn.Module):
    """The Llama / Qwen2 / Mistral MLP (and one expert of a mixture of experts)."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shape [..., intermediate_size] inside, back to [..., hidden_size].
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
