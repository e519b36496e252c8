"""dojo-tiny: the shipped model loads offline, is what its card says, and its recipe rebuilds it."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dojo import paths
from dojo.chat.masks import tokenize_chat
from dojo.models import Transformer, tiny, to_hf


def test_shipped_model_is_small_safetensors():
    files = {p.name: p.stat().st_size for p in paths.TINY_MODEL.iterdir()}
    assert "model.safetensors" in files and not any(n.endswith(".bin") for n in files)
    assert sum(files.values()) <= 20 * 2**20, files
    assert {"README.md", "tokenizer.json", "recipe.json", "loss.json"} <= files.keys()


def test_tokenizer_specials(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token is None
    # digits are single tokens, so arithmetic is learnable at this size
    assert tok.tokenize("1234") == ["1", "2", "3", "4"]
    assert "{% generation %}" in tok.chat_template


def test_chat_template_masks_reply_and_eos(tiny_tokenizer):
    messages = [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5"},
    ]
    out = tokenize_chat(tiny_tokenizer, messages)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tiny_tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "2 + 3 = 5<|im_end|>"


def test_config_matches_recipe(tiny_model):
    record = json.loads((paths.TINY_MODEL / "recipe.json").read_text())
    recipe, cfg = record["recipe"], tiny_model.config
    assert cfg.model_type == "llama" and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (
        recipe["hidden_size"],
        recipe["num_hidden_layers"],
    )
    assert sum(p.numel() for p in tiny_model.parameters()) == record["stats"]["parameters"]


def test_card_states_the_measured_numbers():
    record = json.loads((paths.TINY_MODEL / "recipe.json").read_text())
    card = (paths.TINY_MODEL / "README.md").read_text()
    assert "python -m dojo.models.tiny" in card
    assert f"{record['stats']['final_loss']:.3f}" in card
    sft = record["sft_check"]
    assert sft["accuracy_after"] - sft["accuracy_before"] >= 0.30
    assert f"{sft['accuracy_after'] * 100:.1f}%" in card


def test_base_model_continues_arithmetic(tiny_model, tiny_tokenizer):
    # the card measures 87% on 200 problems; 50 problems leave room for sampling noise
    assert tiny.raw_arithmetic_accuracy(tiny_model, tiny_tokenizer, n=50) >= 0.8


def test_chat_model_answers_held_out_problems_in_chat_format():
    from dojo.data import load
    from dojo.data.synthetic import extract_answer
    from dojo.infer.generate import generate_replies

    model = AutoModelForCausalLM.from_pretrained(paths.TINY_CHAT_MODEL).eval()
    tokenizer = AutoTokenizer.from_pretrained(paths.TINY_CHAT_MODEL)
    rows = load(paths.DATA_DIR / "prompts" / "arithmetic_eval.jsonl", "prompt", max_samples=50)
    replies = generate_replies(model, tokenizer, rows["prompt"], max_new_tokens=16)
    correct = sum(extract_answer(r) == str(a) for r, a in zip(replies, rows["answer"]))
    assert correct / len(replies) >= 0.7, list(zip(replies, rows["answer"]))[:5]


def test_recipe_trains_our_transformer_and_ships_it_as_llama(tiny_tokenizer):
    recipe = tiny.TinyRecipe(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = tiny.build_model(recipe, tiny_tokenizer)
    assert isinstance(model, Transformer)
    hf = to_hf(model)
    assert hf.config.model_type == "llama" and hf.config.tie_word_embeddings
    assert (hf.config.eos_token_id, hf.config.pad_token_id, hf.config.bos_token_id) == (
        tiny_tokenizer.eos_token_id,
        tiny_tokenizer.pad_token_id,
        None,
    )
    ids = torch.randint(0, len(tiny_tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_recipe_rebuilds_a_loadable_model(tmp_path):
    recipe = tiny.TinyRecipe(
        vocab_size=400,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        batch_size=4,
        steps=4,
        warmup_steps=1,
        arithmetic_lines=500,
    )
    stats = tiny.build(tmp_path, recipe)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert len(json.loads((tmp_path / "loss.json").read_text())) == 4
    assert stats["parameters"] == sum(p.numel() for p in model.parameters())
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert "Not measured yet" in (tmp_path / "README.md").read_text()
