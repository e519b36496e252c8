"""Checking the from-scratch models against Hugging Face, for the chapter notebooks.

`random_hf_model(family)` builds a tiny HF model of one family with every weight random (norm
gains and biases too, which HF initialises to 1 and 0 and which would hide a missing term);
`check_against_hf` converts it with `from_hf`, converts ours back with `to_hf`, and reports the
largest logit differences in both directions. The tests assert the same with a tolerance.
"""

from __future__ import annotations

from typing import Any

import torch

from dojo.models.convert import from_hf, to_hf

# Tiny configs per family: GQA everywhere, plus what makes the family itself (biases, window,
# experts, a shared expert, a dense layer among sparse ones).
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": dict(
        num_key_value_heads=2,
        rope_parameters={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
            "rope_theta": 500000.0,
        },
    ),
    "qwen2": dict(num_key_value_heads=1, tie_word_embeddings=True),
    "mistral": dict(num_key_value_heads=2, sliding_window=8),
    "mixtral": dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(
        num_key_value_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=48,
        shared_expert_intermediate_size=64,
        norm_topk_prob=False,
    ),
}


# RoPE scalings checked piece by piece (tables for 40 positions, trained range 16).
FAMILY_ROPES = {
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "llama3": {**FAMILY_CONFIGS["llama"]["rope_parameters"], "original_max_position_embeddings": 8},
}


def random_hf_model(family: str, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """A tiny HF `...ForCausalLM` of `family` (see FAMILY_CONFIGS) with all weights N(0, 0.1)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in FAMILY_CONFIGS:
        raise ValueError(f"random_hf_model: family {family!r}; use one of {list(FAMILY_CONFIGS)}")
    kwargs = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    kwargs.update(FAMILY_CONFIGS[family], **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def check_against_hf(family: str, seq_len: int = 32, seed: int = 0) -> dict[str, Any]:
    """Max |logit difference| of `from_hf(hf)` and of `to_hf(from_hf(hf))` against `hf`."""
    hf = random_hf_model(family, seed)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, hf.config.vocab_size, (2, seq_len), generator=generator)
    ours = from_hf(hf)
    back = to_hf(ours)
    with torch.no_grad():
        expected = hf(ids).logits
        row = {
            "family": family,
            "hf class": type(hf).__name__,
            "parameters": sum(p.numel() for p in hf.parameters()),
            "from_hf max |diff|": (ours(ids).logits - expected).abs().max().item(),
            "to_hf max |diff|": (back(ids).logits - expected).abs().max().item(),
        }
    return row


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def check_pieces_against_hf(seed: int = 0) -> list[dict[str, Any]]:
    """Each building block next to its HF Llama counterpart, same weights: max |output diff|."""
    from transformers import LlamaConfig
    from transformers.models.llama import modeling_llama as hf

    from dojo.models.attention import GroupedQueryAttention
    from dojo.models.convert import config_from_hf
    from dojo.models.mlp import SwiGLU
    from dojo.models.norm import RMSNorm
    from dojo.models.rope import RotaryEmbedding, apply_rope

    torch.manual_seed(seed)
    rows = []
    norm, hf_norm = RMSNorm(64, 1e-5), hf.LlamaRMSNorm(64, 1e-5)
    hf_norm.weight.normal_()
    norm.load_state_dict(hf_norm.state_dict())
    x = torch.randn(2, 40, 64)
    rows.append(
        {"piece": "RMSNorm", "HF": "LlamaRMSNorm", "max |diff|": _diff(norm(x), hf_norm(x))}
    )
    positions = torch.arange(40)[None]  # beyond max_position_embeddings=16: dynamic scaling acts
    for rope in (None, *FAMILY_ROPES.values()):
        hf_config = _llama_config(LlamaConfig, rope)
        cos, sin = RotaryEmbedding(config_from_hf(hf_config))(positions)
        hf_cos, hf_sin = hf.LlamaRotaryEmbedding(hf_config)(x, positions)
        q = torch.randn(1, 4, 40, 16)
        hf_q, _ = hf.apply_rotary_pos_emb(q, q, hf_cos, hf_sin)
        name = (rope or {}).get("rope_type", "default")
        diff = max(_diff(cos, hf_cos), _diff(sin, hf_sin), _diff(apply_rope(q, cos, sin), hf_q))
        rows.append({"piece": f"RoPE ({name})", "HF": "LlamaRotaryEmbedding", "max |diff|": diff})
    hf_config = _llama_config(LlamaConfig, None, attention_bias=True)
    hf_config._attn_implementation = "sdpa"
    hf_attn = _randomised(hf.LlamaAttention(hf_config, layer_idx=0))
    cos, sin = hf.LlamaRotaryEmbedding(hf_config)(x, positions)
    expected, _ = hf_attn(x[:1], position_embeddings=(cos, sin), attention_mask=None)
    for implementation in ("explicit", "sdpa"):
        config = config_from_hf(hf_config)
        config.attn_implementation = implementation
        attn = GroupedQueryAttention(config, layer_idx=0)
        attn.load_state_dict(hf_attn.state_dict())
        rows.append(
            {
                "piece": f"GroupedQueryAttention ({implementation})",
                "HF": "LlamaAttention",
                "max |diff|": _diff(attn(x[:1], cos, sin), expected),
            }
        )
    hf_mlp = _randomised(hf.LlamaMLP(hf_config))
    mlp = SwiGLU(64, hf_config.intermediate_size)
    mlp.load_state_dict(hf_mlp.state_dict())
    rows.append({"piece": "SwiGLU", "HF": "LlamaMLP", "max |diff|": _diff(mlp(x), hf_mlp(x))})
    return rows


def _llama_config(config_cls, rope: dict | None, **kwargs: Any):
    rope_parameters = {"rope_theta": 10000.0, **(rope or {"rope_type": "default"})}
    return config_cls(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16,
        rope_parameters=rope_parameters,
        **kwargs,
    )


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.1)
    return module.eval()
