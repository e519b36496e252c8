"""One entry for choosing how a Hugging Face model is tuned: full, freeze, LoRA, DoRA or QLoRA.

`dojo.train` and the notebooks call `apply_tuning`; the adapters themselves come from PEFT
(the library), configured by `peft_config_for`, while `dojo.adapters.lora` shows the same maths
from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dojo.adapters.targets import default_target_modules, freeze_all_but_last

TUNINGS = ("full", "freeze", "lora", "dora", "qlora")


def peft_config_for(
    tuning: str = "lora",
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    target_modules: str | Sequence[str] | None = None,
    family: str | None = None,
    rslora: bool = False,
):
    """A `peft.LoraConfig` for "lora" | "dora" | "qlora"; targets: given, else the family's, else all-linear."""
    from peft import LoraConfig

    if tuning not in {"lora", "dora", "qlora"}:
        raise ValueError(f"peft_config_for: tuning={tuning!r} must be 'lora', 'dora' or 'qlora'")
    if not isinstance(r, int) or r <= 0:
        raise ValueError(f"peft_config_for: rank r={r!r} must be a positive integer")
    if target_modules is None:
        target_modules = default_target_modules(family) if family else "all-linear"
    elif not isinstance(target_modules, str):
        target_modules = list(target_modules)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        use_dora=tuning == "dora",
        use_rslora=rslora,
        task_type="CAUSAL_LM",
    )


def apply_tuning(
    model: nn.Module,
    tuning: str = "lora",
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    target_modules: str | Sequence[str] | None = None,
    rslora: bool = False,
    freeze_layers: int = 2,
    gradient_checkpointing: bool = False,
) -> nn.Module:
    """Make `model` trainable the chosen way; returns the model (a PeftModel for adapter tunings).

    "full" trains everything; "freeze" trains the last `freeze_layers` blocks; "lora" / "dora"
    add PEFT adapters; "qlora" expects a model loaded with `quantization_config(4, ...)` and
    prepares it for k-bit training first.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    from dojo.adapters.targets import model_family

    if tuning not in TUNINGS:
        raise ValueError(f"tuning={tuning!r} is not one of {', '.join(TUNINGS)}")
    if tuning == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if tuning == "freeze":
        return freeze_all_but_last(model, freeze_layers)
    if tuning == "qlora":
        if not getattr(model, "is_quantized", False):
            raise ValueError(
                "tuning='qlora' needs a model loaded in 4 bit: "
                "from_pretrained(..., quantization_config=dojo.adapters.quantization_config(4))"
            )
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
    family = None
    if target_modules is None:
        family = model_family(model)
        from dojo.adapters.targets import DEFAULT_TARGET_MODULES

        if family not in DEFAULT_TARGET_MODULES:
            family, target_modules = None, "all-linear"
    config = peft_config_for(tuning, r, alpha, dropout, target_modules, family, rslora)
    return get_peft_model(model, config)


def chat_batch(tokenizer, conversations: Sequence[list[dict]], max_length: int = 128) -> dict:
    """Tokenize chats with the tokenizer's template into one padded causal-LM batch (pad -> -100)."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        add_special_tokens=False,
    )
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": labels,
    }


def train_steps(
    model: nn.Module,
    batch: dict,
    steps: int = 20,
    lr: float = 1e-3,
    optimizer=None,
) -> list[float]:
    """A few plain AdamW steps on one batch (enough to see a method learn); returns the losses."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("train_steps: the model has no trainable parameters")
    optimizer = optimizer or torch.optim.AdamW(params, lr=lr)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses
