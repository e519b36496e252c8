"""LoRA+: give B a larger learning rate than A (Hayou et al., 2024).

With B starting at zero and A random, the two matrices play different roles, and the paper shows
that one learning rate for both is inefficient at large width; B's rate should be about 16x A's.
The groups follow PEFT's `create_loraplus_optimizer`: lora_B and every 1-D parameter (DoRA's
magnitude, biases) get `lr * ratio`; everything else trainable gets `lr`.
"""

from __future__ import annotations

import torch
from torch import nn


def loraplus_param_groups(
    model: nn.Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0
) -> list[dict]:
    """Optimizer parameter groups: A (and other matrices) at `lr`, B and vectors at `lr * ratio`."""
    if ratio < 1:
        raise ValueError(f"loraplus ratio={ratio} should be >= 1 (B learns faster than A)")
    group_a, group_b = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (group_b if "lora_B" in name or param.ndim == 1 else group_a).append(param)
    if not group_a and not group_b:
        raise ValueError("loraplus_param_groups: the model has no trainable parameters")
    return [
        {"params": group_a, "lr": lr, "weight_decay": weight_decay},
        {"params": group_b, "lr": lr * ratio, "weight_decay": weight_decay},
    ]


def create_loraplus_optimizer(
    model: nn.Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0, **kwargs
) -> torch.optim.Optimizer:
    """AdamW over LoRA+ parameter groups."""
    groups = loraplus_param_groups(model, lr, ratio, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, **kwargs)
