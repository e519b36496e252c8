"""Profiles: one notebook, two machines.

`cpu` runs the shipped dojo-tiny model on shipped data in minutes on a 2-core laptop (what CI
executes); `gpu` runs a real small chat model on hub datasets in bf16. `DOJO_PROFILE` overrides
the automatic choice (gpu when CUDA is available, else cpu).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

from dojo import paths


@dataclass(frozen=True)
class Profile:
    """The model, data and sizes a notebook or recipe uses on one kind of machine."""

    name: str
    model: str  # base model: a local folder or a hub id
    chat_model: str  # an instruction-tuned starting point for DPO / GRPO
    device: str
    dtype: str  # "float32" | "bfloat16"
    attn_implementation: str  # "sdpa" | "flash_attention_2"
    datasets: dict[str, str] = field(default_factory=dict)  # kind -> local path or hub id
    max_steps: int = 200  # training steps a notebook runs
    batch_size: int = 16
    max_length: int = 256
    eval_samples: int = 100  # held-out problems scored before/after training


def _cpu() -> Profile:
    data = paths.DATA_DIR
    return Profile(
        name="cpu",
        model=str(paths.TINY_MODEL),
        chat_model=str(paths.TINY_CHAT_MODEL),
        device="cpu",
        dtype="float32",
        attn_implementation="sdpa",
        datasets={
            "sft": str(data / "sft" / "arithmetic_train.jsonl"),
            "sft_eval": str(data / "sft" / "arithmetic_eval.jsonl"),
            "preference": str(data / "preference"),
            "kto": str(data / "kto"),
            "prompts": str(data / "prompts"),
            "pretrain": str(data / "pretrain"),
        },
    )


def _gpu() -> Profile:
    try:
        import flash_attn  # noqa: F401

        attn = "flash_attention_2"
    except ImportError:
        attn = "sdpa"
    return Profile(
        name="gpu",
        model="Qwen/Qwen2.5-0.5B",
        chat_model="Qwen/Qwen2.5-0.5B-Instruct",
        device="cuda",
        dtype="bfloat16",
        attn_implementation=attn,
        datasets={
            "sft": "HuggingFaceH4/ultrachat_200k",
            "preference": "trl-lib/ultrafeedback_binarized",
            "kto": "trl-lib/kto-mix-14k",
            "prompts": "openai/gsm8k",
            "pretrain": "wikitext",
        },
        max_steps=500,
        batch_size=8,
        max_length=1024,
        eval_samples=200,
    )


PROFILES = {"cpu": _cpu, "gpu": _gpu}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def profile(name: str | None = None) -> Profile:
    """Resolve the profile: `name`, else `$DOJO_PROFILE`, else gpu with CUDA and cpu without."""
    name = name or os.environ.get("DOJO_PROFILE") or ("gpu" if _cuda_available() else "cpu")
    if name not in PROFILES:
        close = difflib.get_close_matches(name, PROFILES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        source = "DOJO_PROFILE" if name == os.environ.get("DOJO_PROFILE") else "profile"
        raise ValueError(
            f"{source}={name!r} is not a profile; known profiles: {', '.join(PROFILES)}{hint}"
        )
    return PROFILES[name]()
