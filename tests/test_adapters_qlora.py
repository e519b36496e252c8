"""QLoRA for real on CPU: 4-bit NF4 base (bitsandbytes) + PEFT LoRA; training; merge; errors."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dojo import paths
from dojo.adapters import (
    add_lora,
    load_quantized,
    merge_lora,
    merge_qlora,
    prepare_qlora,
    quantization_config,
)

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """dojo-tiny when it is shipped, else a random tiny Llama saved to a temporary folder."""
    if (paths.TINY_MODEL / "config.json").exists():
        return paths.TINY_MODEL
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=1,
        pad_token_id=0,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def batch(vocab: int) -> torch.Tensor:
    return torch.randint(2, min(vocab, 250), (4, 24), generator=torch.Generator().manual_seed(0))


def test_quantization_config_choices():
    four = quantization_config(4, "bfloat16")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    assert four.bnb_4bit_use_double_quant and four.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(8).load_in_8bit
    with pytest.raises(ValueError, match="4 or 8"):
        quantization_config(3)


@pytest.mark.slow
def test_qlora_trains_and_merges_into_a_dequantised_base(model_dir):
    model = load_quantized(model_dir, bits=4, compute_dtype=torch.float32)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    peft_model = prepare_qlora(model, r=8, alpha=16, gradient_checkpointing=False)
    ids = batch(model.config.vocab_size)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(8):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses

    peft_model.eval()
    prompt = ids[:1, :6]
    gen = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        adapted_logits = peft_model(input_ids=ids).logits
        adapted_tokens = peft_model.generate(input_ids=prompt, **gen)
    with pytest.raises(ValueError, match="re-quantises"):
        merge_qlora(peft_model, dtype="nf4")
    merged = merge_qlora(peft_model, dtype=torch.float32)
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert getattr(merged.config, "quantization_config", None) is None
    with torch.no_grad():
        # x(W + sBA) vs xW + s(xA)B: the same maths summed in a different order (float32)
        merged_logits = merged(input_ids=ids).logits
        torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-4, rtol=1e-5)
        assert torch.equal(merged.generate(input_ids=prompt, **gen), adapted_tokens)


@pytest.mark.slow
def test_merging_into_4bit_weights_is_refused(model_dir):
    model = load_quantized(model_dir, bits=4, compute_dtype=torch.float32)
    add_lora(model, r=4, target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="4-/8-bit quantised weights"):
        merge_lora(model)
