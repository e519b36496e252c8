"""Load a model for inference: a base model folder or hub id, plus an optional PEFT adapter.

Notable choices:
- An adapter folder names its base (`adapter_config.json`), so `--adapter` alone is enough.
- The tokenizer comes from the adapter folder when it holds one (a `dojo.train` run saves the
  tokenizer it trained with, pad token and chat template included), else from the base.
- Weights load from safetensors only, and on the GPU in bfloat16 when CUDA is available.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter folder was trained on (its `base_model_name_or_path`)."""
    config_path = Path(adapter) / "adapter_config.json"
    if not config_path.exists():
        hint = (
            "; it looks like a full model: pass it as the model instead"
            if (Path(adapter) / "config.json").exists()
            else ""
        )
        raise FileNotFoundError(f"{adapter}: no adapter_config.json, so not a PEFT adapter{hint}")
    base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config_path}: no base_model_name_or_path; pass the base model too")
    return base


def _check_model_path(model: str | Path) -> None:
    path = Path(model)
    looks_local = path.is_absolute() or str(model).startswith(".") or path.exists()
    if looks_local and not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{model}: no config.json there; give a Hugging Face model folder or hub id"
        )


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """`dtype` as a torch dtype; by default bfloat16 on CUDA and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def load_tokenizer(model: str | Path, adapter: str | Path | None = None):
    """The tokenizer saved with the adapter when there is one, else the base model's."""
    from transformers import AutoTokenizer

    source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").exists() else model
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.chat_template:
        raise ValueError(
            f"{source}: the tokenizer has no chat template; attach one "
            "(dojo.chat.apply_template(tokenizer, family)) and save it with the model"
        )
    return tokenizer


def load_for_inference(
    model: str | Path | None = None,
    adapter: str | Path | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
):
    """(model, tokenizer) ready for generation: base weights plus the adapter, in eval mode.

    The adapter stays a separate PEFT layer (so the served model is exactly base + adapter);
    `dojo.infer.merge` folds it into the weights for export.
    """
    from transformers import AutoModelForCausalLM

    if model is None and adapter is None:
        raise ValueError("give a model (folder or hub id), an adapter folder, or both")
    model = model or adapter_base(adapter)
    _check_model_path(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model, adapter)
    net = AutoModelForCausalLM.from_pretrained(
        model, dtype=resolve_dtype(dtype, device), use_safetensors=True
    )
    if len(tokenizer) > net.get_input_embeddings().num_embeddings:
        net.resize_token_embeddings(len(tokenizer))  # as dojo.train did when it added a pad
    if adapter is not None:
        from peft import PeftModel

        adapter_base(adapter)  # a clear error for a folder that is not an adapter
        net = PeftModel.from_pretrained(net, str(adapter))
    return net.to(device).eval(), tokenizer
