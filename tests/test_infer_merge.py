"""Merging and exporting adapters: the standalone model computes what base + adapter computed."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from dojo import paths
from dojo.infer.__main__ import main
from dojo.infer.generate import generate_replies
from dojo.infer.load import load_for_inference
from dojo.infer.merge import base_bits, export_merged, probe_logits

HELLO = [{"role": "user", "content": "What is 12 + 7?"}]


def save_random_adapter(base_model, folder, seed=0):
    """A LoRA adapter with non-zero B (init_lora_weights=False), so merging changes the weights."""
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
        task_type="CAUSAL_LM",
    )  # fmt: skip
    peft_model = get_peft_model(base_model, config)
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A run folder like dojo.train writes: runs/<name>/config.yaml and runs/<name>/model/."""
    run = tmp_path_factory.mktemp("sft-lora")
    (run / "config.yaml").write_text("tuning: lora\nload_in_4bit: false\n")
    base = AutoModelForCausalLM.from_pretrained(paths.TINY_MODEL)
    return save_random_adapter(base, run / "model")


def test_exported_model_matches_base_plus_adapter(lora_run, tmp_path):
    check = export_merged(lora_run, tmp_path / "merged")
    assert check["base_bits"] == "full precision"
    assert check["max_abs_logit_diff"] < 1e-4 and check["same_argmax"]

    adapted, tokenizer = load_for_inference(adapter=lora_run, device="cpu")
    merged, merged_tok = load_for_inference(tmp_path / "merged", device="cpu")
    base, _ = load_for_inference(paths.TINY_MODEL, device="cpu")
    torch.testing.assert_close(
        probe_logits(merged, merged_tok), probe_logits(adapted, tokenizer), atol=1e-4, rtol=0
    )
    # the adapter really changed the model, so the equality above is not trivial
    assert (probe_logits(base, tokenizer) - probe_logits(adapted, tokenizer)).abs().max() > 1e-2
    gen = dict(max_new_tokens=12)
    assert generate_replies(merged, merged_tok, [HELLO], **gen) == generate_replies(
        adapted, tokenizer, [HELLO], **gen
    )
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert "adapter_config.json" not in files and "chat_template.jinja" in files
    with safe_open(tmp_path / "merged" / "model.safetensors", "pt") as f:
        assert not any("lora" in k for k in f.keys())  # noqa: SIM118 - safe_open is not a dict
    assert "identical" in (tmp_path / "merged" / "README.md").read_text()


def test_cli_export_writes_the_check(lora_run, tmp_path, capsys):
    main(["export", "--adapter", str(lora_run), "--out", str(tmp_path / "m"), "--dtype",
          "bfloat16"])  # fmt: skip
    check = json.loads(capsys.readouterr().out)
    assert check == json.loads((tmp_path / "m" / "merge_check.json").read_text())
    assert check["dtype"] == "bfloat16" and check["max_abs_logit_diff"] < 0.5
    weights = AutoModelForCausalLM.from_pretrained(tmp_path / "m").model.layers[0].self_attn
    assert weights.q_proj.weight.dtype == torch.bfloat16


def test_base_bits_read_from_the_run_folder(tmp_path, lora_run):
    assert base_bits(lora_run) is None
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(paths.TINY_MODEL)})
    )
    for recipe, bits in [("tuning: qlora\n", 4), ("load_in_8bit: true\n", 8)]:
        (tmp_path / "config.yaml").write_text(recipe)
        assert base_bits(tmp_path / "model") == bits


@pytest.mark.slow
def test_qlora_adapter_is_merged_into_the_dequantised_4bit_base(tmp_path):
    pytest.importorskip("bitsandbytes")
    from dojo.adapters.qlora import load_quantized

    run = tmp_path / "qlora-run"
    run.mkdir()
    (run / "config.yaml").write_text("tuning: qlora\n")
    quantized = load_quantized(paths.TINY_MODEL, bits=4, compute_dtype=torch.float32)
    adapter = save_random_adapter(quantized, run / "model")
    check = export_merged(adapter, tmp_path / "merged")
    assert check["base_bits"] == 4
    assert check["max_abs_logit_diff"] < 1e-3 and check["same_argmax"]

    merged, tokenizer = load_for_inference(tmp_path / "merged", device="cpu")
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    # it reproduces the 4-bit model the adapter was trained on, not the full-precision base
    full_plus_adapter, _ = load_for_inference(adapter=adapter, device="cpu")
    gap = probe_logits(merged, tokenizer) - probe_logits(full_plus_adapter, tokenizer)
    assert gap.abs().max() > 10 * check["max_abs_logit_diff"]
