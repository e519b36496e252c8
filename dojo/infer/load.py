"""Load a model for inference: a base model folder or hub id, plus an optional PEFT adapter.

Notable choices:
- An adapter folder names its base (`adapter_config.json`), so `--adapter` alone is enough.
- The tokenizer comes from the adapter folder when it holds one (a `dojo.train` run saves the
  tokenizer it trained with, pad token and chat template included), else from the base.
- Weights load from safetensors only, and on the GPU in bfloat16 when CUDA is available.
- Local model paths resolve from the working directory, then the repository root (recipes
  and run folders say `data/models/dojo-tiny`); a missing folder is reported as missing,
  never passed on to the hub as a malformed repo id.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter folder was trained on (its `base_model_name_or_path`)."""
    if not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter folder {adapter} not found")
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


def looks_like_path(model: str | Path) -> bool:
    """Whether `model` names a local folder rather than a hub id (`name` or `org/name`)."""
    text = str(model)
    return (
        isinstance(model, Path)
        or Path(text).expanduser().exists()
        or text.startswith((".", "~", "/", "\\"))
        or text.count("/") > 1
        or "\\" in text
    )


def resolve_model(model: str | Path, named_by: str | None = None) -> str | Path:
    """`model` as an existing model folder (cwd first, then the repository root) or a hub id.

    Recipes and run folders name shipped models relative to the repository
    (`data/models/dojo-tiny`), as `dojo.train` resolves them, so a notebook running in
    `notebooks/` finds them too. A local folder that is missing or holds no model is a clear
    FileNotFoundError: without it, transformers takes a missing folder for a hub id and answers
    with a puzzling "Repo id must be in the form 'repo_name'" error. Hub ids pass unchecked.
    """
    from dojo import paths

    path = Path(str(model)).expanduser()
    if not path.exists() and not path.is_absolute() and (paths.REPO_ROOT / path).exists():
        path = paths.REPO_ROOT / path
    if not looks_like_path(model) and not path.exists():
        return model
    source = f" (named by {named_by})" if named_by else ""
    if not path.exists():
        raise FileNotFoundError(
            f"model folder {model} not found{source}; give an existing Hugging Face model "
            "folder or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    if not (path / "config.json").exists():
        hint = (
            "; it looks like a PEFT adapter: pass it as the adapter instead"
            if (path / "adapter_config.json").exists()
            else ""
        )
        raise FileNotFoundError(
            f"{model}: no config.json there{source}, so not a Hugging Face model folder{hint}"
        )
    return path


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
    if source is model:
        source = resolve_model(model)
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
    named_by = None
    if model is None:
        model, named_by = adapter_base(adapter), f"{adapter}/adapter_config.json"
    model = resolve_model(model, named_by)
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
