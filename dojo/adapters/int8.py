"""int8 absmax quantisation from scratch, the simpler cousin of NF4 (for comparison).

Each row of a weight is scaled by 127 / max|row| and rounded to an integer in [-127, 127]
(vector-wise absmax, as LLM.int8() and bitsandbytes' `int8_vectorwise_quant` do). Rounding
to a uniform grid wastes levels on the tails where few weights live; NF4 spends them where the
normal-shaped weights are dense instead.
"""

from __future__ import annotations

import torch


def int8_quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise absmax int8: (int8 values [out, in], float32 absmax per row [out])."""
    if weight.dim() != 2:
        raise ValueError(
            f"int8_quantize expects a 2-D weight [out, in], got shape {tuple(weight.shape)}"
        )
    absmax = weight.detach().abs().amax(dim=1).float()  # Shape [out]
    q = torch.round(weight.float() * (127.0 / absmax.clamp(min=1e-38)).unsqueeze(1))
    return q.to(torch.int8), absmax


def int8_dequantize(q: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    """Inverse of `int8_quantize`: q * absmax / 127, in float32."""
    return q.float() * (absmax / 127.0).unsqueeze(1)
