"""The from-scratch transformer against Hugging Face: each piece, whole models, both directions."""

import random

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
)
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper
from transformers.models.llama import modeling_llama as hf_llama

from dojo.models import (
    GroupedQueryAttention,
    KVCache,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    Transformer,
    TransformerConfig,
    apply_rope,
    config_from_hf,
    from_hf,
    to_hf,
)
from dojo.models.sampling import top_k_filter, top_p_filter

TOL = 1e-4
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}
ROPES = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "llama3": LLAMA3,
}


def hf_config(cls=LlamaConfig, kv_heads=2, heads=4, rope=None, theta=10000.0, **kw):
    """A tiny HF config; rope is our rope_scaling dict (None = default)."""
    rope_parameters = {**(rope or {"rope_type": "default"}), "rope_theta": theta}
    return cls(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=88,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=16,
        rope_parameters=rope_parameters,
        **kw,
    )


def random_hf(cls, config, seed=0):
    """An HF model with all weights random (norm gains and biases too, so mistakes show)."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def ids(batch=2, seq=20, vocab=101, seed=1):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def set_attention(model, implementation):
    for block in model.layers:
        block.self_attn.implementation = implementation


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(hidden_size=100, num_attention_heads=3), "not divisible by num_attention_heads=3"),
        (dict(num_attention_heads=4, num_key_value_heads=3), "does not divide num_attention_heads"),
        (dict(num_experts=4, num_experts_per_tok=5), "num_experts_per_tok=5"),
        (dict(hidden_size=60, num_attention_heads=4, head_dim=15), "head_dim=15 is odd"),
        (dict(rope_scaling={"rope_type": "yarnish"}), "rope_type='yarnish' is not supported"),
        (dict(rope_scaling={"rope_type": "linear"}), "needs ['factor']"),
        (dict(attn_implementation="flash"), "use 'sdpa' or 'explicit'"),
        (dict(vocab_size=0), "vocab_size=0 must be > 0"),
    ],
)
def test_bad_config_fails_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TransformerConfig(**kwargs)


def test_config_defaults_fill_in():
    config = TransformerConfig(hidden_size=64, num_attention_heads=8)
    assert config.head_dim == 8 and config.num_key_value_heads == 8
    assert config.rope_scaling == {"rope_type": "default"}
    # Old HF spelling "type" is accepted.
    assert TransformerConfig(rope_scaling={"type": "linear", "factor": 2.0}).rope_scaling == {
        "rope_type": "linear",
        "factor": 2.0,
    }


# ---------------------------------------------------------------- pieces vs HF


def test_rmsnorm_matches_hf():
    ours, theirs = RMSNorm(32, eps=1e-5), hf_llama.LlamaRMSNorm(32, eps=1e-5)
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
    x = torch.randn(3, 5, 32) * 4
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("rope", list(ROPES))
def test_rotary_tables_match_hf(rope):
    hf_cfg = hf_config(rope=ROPES[rope], theta=500.0)
    ours = RotaryEmbedding(config_from_hf(hf_cfg))
    theirs = hf_llama.LlamaRotaryEmbedding(hf_cfg)
    # 40 positions > max_position_embeddings=16, so dynamic scaling kicks in.
    positions = torch.arange(40)[None]
    cos, sin = ours(positions)
    hf_cos, hf_sin = theirs(torch.zeros(1), positions)
    torch.testing.assert_close(cos, hf_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, hf_sin, atol=1e-6, rtol=0)
    q, k = torch.randn(2, 4, 40, 16), torch.randn(2, 2, 40, 16)
    hf_q, hf_k = hf_llama.apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    torch.testing.assert_close(apply_rope(q, cos, sin), hf_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rope(k, cos, sin), hf_k, atol=1e-6, rtol=0)


def test_scaled_rope_differs_from_default():
    positions = torch.arange(12)[None]
    tables = {
        name: RotaryEmbedding(TransformerConfig(rope_scaling=r))(positions)[0]
        for name, r in ROPES.items()
        if name != "dynamic"
    }
    assert not torch.allclose(tables["default"], tables["linear"])


def test_swiglu_matches_hf():
    cfg = hf_config()
    theirs = random_hf(lambda c: hf_llama.LlamaMLP(c), cfg)
    ours = SwiGLU(64, 88)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 7, 64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("implementation", ["sdpa", "explicit"])
def test_attention_matches_hf(kv_heads, implementation):
    cfg = hf_config(kv_heads=kv_heads, attention_bias=True)
    cfg._attn_implementation = "sdpa"  # standalone HF attention: causal through SDPA's flag
    theirs = random_hf(lambda c: hf_llama.LlamaAttention(c, layer_idx=0), cfg)
    config = config_from_hf(cfg)
    config.attn_implementation = implementation
    ours = GroupedQueryAttention(config, layer_idx=0)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 9, 64)
    cos, sin = RotaryEmbedding(config)(torch.arange(9)[None].expand(2, -1))
    expected, _ = theirs(x, position_embeddings=(cos, sin), attention_mask=None)
    torch.testing.assert_close(ours(x, cos, sin), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [None, 3])
def test_explicit_attention_equals_sdpa_with_cache(window):
    config = TransformerConfig(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, sliding_window=window
    )
    torch.manual_seed(0)
    sdpa = GroupedQueryAttention(config, 0)
    explicit = GroupedQueryAttention(config, 0)
    explicit.load_state_dict(sdpa.state_dict())
    explicit.implementation = "explicit"
    rotary = RotaryEmbedding(config)
    x = torch.randn(2, 10, 32)
    caches = {"sdpa": KVCache(), "explicit": KVCache()}
    # A prefill of 6 positions, then 4 one-token steps, through both paths.
    for start, stop in [(0, 6), (6, 7), (7, 8), (8, 9), (9, 10)]:
        cos, sin = rotary(torch.arange(start, stop)[None].expand(2, -1))
        step = x[:, start:stop]
        a = sdpa(step, cos, sin, caches["sdpa"])
        b = explicit(step, cos, sin, caches["explicit"])
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert caches["sdpa"].seq_len == 10


# ---------------------------------------------------------------- whole models vs HF

CASES = {
    "llama-gqa2": (LlamaConfig, LlamaForCausalLM, dict(kv_heads=2)),
    "llama-mha-tied": (LlamaConfig, LlamaForCausalLM, dict(kv_heads=4, tie_word_embeddings=True)),
    "llama-mqa-bias": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(kv_heads=1, attention_bias=True, mlp_bias=True),
    ),
    "llama-8heads-gqa4": (LlamaConfig, LlamaForCausalLM, dict(heads=8, kv_heads=2)),
    "llama-linear": (LlamaConfig, LlamaForCausalLM, dict(rope=ROPES["linear"])),
    "llama-dynamic": (LlamaConfig, LlamaForCausalLM, dict(rope=ROPES["dynamic"])),
    "llama-llama3": (LlamaConfig, LlamaForCausalLM, dict(rope=LLAMA3, theta=500000.0)),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(kv_heads=2)),
    "qwen2-tied-mqa": (Qwen2Config, Qwen2ForCausalLM, dict(kv_heads=1, tie_word_embeddings=True)),
    "mistral": (MistralConfig, MistralForCausalLM, dict(kv_heads=2)),
    "mistral-window": (MistralConfig, MistralForCausalLM, dict(kv_heads=1, sliding_window=5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf_both_directions(case):
    config_cls, model_cls, kw = CASES[case]
    hf = random_hf(model_cls, hf_config(config_cls, **kw))
    x = ids(seq=24)  # longer than max_position_embeddings: exercises dynamic rope
    expected = hf(x).logits
    ours = from_hf(hf)
    assert (ours(x).logits - expected).abs().max() <= TOL
    set_attention(ours, "explicit")
    assert (ours(x).logits - expected).abs().max() <= TOL
    back = to_hf(ours)
    assert type(back) is model_cls
    assert (back(x).logits - expected).abs().max() <= TOL


FAMILY_CLASSES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


def random_dense_case(seed):
    """A random HF config: family, head counts, GQA ratio, head width, tying, RoPE, biases, window."""
    rng = random.Random(seed)
    family = rng.choice(list(FAMILY_CLASSES))
    heads = rng.choice([2, 4, 8])
    kv_heads = rng.choice([d for d in (1, 2, 4, 8) if heads % d == 0])
    head_dim = rng.choice([8, 16])
    kw = dict(
        vocab_size=rng.choice([61, 128]),
        hidden_size=heads * head_dim if family == "qwen2" else rng.choice([32, 48, 64]),
        intermediate_size=rng.choice([40, 96]),
        num_hidden_layers=rng.choice([1, 2, 3]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=16,
        tie_word_embeddings=rng.random() < 0.5,
        rms_norm_eps=rng.choice([1e-6, 1e-5]),
        rope_parameters={
            **(rng.choice(list(ROPES.values())) or {"rope_type": "default"}),
            "rope_theta": rng.choice([10000.0, 500000.0]),
        },
    )
    if family != "qwen2":
        kw["head_dim"] = head_dim
    if family == "llama":
        kw.update(attention_bias=rng.random() < 0.5, mlp_bias=rng.random() < 0.5)
    if family == "mistral":
        kw["sliding_window"] = rng.choice([None, 3, 7])
    config_cls, model_cls = FAMILY_CLASSES[family]
    return model_cls, config_cls(**kw), rng.randint(4, 24)


@pytest.mark.parametrize("seed", range(8))
def test_random_configs_match_hf_logits_and_generation(seed):
    model_cls, config, seq = random_dense_case(seed)
    hf = random_hf(model_cls, config, seed)
    x = ids(seq=seq, vocab=config.vocab_size, seed=seed)
    expected = hf(x).logits
    ours = from_hf(hf)
    assert (ours(x).logits - expected).abs().max() <= TOL, config
    assert (to_hf(ours)(x).logits - expected).abs().max() <= TOL, config
    hf.generation_config.eos_token_id = None
    prompt = x[:, :4]
    reference = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False
    )
    assert torch.equal(ours.generate(prompt, 8), reference), config
    assert torch.equal(ours.generate(prompt, 8, use_cache=False), reference), config


def test_to_hf_of_a_fresh_model_round_trips():
    ours = Transformer(
        TransformerConfig(
            vocab_size=101,
            hidden_size=32,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_hidden_layers=2,
            tie_word_embeddings=True,
        )
    )
    hf = to_hf(ours)
    assert hf.config.tie_word_embeddings
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    x = ids()
    assert (hf(x).logits - ours(x).logits).abs().max() <= TOL
    assert (from_hf(hf)(x).logits - ours(x).logits).abs().max() <= TOL


def test_loss_matches_hf():
    hf = random_hf(LlamaForCausalLM, hf_config())
    x = ids()
    labels = x.clone()
    labels[:, :5] = -100
    torch.testing.assert_close(from_hf(hf)(x, labels=labels).loss, hf(x, labels=labels).loss)


def test_right_padding_mask_matches_hf():
    hf = random_hf(LlamaForCausalLM, hf_config())
    x = ids()
    mask = torch.ones_like(x)
    mask[0, 15:] = 0
    ours = from_hf(hf)
    expected = hf(x, attention_mask=mask).logits
    got = ours(x, attention_mask=mask).logits
    assert (got[mask.bool()] - expected[mask.bool()]).abs().max() <= TOL


@pytest.mark.parametrize("case", ["llama-gqa2", "qwen2", "mistral-window", "llama-llama3"])
def test_greedy_generation_matches_hf_with_and_without_cache(case):
    config_cls, model_cls, kw = CASES[case]
    hf = random_hf(model_cls, hf_config(config_cls, **kw))
    hf.generation_config.eos_token_id = None  # always run all steps
    prompt = ids(batch=2, seq=6)
    expected = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=14,
        do_sample=False,
        pad_token_id=0,
    )
    ours = from_hf(hf)
    assert torch.equal(ours.generate(prompt, max_new_tokens=14), expected)
    assert torch.equal(ours.generate(prompt, max_new_tokens=14, use_cache=False), expected)


def test_generation_stops_at_eos():
    ours = Transformer(
        TransformerConfig(vocab_size=50, hidden_size=32, num_attention_heads=2, num_hidden_layers=1)
    )
    prompt = ids(batch=1, seq=3, vocab=50)
    first = ours.generate(prompt, max_new_tokens=1)[0, -1].item()
    out = ours.generate(prompt, max_new_tokens=10, eos_token_id=first)
    assert out.shape[1] == 4 and out[0, -1].item() == first


def test_time_generation_times_both_arms_and_checks_they_agree():
    from dojo.models.kv_cache import time_generation

    ours = Transformer(
        TransformerConfig(vocab_size=50, hidden_size=32, num_attention_heads=2, num_hidden_layers=1)
    )
    seconds = time_generation(ours, ids(batch=1, seq=3, vocab=50), [2, 5], repeats=1)
    assert set(seconds) == {"with cache", "without cache"}
    assert all(len(v) == 2 and min(v) > 0 for v in seconds.values())

    class Broken(Transformer):  # a cache that changes the output must be caught
        def generate(self, prompt, n, use_cache=True):
            out = super().generate(prompt, n, use_cache=use_cache)
            return out + int(use_cache)

    broken = Broken(ours.config)
    with pytest.raises(AssertionError, match="differ with and without the cache"):
        time_generation(broken, ids(batch=1, seq=3, vocab=50), [2], repeats=1)


def test_sampling_filters_match_hf():
    logits = torch.randn(4, 50)
    torch.testing.assert_close(top_k_filter(logits, 7), TopKLogitsWarper(7)(None, logits.clone()))
    torch.testing.assert_close(
        top_p_filter(logits, 0.8), TopPLogitsWarper(0.8)(None, logits.clone())
    )


def test_sampling_is_seeded_and_respects_top_k():
    ours = Transformer(
        TransformerConfig(vocab_size=50, hidden_size=32, num_attention_heads=2, num_hidden_layers=1)
    )
    prompt = ids(batch=2, seq=3, vocab=50)
    run = [
        ours.generate(
            prompt, 8, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(s)
        )
        for s in (0, 1)
    ]
    greedy = ours.generate(prompt, 8)
    assert torch.equal(run[0], greedy) and torch.equal(run[1], greedy)  # top_k=1 is greedy
    a = ours.generate(
        prompt, 8, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(3)
    )
    b = ours.generate(
        prompt, 8, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "target", "message"),
    [
        (dict(qkv_bias=True), "llama", "use 'qwen2'"),
        (dict(sliding_window=4), "qwen2", "sliding window"),
        (dict(), "mixtral", "no experts"),
        (dict(), "gpt2", "not supported"),
    ],
)
def test_to_hf_refuses_inexpressible_targets(kwargs, target, message):
    ours = Transformer(
        TransformerConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, **kwargs)
    )
    with pytest.raises(ValueError, match=message):
        to_hf(ours, target)


# ---------------------------------------------------------------- mixture-of-experts models

MOE_CASES = {
    "mixtral": (
        MixtralConfig,
        MixtralForCausalLM,
        dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=48, sliding_window=7),
    ),
    "qwen2_moe": (
        Qwen2MoeConfig,
        Qwen2MoeForCausalLM,
        dict(
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=40,
            shared_expert_intermediate_size=56,
            intermediate_size=72,
            norm_topk_prob=False,
            mlp_only_layers=[1],
            num_hidden_layers=3,
        ),
    ),
}


def random_moe_hf(case):
    config_cls, model_cls, kw = MOE_CASES[case]
    kw = {"num_hidden_layers": 2, **kw}
    config = config_cls(
        vocab_size=101,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **kw,
    )
    return random_hf(model_cls, config)


@pytest.mark.parametrize("case", list(MOE_CASES))
def test_moe_models_match_hf_both_directions(case):
    hf = random_moe_hf(case)
    x = ids(seq=12)
    expected = hf(x, labels=x, output_router_logits=True)
    ours = from_hf(hf)
    assert sum(block.is_moe for block in ours.layers) == 2  # qwen2_moe: layer 1 stays dense
    out = ours(x, labels=x)
    assert (out.logits - expected.logits).abs().max() <= TOL
    # Same router logits per MoE layer, same auxiliary loss, same total loss (LM + coef * aux).
    for mine, theirs in zip(out.router_logits, expected.router_logits):
        assert (mine - theirs).abs().max() <= TOL
    torch.testing.assert_close(out.aux_loss, expected.aux_loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, expected.loss, atol=1e-5, rtol=0)
    back = to_hf(ours)
    assert type(back) is type(hf)
    assert (back(x).logits - expected.logits).abs().max() <= TOL


@pytest.mark.parametrize("case", list(MOE_CASES))
def test_moe_greedy_generation_matches_hf(case):
    hf = random_moe_hf(case)
    hf.generation_config.eos_token_id = None  # run all 8 steps (Mixtral's default eos is 2)
    prompt = ids(batch=2, seq=4)
    expected = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
    )
    assert torch.equal(from_hf(hf).generate(prompt, max_new_tokens=8), expected)


def test_from_hf_on_a_sparse_block_gives_the_moe_layer():
    from dojo.models.moe import SparseMoE, hf_moe_forward

    hf = random_moe_hf("qwen2_moe")
    block = hf.model.layers[0].mlp
    ours = from_hf(block)
    assert isinstance(ours, SparseMoE)
    h = torch.randn(2, 5, 64)
    out, (hf_out, hf_logits) = ours(h), hf_moe_forward(block, h)
    assert (out - hf_out).abs().max() <= TOL
    assert (ours.last_router_logits - hf_logits).abs().max() <= TOL


# ---------------------------------------------------------------- the notebook's check helpers


def test_piece_checks_are_all_close():
    from dojo.models.hf_check import check_pieces_against_hf

    rows = check_pieces_against_hf()
    assert len(rows) == 8 and all(r["max |diff|"] <= 1e-5 for r in rows), rows


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "mixtral", "qwen2_moe"])
def test_check_against_hf_each_family(family):
    from dojo.models.hf_check import check_against_hf

    row = check_against_hf(family, seq_len=16)
    assert row["hf class"].lower().startswith(family.replace("_", ""))
    assert row["from_hf max |diff|"] <= TOL and row["to_hf max |diff|"] <= TOL
