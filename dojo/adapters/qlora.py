"""QLoRA for real: a 4-bit NF4 base (bitsandbytes) with trainable LoRA adapters (PEFT).

Design choices:
- The base is loaded through transformers' `BitsAndBytesConfig` (NF4, double quantisation,
  a 16/32-bit compute dtype); the matmuls dequantise block by block on the fly.
- `prepare_model_for_kbit_training` casts the small non-quantised parameters (norms,
  embeddings) to float32 for stable training and turns on gradient checkpointing.
- Merging never writes into the 4-bit weights: re-quantising W + BA to NF4 rounds the small
  update away (the known pitfall). `merge_qlora` first dequantises the base to 16/32 bit, so the
  merged model computes what the 4-bit base plus adapter computed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

MERGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _dtype(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, str(value), None)
    if not isinstance(found, torch.dtype):
        raise ValueError(f"unknown dtype {value!r}; use float32, bfloat16 or float16")
    return found


def quantization_config(bits: int = 4, compute_dtype: torch.dtype | str = torch.bfloat16):
    """A `BitsAndBytesConfig`: 4-bit NF4 with double quantisation (QLoRA) or 8-bit LLM.int8()."""
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_dtype(compute_dtype),
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"bits={bits!r}: bitsandbytes loads weights in 4 or 8 bits")


def load_quantized(
    model_name_or_path: str | Path,
    bits: int = 4,
    compute_dtype: torch.dtype | str = torch.float32,
    device_map: str | dict | None = None,
    cpu_bf16_kernel: bool = False,
) -> nn.Module:
    """Load a causal LM with its linear layers quantised to 4 (NF4) or 8 bits.

    On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights on the first eval forward
    pass and from then on rounds the absmax constants to bfloat16, so evaluation no longer
    computes what training computed (~1e-3 apart). `cpu_bf16_kernel=False` (the default here)
    keeps the exact path, so "base + adapter" and the merged model agree.
    """
    from transformers import AutoModelForCausalLM

    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        model_name_or_path,
        quantization_config=quantization_config(bits, compute_dtype),
        dtype=_dtype(compute_dtype),
        device_map=device_map,
    )
    if not cpu_bf16_kernel:
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    return model


def prepare_qlora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    gradient_checkpointing: bool = True,
    dora: bool = False,
):
    """Prepare a quantised model for k-bit training and add PEFT LoRA adapters; returns a PeftModel."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if not getattr(model, "is_quantized", False):
        raise ValueError(
            "prepare_qlora expects a model loaded in 4/8 bit (dojo.adapters.load_quantized); "
            "for a 16/32-bit model use dojo.adapters.apply_tuning(model, 'lora', ...)"
        )
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=gradient_checkpointing
    )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        use_dora=dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def is_quantized_model(model: nn.Module) -> bool:
    """True when any linear layer of `model` stores bitsandbytes 4- or 8-bit weights."""
    return any(type(m).__name__ in {"Linear4bit", "Linear8bitLt"} for m in model.modules())


def dequantize_model(model: nn.Module, dtype: torch.dtype | str = torch.float32) -> nn.Module:
    """Replace every 4/8-bit linear layer of a (non-PEFT) model by an `nn.Linear` in `dtype`."""
    dtype = _check_merge_dtype(dtype)
    if getattr(model, "hf_quantizer", None) is None:
        raise ValueError(f"{type(model).__name__} was not loaded quantised; nothing to dequantise")
    return model.dequantize(dtype=dtype)


def _check_merge_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str) and dtype.lower() in {"4bit", "int4", "nf4", "fp4", "8bit", "int8"}:
        dtype = torch.uint8
    dtype = _dtype(dtype)
    if dtype not in MERGE_DTYPES:
        raise ValueError(
            f"cannot merge a QLoRA adapter into {dtype} weights: merging into 4/8-bit weights "
            "re-quantises W + BA and rounds the small update away. Merge into a dequantised "
            "float32, bfloat16 or float16 base (the default, float32), then quantise the merged "
            "model again for serving if you must."
        )
    return dtype


def merge_qlora(peft_model, dtype: torch.dtype | str = torch.float32) -> nn.Module:
    """Merge a QLoRA adapter into the dequantised base (16/32-bit); consumes `peft_model`.

    Returns a plain transformers model with no adapter and no quantisation config, ready for
    `save_pretrained`.
    """
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    dtype = _check_merge_dtype(dtype)
    if not hasattr(peft_model, "peft_config"):
        raise TypeError(f"merge_qlora expects a PeftModel, got {type(peft_model).__name__}")
    adapter = peft_model.active_adapter
    config = peft_model.peft_config[adapter]
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    base = peft_model.unload()  # drop the LoRA layers, keep the 4-bit base
    if is_quantized_model(base):
        base = dequantize_model(base, dtype)
    base = base.to(dtype)
    config.inference_mode = True
    rebuilt = get_peft_model(base, config)
    set_peft_model_state_dict(rebuilt, state)
    for param in rebuilt.parameters():
        param.data = param.data.to(dtype)
    return rebuilt.merge_and_unload()
