"""Put the from-scratch adapters and PEFT's side by side on one model and measure how far apart they are.

Design choices:
- Both sides start from copies of the same base model, and PEFT's adapter tensors are copied
  from ours, so any difference comes from the maths, not from the random initialisation.
- B starts at zero in both libraries, which would hide an error in the update path (and DoRA's
  magnitude starts at ||W||); `perturb` gives B and the magnitude non-trivial values first.
- The report is the largest absolute difference of the logits, the loss, every adapter
  gradient and every merged weight: one number each, for a notebook table or a test.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from dojo.adapters.lora import add_lora, lora_layers, merge_lora


def _peft_layer(peft_model, name: str):
    return peft_model.base_model.model.get_submodule(name)


@torch.no_grad()
def perturb_adapters(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Give every B (and DoRA magnitude) non-trivial values, so the update path is exercised."""
    gen = torch.Generator().manual_seed(seed)
    for layer in lora_layers(model).values():
        weight = layer.lora_B.weight
        weight.copy_(torch.randn(weight.shape, generator=gen).to(weight) * scale)
        magnitude = getattr(layer, "magnitude", None)
        if magnitude is not None:
            magnitude.mul_(1 + scale * torch.rand(magnitude.shape, generator=gen).to(magnitude))
    return model


@torch.no_grad()
def peft_twin(base: nn.Module, ours: nn.Module):
    """A PEFT model on a copy of `base` whose adapters hold exactly the tensors of `ours`."""
    from peft import LoraConfig, get_peft_model

    cfg = ours.lora_config
    config = LoraConfig(
        r=cfg["r"],
        lora_alpha=cfg["lora_alpha"],
        lora_dropout=cfg["lora_dropout"],
        target_modules=list(lora_layers(ours)),  # full names: exactly the same layers
        use_dora=cfg["use_dora"],
        use_rslora=cfg["use_rslora"],
    )
    theirs = get_peft_model(copy.deepcopy(base), config)
    for name, layer in lora_layers(ours).items():
        peft_layer = _peft_layer(theirs, name)
        peft_layer.lora_A["default"].weight.copy_(layer.lora_A.weight)
        peft_layer.lora_B["default"].weight.copy_(layer.lora_B.weight)
        if cfg["use_dora"]:
            peft_layer.lora_magnitude_vector["default"].weight.copy_(layer.magnitude)
    return theirs


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float() - b.detach().float()).abs().max().item()


def compare_with_peft(
    base: nn.Module,
    input_ids: torch.Tensor,
    r: int = 4,
    alpha: float = 8,
    target_modules: str | Sequence[str] = "all-linear",
    dora: bool = False,
    rslora: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Max |ours - PEFT| of logits, loss, adapter gradients and merged weights on `input_ids`."""
    ours = add_lora(copy.deepcopy(base), r, alpha, target_modules, dora=dora, rslora=rslora)
    perturb_adapters(ours, seed)
    theirs = peft_twin(base, ours)
    ours.train(), theirs.train()
    out_ours = ours(input_ids=input_ids, labels=input_ids)
    out_theirs = theirs(input_ids=input_ids, labels=input_ids)
    out_ours.loss.backward()
    out_theirs.loss.backward()
    grads = 0.0
    for name, layer in lora_layers(ours).items():
        peft_layer = _peft_layer(theirs, name)
        pairs = [
            (layer.lora_A.weight, peft_layer.lora_A["default"].weight),
            (layer.lora_B.weight, peft_layer.lora_B["default"].weight),
        ]
        if dora:
            pairs.append((layer.magnitude, peft_layer.lora_magnitude_vector["default"].weight))
        grads = max(grads, *(_max_diff(a.grad, b.grad) for a, b in pairs))
    merged_theirs = theirs.merge_and_unload().state_dict()
    merged = max(
        _max_diff(value, merged_theirs[key]) for key, value in merge_lora(ours).state_dict().items()
    )
    return {
        "logits": _max_diff(out_ours.logits, out_theirs.logits),
        "loss": abs(out_ours.loss.item() - out_theirs.loss.item()),
        "adapter grads": grads,
        "merged weights": merged,
    }
