"""LoRA from scratch: a low-rank update beside a frozen linear layer.

    y = x W^T + b + scaling * (dropout(x) A^T) B^T,   A: [r, in], B: [out, r]

Design choices (each matches PEFT, so the numbers agree with `peft.LoraConfig`):
- A starts Kaiming-uniform (a = sqrt(5), PyTorch's own `nn.Linear` init) and B starts at zero,
  so the adapted model begins exactly equal to the base model.
- `scaling = alpha / r`; rsLoRA uses `alpha / sqrt(r)`, which keeps the update's size steady as
  r grows (Kalajdzievski, 2023).
- Dropout acts on the adapter's input only; the frozen path sees the clean input.
- The wrapper keeps PEFT's names (`base_layer`, `lora_A`, `lora_B`) so an adapter saved here is a
  PEFT adapter: `PeftModel.from_pretrained` loads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dojo.adapters.targets import match_target_modules


def is_quantized_weight(weight: torch.Tensor) -> bool:
    """True when a weight is stored packed in 4 or 8 bits (bitsandbytes), not as floats."""
    return type(weight).__name__ in {"Params4bit", "Int8Params"} or not weight.is_floating_point()


def check_rank(r: int, base: nn.Linear, where: str) -> None:
    """Raise a clear error unless 0 < r <= min(in_features, out_features)."""
    if not isinstance(r, int) or isinstance(r, bool):
        raise TypeError(f"{where}: rank r must be an int, got {r!r}")
    limit = min(base.in_features, base.out_features)
    if r <= 0:
        raise ValueError(f"{where}: rank r={r} must be positive (try 8 or 16)")
    if r > limit:
        raise ValueError(
            f"{where}: rank r={r} is larger than the layer allows ({base.out_features}x"
            f"{base.in_features} has rank at most {limit}); a LoRA update that large is not "
            f"low-rank. Use r <= {limit}."
        )


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update `scaling * B @ A`."""

    is_adapter_layer = True

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int = 8,
        alpha: float = 16,
        dropout: float = 0.0,
        rslora: bool = False,
        name: str = "layer",
    ):
        super().__init__()
        check_rank(r, base_layer, name)
        self.base_layer = base_layer
        self.r, self.alpha, self.rslora = r, alpha, rslora
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        kw = {"device": base_layer.weight.device, "dtype": _adapter_dtype(base_layer.weight)}
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False, **kw)  # [r, in]
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False, **kw)  # [out, r]
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        for param in base_layer.parameters():
            param.requires_grad_(False)
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A: Kaiming-uniform, B: zeros, so the update starts at exactly zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """The update the adapter adds to the base weight: scaling * B @ A, shape [out, in]."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def lora_output(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's own contribution to the output."""
        x = x.to(self.lora_A.weight.dtype)
        return self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        return (result + self.lora_output(x)).to(result.dtype)

    def _check_mergeable(self) -> None:
        if is_quantized_weight(self.base_layer.weight):
            raise ValueError(
                "cannot merge a LoRA adapter into 4-/8-bit quantised weights: the merged weight "
                "would be re-quantised and the small update rounded away. Dequantise the base "
                "to 16/32-bit first (dojo.adapters.qlora.merge_qlora does this)."
            )

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (W <- W + scaling * B @ A)."""
        self._check_mergeable()
        if not self.merged:
            weight = self.base_layer.weight
            weight.add_(self.delta_weight().to(weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (W <- W - scaling * B @ A)."""
        if self.merged:
            weight = self.base_layer.weight
            weight.sub_(self.delta_weight().to(weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, merged={self.merged}"


def _adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    # Adapters on a quantised or half-precision base train in float32 (as PEFT's autocast does).
    return weight.dtype if weight.dtype == torch.float32 else torch.float32


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def add_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    target_modules: str | Sequence[str] = "all-linear",
    dropout: float = 0.0,
    dora: bool = False,
    rslora: bool = False,
) -> nn.Module:
    """Freeze `model` and wrap its target linear layers with from-scratch LoRA (or DoRA) in place."""
    from dojo.adapters.dora import DoRALinear

    names = match_target_modules(model, target_modules)
    for name in names:  # check every rank before touching the model
        check_rank(r, model.get_submodule(name), name)
    for param in model.parameters():
        param.requires_grad_(False)
    layer_cls = DoRALinear if dora else LoRALinear
    for name in names:
        base = model.get_submodule(name)
        _replace_module(model, name, layer_cls(base, r, alpha, dropout, rslora, name=name))
    model.lora_config = {
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "use_dora": dora,
        "use_rslora": rslora,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in names}),
    }
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every from-scratch adapter layer in `model`, by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _require_layers(model: nn.Module, what: str) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        hint = ""
        if any(type(m).__module__.startswith("peft.") for m in model.modules()):
            hint = " It holds PEFT adapters: use peft's merge_and_unload (or merge_qlora)."
        raise ValueError(f"{what}: {type(model).__name__} has no dojo LoRA layers.{hint}")
    return layers


def merge_lora(model: nn.Module, unload: bool = True) -> nn.Module:
    """Merge every adapter into its base weight; with `unload`, put the plain layers back."""
    layers = _require_layers(model, "merge_lora")
    for layer in layers.values():
        layer._check_mergeable()
    for name, layer in layers.items():
        layer.merge()
        if unload:
            _replace_module(model, name, layer.base_layer)
    if unload and hasattr(model, "lora_config"):
        del model.lora_config
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take merged updates back out of the base weights (adapters kept)."""
    for layer in _require_layers(model, "unmerge_lora").values():
        layer.unmerge()
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter's tensors, under PEFT's key names (`base_model.model.<module>.lora_A.weight`)."""
    state = {}
    for name, layer in _require_layers(model, "lora_state_dict").items():
        prefix = f"base_model.model.{name}"
        state[f"{prefix}.lora_A.weight"] = layer.lora_A.weight.detach().cpu().contiguous()
        state[f"{prefix}.lora_B.weight"] = layer.lora_B.weight.detach().cpu().contiguous()
        magnitude = getattr(layer, "magnitude", None)
        if magnitude is not None:
            state[f"{prefix}.lora_magnitude_vector"] = magnitude.detach().cpu().contiguous()
    return state


def save_lora(model: nn.Module, directory: str | Path) -> Path:
    """Save only the adapter, in PEFT's format (`adapter_model.safetensors` + `adapter_config.json`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(model), directory / "adapter_model.safetensors")
    config = dict(getattr(model, "lora_config", {}))
    config.update(
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": getattr(
                getattr(model, "config", None), "_name_or_path", None
            ),
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": True,
            "init_lora_weights": True,
        }
    )
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return directory


def load_lora(model: nn.Module, directory: str | Path) -> nn.Module:
    """Add adapters to `model` as `adapter_config.json` describes and load their saved tensors."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    add_lora(
        model,
        r=config["r"],
        alpha=config["lora_alpha"],
        target_modules=config["target_modules"],
        dropout=config.get("lora_dropout", 0.0),
        dora=config.get("use_dora", False),
        rslora=config.get("use_rslora", False),
    )
    saved = load_file(directory / "adapter_model.safetensors")
    current = lora_state_dict(model)
    missing = sorted(set(current) - set(saved))
    if missing:
        raise ValueError(
            f"{directory}: adapter file lacks {len(missing)} tensors, e.g. {missing[0]}"
        )
    layers = lora_layers(model)
    with torch.no_grad():
        for key, tensor in saved.items():
            module_name, _, leaf = key.removeprefix("base_model.model.").partition(".lora_")
            layer = layers[module_name]
            target = {
                "A.weight": layer.lora_A.weight,
                "B.weight": layer.lora_B.weight,
                "magnitude_vector": getattr(layer, "magnitude", None),
            }[leaf]
            target.copy_(tensor)
    return model
