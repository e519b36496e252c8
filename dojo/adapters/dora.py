"""DoRA from scratch: LoRA on the direction of each weight row, plus a trainable magnitude.

    W' = m * (W + s B A) / ||W + s B A||_row        y = x W'^T + b

Design choices (DoRA paper, Liu et al. 2024, section 4.3, and PEFT):
- The magnitude `m` starts as the row norms of W, so the adapted layer starts equal to the base.
- The norm ||W + s B A|| is detached from the graph: it is treated as a constant in backward,
  which saves memory and, per the paper, costs no accuracy.
- The output is computed as base + correction, so the frozen layer runs as usual:
  y = base(x) + (m/||.|| - 1) * (x W^T) + (m/||.||) * s * (x A^T B^T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dojo.adapters.lora import LoRALinear


class DoRALinear(LoRALinear):
    """LoRA plus a per-output-row magnitude vector (weight-decomposed low-rank adaptation)."""

    def __init__(self, base_layer: nn.Linear, *args, **kwargs):
        super().__init__(base_layer, *args, **kwargs)
        with torch.no_grad():
            self.magnitude = nn.Parameter(self.weight_norm(), requires_grad=True)  # [out]

    def _base_weight(self) -> torch.Tensor:
        return self.base_layer.weight.to(self.lora_A.weight.dtype)

    def weight_norm(self) -> torch.Tensor:
        """Row norms of W + s B A (one per output feature), detached as DoRA prescribes."""
        update = self.delta_weight().detach()
        return torch.linalg.norm(self._base_weight() + update, dim=1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        x = x.to(self.lora_A.weight.dtype)
        scale = (self.magnitude / self.weight_norm()).view(1, -1)  # [1, out]
        dropped = self.lora_dropout(x)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            bias = self.base_layer.bias
            base_result = result if bias is None else result - bias  # x W^T, reused
        else:
            # With dropout, the direction term must see the same dropped input as the update.
            base_result = F.linear(dropped, self._base_weight())
        lora_result = self.lora_B(self.lora_A(dropped))
        # (m/||.|| * BAx) * s, in PEFT's order, so the two agree to the last bit
        correction = (scale - 1) * base_result + scale * lora_result * self.scaling
        return (result + correction).to(result.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- m / ||W + s B A|| * (W + s B A), remembering the norm so `unmerge` can undo it."""
        self._check_mergeable()
        if not self.merged:
            weight = self.base_layer.weight
            self._merged_norm = self.weight_norm()
            factor = (self.magnitude / self._merged_norm).view(-1, 1)
            weight.copy_((factor * (self._base_weight() + self.delta_weight())).to(weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` with the norm it used."""
        if self.merged:
            weight = self.base_layer.weight
            factor = (self.magnitude / self._merged_norm).view(-1, 1)
            weight.copy_((self._base_weight() / factor - self.delta_weight()).to(weight.dtype))
            self.merged = False


def magnitude_direction_change(
    before: torch.Tensor, after: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output row: |change of norm| and 1 - cosine(before, after) (DoRA paper, figure 2)."""
    before, after = before.detach().float(), after.detach().float()
    delta_m = (after.norm(dim=1) - before.norm(dim=1)).abs()
    delta_d = 1 - F.cosine_similarity(after, before, dim=1)
    return delta_m, delta_d
