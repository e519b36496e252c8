"""Load the model and tokenizer a recipe names, and prepare them for its tuning method.

Notable choices:
- Weights load from safetensors only and `trust_remote_code` stays off unless the recipe sets
  it: a recipe pointing at a hub repo cannot run that repo's code or unpickle its files.
- LoRA / DoRA / QLoRA go through PEFT (`peft_config_for`); the from-scratch adapters of
  `dojo.adapters` exist to teach and are checked against PEFT in the tests.
- Freeze-tuning trains only the last N decoder blocks and the final norm
  (`dojo.adapters.freeze_all_but_last`).
"""

from __future__ import annotations

import torch

from dojo.train.config import RunConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(config: RunConfig):
    """The tokenizer, with a pad token distinct from eos where the model lacks one."""
    from transformers import AutoTokenizer

    m = config.model
    tokenizer = AutoTokenizer.from_pretrained(
        m.model_name_or_path,
        revision=m.model_revision,
        trust_remote_code=config.trainer.trust_remote_code,
    )
    if tokenizer.pad_token is None:
        # pad == eos would mask eos out of the labels and the model would never learn to stop
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer


def quantization_config(config: RunConfig):
    """A BitsAndBytesConfig for 4-bit (qlora / load_in_4bit) or 8-bit weights, else None."""
    m, tuning = config.model, config.dojo.tuning
    if not (tuning == "qlora" or m.load_in_4bit or m.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    if m.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=m.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=m.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=DTYPES.get(m.dtype or "float32", torch.float32),
        bnb_4bit_quant_storage=DTYPES.get(m.bnb_4bit_quant_storage or m.dtype, torch.uint8),
    )


def load_model(config: RunConfig, tokenizer, for_reward: bool = False):
    """The model with the recipe's precision and quantization, its tuning applied."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    m = config.model
    kwargs = dict(
        revision=m.model_revision,
        trust_remote_code=config.trainer.trust_remote_code,
        use_safetensors=True,
        dtype=DTYPES.get(m.dtype or "float32", "auto"),
        attn_implementation=m.attn_implementation,
        quantization_config=quantization_config(config),
    )
    if kwargs["quantization_config"] is not None:  # bitsandbytes places weights as it loads
        from accelerate import PartialState

        cuda = torch.cuda.is_available() and not config.trainer.use_cpu
        kwargs["device_map"] = {"": PartialState().local_process_index} if cuda else "cpu"
    if for_reward:
        model = AutoModelForSequenceClassification.from_pretrained(
            m.model_name_or_path, num_labels=1, **kwargs
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(m.model_name_or_path, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if kwargs["quantization_config"] is not None:
        from peft import prepare_model_for_kbit_training

        for module in model.modules():  # see dojo.adapters.load_quantized: keep the exact
            if hasattr(module, "support_avx512bf16_for_cpu"):  # CPU kernel, train == eval
                module.support_avx512bf16_for_cpu = False
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.trainer.gradient_checkpointing
        )
    if config.dojo.tuning == "freeze":
        from dojo.adapters import freeze_all_but_last

        freeze_all_but_last(model, config.dojo.freeze_trainable_layers, train_extra=["norm"])
    return model


def peft_config_for(config: RunConfig, task_type: str = "CAUSAL_LM"):
    """The PEFT LoraConfig for tuning lora / dora / qlora, or None for full and freeze."""
    tuning, m = config.dojo.tuning, config.model
    if tuning not in ("lora", "dora", "qlora") and not m.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=m.lora_target_modules or "all-linear",
        modules_to_save=m.lora_modules_to_save,
        use_rslora=m.use_rslora,
        use_dora=m.use_dora or tuning == "dora",
        task_type=task_type,
    )
