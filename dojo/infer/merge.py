"""Fold a PEFT adapter into its base model and export a standalone Hugging Face model.

Notable choices:
- A QLoRA adapter was trained against a 4-bit base, so the merge reproduces *that* model: the
  base is loaded in 4 bit exactly as in training, dequantised to 16/32 bit, and only then is
  W + BA formed (`dojo.adapters.merge_qlora`). Merging into the 4-bit weights would re-quantise
  W + BA and round most of the small update away; it is never done.
- Whether the base was quantised is read from the run folder `dojo.train` wrote
  (`config.yaml`: `tuning: qlora`, `load_in_4bit`, `load_in_8bit`) or from a pre-quantised
  base checkpoint's `quantization_config`; `base_bits=` overrides it.
- The export is checked: the merged model's logits on a probe conversation are compared with
  base + adapter, and the result is written into the exported folder's README.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from dojo.infer.load import adapter_base, load_tokenizer, resolve_dtype, resolve_model

PROBE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 17 + 25? Answer with the number."},
]


def base_bits(adapter: str | Path, model: str | Path | None = None) -> int | None:
    """4 or 8 when the adapter was trained against a quantised base, else None."""
    run_config = Path(adapter).parent / "config.yaml"
    if run_config.exists():
        recipe = yaml.safe_load(run_config.read_text()) or {}
        if recipe.get("load_in_8bit"):
            return 8
        if recipe.get("load_in_4bit") or recipe.get("tuning") == "qlora":
            return 4
    base_config = Path(str(model or adapter_base(adapter))) / "config.json"
    if base_config.exists():
        quant = json.loads(base_config.read_text()).get("quantization_config") or {}
        if quant.get("load_in_4bit"):
            return 4
        if quant.get("load_in_8bit"):
            return 8
    return None


def load_adapted(
    adapter: str | Path,
    model: str | Path | None = None,
    dtype: str | torch.dtype = "float32",
    bits: int | None = None,
):
    """(PeftModel, tokenizer): the base as it was trained against (4/8 bit or not) + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    named_by = None if model else f"{adapter}/adapter_config.json"
    model = model or adapter_base(adapter)
    model = resolve_model(model, named_by)
    tokenizer = load_tokenizer(model, adapter)
    if bits:
        from dojo.adapters.qlora import load_quantized

        net = load_quantized(model, bits=bits, compute_dtype=torch.float32)
    else:
        net = AutoModelForCausalLM.from_pretrained(
            model, dtype=resolve_dtype(dtype, "cpu"), use_safetensors=True
        )
    if len(tokenizer) > net.get_input_embeddings().num_embeddings:
        net.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(net, str(adapter)).eval(), tokenizer


def merge_adapter(peft_model, dtype: str | torch.dtype = "float32"):
    """A plain transformers model with the adapter folded in; consumes `peft_model`.

    A quantised base is dequantised first (to `dtype`), never merged into its 4/8-bit weights.
    """
    from dojo.adapters.qlora import is_quantized_model, merge_qlora

    dtype = resolve_dtype(dtype, "cpu")
    if is_quantized_model(peft_model):
        return merge_qlora(peft_model, dtype=dtype).eval()
    return peft_model.merge_and_unload().to(dtype).eval()


@torch.no_grad()
def probe_logits(model, tokenizer, messages=PROBE) -> torch.Tensor:
    """Logits of `model` on the chat-templated probe conversation, in float32."""
    from dojo.infer.generate import chat_prompt_ids

    ids = chat_prompt_ids(tokenizer, messages).to(model.device)
    return model(input_ids=ids).logits.float().cpu()


def export_merged(
    adapter: str | Path,
    out_dir: str | Path,
    model: str | Path | None = None,
    dtype: str = "float32",
    bits: int | None = None,
) -> dict:
    """Merge `adapter` into its base, save model + tokenizer to `out_dir`, and check the result.

    Returns the check: the largest absolute logit difference between the merged model and
    base + adapter on a probe conversation, and whether greedy next tokens all agree.
    """
    model = str(model or adapter_base(adapter))
    bits = base_bits(adapter, model) if bits is None else bits or None
    peft_model, tokenizer = load_adapted(adapter, model, dtype, bits)
    before = probe_logits(peft_model, tokenizer)
    merged = merge_adapter(peft_model, dtype)
    after = probe_logits(merged, tokenizer)
    check = {
        "base": model,
        "adapter": str(adapter),
        "base_bits": bits or "full precision",
        "dtype": str(dtype),
        "max_abs_logit_diff": float((after - before).abs().max()),
        "same_argmax": bool(torch.equal(after.argmax(-1), before.argmax(-1))),
    }
    out = Path(out_dir)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "merge_check.json").write_text(json.dumps(check, indent=2) + "\n")
    (out / "README.md").write_text(_card(check))
    return check


def _card(check: dict) -> str:
    return (
        f"# Merged model\n\nBase `{check['base']}` with the adapter `{check['adapter']}` folded "
        f"into its weights by `dojo.infer.merge` (base loaded as {check['base_bits']}, merged "
        f"in {check['dtype']}).\n\nCheck against base + adapter on a probe conversation: largest "
        f"logit difference {check['max_abs_logit_diff']:.2e}, greedy tokens "
        f"{'identical' if check['same_argmax'] else 'DIFFERENT'}.\n"
    )
