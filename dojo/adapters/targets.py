"""Which layers get an adapter: module-name matching, defaults per model family, freeze-tuning.

Design choices:
- Matching follows PEFT's rules exactly, so a `target_modules` value means the same thing in
  `dojo.adapters.add_lora` and in `peft.LoraConfig`: `"all-linear"` is every `nn.Linear` except
  the output head; a list matches a name equal to an entry or ending in `.entry`; any other string
  is a regular expression that must match the whole module name.
- A pattern that matches nothing is an error that lists the model's linear layers, because the
  silent alternative (an adapter on nothing, a loss that never moves) costs an afternoon.
- The per-family defaults are the classic attention-only choices (LoRA paper, PEFT, LLaMA-Factory):
  the query and value projections, or the fused QKV projection where a family fuses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

ALL_LINEAR = "all-linear"

# family (config.model_type) -> modules LoRA targets by default. Fused QKV projections carry
# one name: `c_attn` (GPT-2, Qwen-1), `query_key_value` (BLOOM, Falcon, ChatGLM, GPT-NeoX),
# `W_pack` (Baichuan), `Wqkv` (MPT), `qkv_proj` (Phi-3).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen2_moe": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "qwen3_moe": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"],
    "internlm": ["q_proj", "v_proj"],
    "yi": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "phi3": ["qkv_proj"],
    "qwen": ["c_attn"],
    "gpt2": ["c_attn"],
    "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
    "chatglm": ["query_key_value"],
    "gpt_neox": ["query_key_value"],
    "baichuan": ["W_pack"],
    "mpt": ["Wqkv"],
}


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of every `nn.Linear` in `model` (adapter internals excluded), in module order."""
    inside_adapter = set()
    for name, module in model.named_modules():
        if getattr(module, "is_adapter_layer", False):
            inside_adapter.update(f"{name}.{sub}" for sub, _ in module.named_modules() if sub)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in inside_adapter
    ]


def _output_head_name(model: nn.Module) -> str | None:
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        return None
    return next((n for n, m in model.named_modules() if m is head), None)


def _matches(pattern: str | Sequence[str], name: str) -> bool:
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(name == key or name.endswith(f".{key}") for key in pattern)


def describe_linear_layers(model: nn.Module) -> str:
    """A short, readable summary of a model's linear layers for error messages."""
    names = linear_layer_names(model)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    examples = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{len(names)} linear layers; leaf names: {', '.join(leaves)} (e.g. {examples})"


def match_target_modules(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """Resolve `target_modules` (PEFT's rules) to the names of the linear layers it selects."""
    names = linear_layer_names(model)
    if isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR:
        head = _output_head_name(model)
        chosen = [n for n in names if n != head]
    else:
        if not isinstance(target_modules, str):
            target_modules = list(target_modules)
            if not target_modules:
                raise ValueError("target_modules is empty; name at least one layer or 'all-linear'")
        chosen = [n for n in names if _matches(target_modules, n)]
    if not chosen:
        raise ValueError(
            f"target_modules={target_modules!r} matches no linear layer of "
            f"{type(model).__name__}; it has {describe_linear_layers(model)}. Use some of those "
            "leaf names, a regular expression over the full names, or 'all-linear'."
        )
    return chosen


def model_family(model_or_family: nn.Module | str) -> str:
    """The family key (`config.model_type`) of a model, or the string given."""
    if isinstance(model_or_family, str):
        return model_or_family.lower()
    config = getattr(model_or_family, "config", None)
    family = getattr(config, "model_type", None)
    if family is None:
        raise ValueError(
            f"{type(model_or_family).__name__} has no config.model_type; pass the family name "
            f"(one of {', '.join(sorted(DEFAULT_TARGET_MODULES))})"
        )
    return family


def default_target_modules(model_or_family: nn.Module | str) -> list[str]:
    """The classic LoRA targets for a family (e.g. `['q_proj', 'v_proj']` for Llama)."""
    family = model_family(model_or_family)
    if family not in DEFAULT_TARGET_MODULES:
        raise ValueError(
            f"no default LoRA targets for family {family!r}; known families: "
            f"{', '.join(sorted(DEFAULT_TARGET_MODULES))}. Pass target_modules yourself, "
            "or 'all-linear'."
        )
    return list(DEFAULT_TARGET_MODULES[family])


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer blocks: the longest `nn.ModuleList` of one block class."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            same_class = len({type(block) for block in module}) == 1
            if same_class and (best is None or len(module) > len(best[1])):
                best = (name, module)
    if best is None:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of transformer blocks")
    return best


def freeze_all_but_last(model: nn.Module, n: int, train_extra: Sequence[str] = ()) -> nn.Module:
    """Freeze-tuning: train only the last `n` blocks (and modules named in `train_extra`)."""
    name, blocks = decoder_blocks(model)
    if not isinstance(n, int) or not 0 < n <= len(blocks):
        raise ValueError(
            f"freeze_all_but_last: n={n!r} must be an integer in 1..{len(blocks)} "
            f"(the model has {len(blocks)} blocks under {name!r})"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for block in blocks[len(blocks) - n :]:
        for param in block.parameters():
            param.requires_grad_(True)
    modules = dict(model.named_modules())
    for extra in train_extra:
        found = [m for key, m in modules.items() if key == extra or key.endswith(f".{extra}")]
        if not found:
            raise ValueError(f"train_extra: no module named {extra!r} in {type(model).__name__}")
        for module in found:
            for param in module.parameters():
                param.requires_grad_(True)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
