"""Weights to and from Hugging Face: Llama, Qwen2, Mistral, Mixtral and Qwen2-MoE.

Our modules carry HF's names (`layers.3.self_attn.q_proj`, `input_layernorm`, `mlp.gate_proj`,
`norm`, `lm_head`), so a dense checkpoint maps key for key: HF's tensors live under `model.`
(except `lm_head`), ours at the top level. What differs between the families is only which
switches the config turns on (biases, sliding window, experts), handled in `config_from_hf` /
`config_to_hf`. Mixture-of-experts layers are converted block by block by `dojo.models.moe`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dojo.models.config import TransformerConfig
from dojo.models.transformer import Transformer

SUPPORTED = ("llama", "qwen2", "mistral", "mixtral", "qwen2_moe")
MOE_FAMILIES = ("mixtral", "qwen2_moe")


def is_hf_moe_block(module: nn.Module) -> bool:
    """True for an HF sparse-MoE block (Mixtral / Qwen2-MoE `...SparseMoeBlock`)."""
    return type(module).__name__.endswith("SparseMoeBlock")


def config_from_hf(hf_config: Any) -> TransformerConfig:
    """Translate an HF Llama / Qwen2 / Mistral / Mixtral / Qwen2-MoE config into ours."""
    model_type = hf_config.model_type
    if model_type not in SUPPORTED:
        raise ValueError(
            f"from_hf: model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED)}"
        )
    if getattr(hf_config, "hidden_act", "silu") != "silu":
        raise ValueError(f"from_hf: hidden_act={hf_config.hidden_act!r}; only 'silu' is supported")
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    theta = rope.pop("rope_theta", 10000.0)
    heads = hf_config.num_attention_heads
    kwargs: dict[str, Any] = dict(
        vocab_size=hf_config.vocab_size,
        hidden_size=hf_config.hidden_size,
        intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=hf_config.num_key_value_heads or heads,
        head_dim=getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads,
        max_position_embeddings=hf_config.max_position_embeddings,
        rope_theta=theta,
        rope_scaling=rope or None,
        rms_norm_eps=hf_config.rms_norm_eps,
        tie_word_embeddings=bool(hf_config.tie_word_embeddings),
        initializer_range=hf_config.initializer_range,
        model_type=model_type,
        bos_token_id=hf_config.bos_token_id,
        eos_token_id=hf_config.eos_token_id,
        pad_token_id=hf_config.pad_token_id,
    )
    if model_type == "llama":
        kwargs.update(
            qkv_bias=hf_config.attention_bias,
            o_bias=hf_config.attention_bias,
            mlp_bias=hf_config.mlp_bias,
        )
    if model_type in ("qwen2", "qwen2_moe"):
        kwargs["qkv_bias"] = getattr(hf_config, "qkv_bias", True)
        if "sliding_attention" in (getattr(hf_config, "layer_types", None) or []):
            raise ValueError(
                f"from_hf: this {model_type} config slides its attention window on some layers "
                f"(use_sliding_window=True); only full attention is supported for this family"
            )
    if model_type in ("mistral", "mixtral"):
        kwargs["sliding_window"] = hf_config.sliding_window
    if model_type == "mixtral":
        kwargs.update(
            num_experts=hf_config.num_local_experts,
            num_experts_per_tok=hf_config.num_experts_per_tok,
            moe_intermediate_size=hf_config.intermediate_size,
            norm_topk_prob=True,
            router_aux_loss_coef=hf_config.router_aux_loss_coef,
        )
    if model_type == "qwen2_moe":
        kwargs.update(
            num_experts=hf_config.num_experts,
            num_experts_per_tok=hf_config.num_experts_per_tok,
            moe_intermediate_size=hf_config.moe_intermediate_size,
            shared_expert_intermediate_size=hf_config.shared_expert_intermediate_size,
            norm_topk_prob=hf_config.norm_topk_prob,
            router_aux_loss_coef=hf_config.router_aux_loss_coef,
            decoder_sparse_step=hf_config.decoder_sparse_step,
            mlp_only_layers=list(hf_config.mlp_only_layers or []),
        )
    return TransformerConfig(**kwargs)


def config_to_hf(config: TransformerConfig, model_type: str | None = None) -> Any:
    """Our config as the HF config of `model_type` (default: `config.model_type`)."""
    from transformers import AutoConfig

    model_type = model_type or config.model_type
    if model_type not in SUPPORTED:
        raise ValueError(
            f"to_hf: model_type {model_type!r} is not supported; use one of {', '.join(SUPPORTED)}"
        )
    _check_expressible(config, model_type)
    common: dict[str, Any] = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_word_embeddings,
        initializer_range=config.initializer_range,
        rope_parameters={**config.rope_scaling, "rope_theta": config.rope_theta},
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        hidden_act="silu",
    )
    if model_type not in ("qwen2", "qwen2_moe"):  # these derive head_dim from the sizes
        common["head_dim"] = config.head_dim
    if model_type == "llama":
        common.update(attention_bias=config.qkv_bias, mlp_bias=config.mlp_bias)
    if model_type in ("mistral", "mixtral"):
        common["sliding_window"] = config.sliding_window
    if model_type == "mixtral":
        common.update(
            num_local_experts=config.num_experts,
            num_experts_per_tok=config.num_experts_per_tok,
            intermediate_size=config.moe_intermediate_size,
            router_aux_loss_coef=config.router_aux_loss_coef,
        )
    if model_type == "qwen2_moe":
        common.update(
            num_experts=config.num_experts,
            num_experts_per_tok=config.num_experts_per_tok,
            moe_intermediate_size=config.moe_intermediate_size,
            shared_expert_intermediate_size=config.shared_expert_intermediate_size,
            norm_topk_prob=config.norm_topk_prob,
            router_aux_loss_coef=config.router_aux_loss_coef,
            decoder_sparse_step=config.decoder_sparse_step,
            mlp_only_layers=list(config.mlp_only_layers),
            qkv_bias=config.qkv_bias,
        )
    return AutoConfig.for_model(model_type, **common)


def _check_expressible(config: TransformerConfig, model_type: str) -> None:
    """Refuse a target family that cannot hold this model, saying which switch is in the way."""
    problems = []
    moe_family = model_type in MOE_FAMILIES
    if config.num_experts > 0 and not moe_family:
        problems.append(f"it has {config.num_experts} experts (use 'mixtral' or 'qwen2_moe')")
    if config.num_experts == 0 and moe_family:
        problems.append("it has no experts (use 'llama', 'qwen2' or 'mistral')")
    if model_type == "llama" and config.qkv_bias != config.o_bias:
        problems.append("Llama's attention_bias covers q/k/v/o together (q/k/v only: use 'qwen2')")
    if model_type != "llama" and (config.o_bias or config.mlp_bias):
        problems.append("o_proj / MLP biases exist only in 'llama'")
    if model_type in ("mistral", "mixtral") and config.qkv_bias:
        problems.append("q/k/v biases need 'qwen2' (or 'llama' with o_bias)")
    qwen = model_type in ("qwen2", "qwen2_moe")
    if qwen and config.head_dim * config.num_attention_heads != config.hidden_size:
        problems.append("Qwen2 needs head_dim * num_attention_heads == hidden_size")
    if model_type in ("llama", "qwen2", "qwen2_moe") and config.sliding_window is not None:
        problems.append("a sliding window needs 'mistral' or 'mixtral'")
    if model_type == "mixtral" and (
        config.shared_expert_intermediate_size or not config.norm_topk_prob
    ):
        problems.append(
            "Mixtral has no shared expert and always renormalises top-k (use 'qwen2_moe')"
        )
    if problems:
        raise ValueError(
            f"to_hf: cannot write this model as {model_type!r}: " + "; ".join(problems)
        )


def _moe_layers(config: TransformerConfig) -> list[int]:
    return [i for i in range(config.num_hidden_layers) if config.is_moe_layer(i)]


def from_hf(hf_model: nn.Module) -> nn.Module:
    """Our model (or MoE layer, for an HF sparse-MoE block) holding the same weights as `hf_model`."""
    if is_hf_moe_block(hf_model):
        from dojo.models.moe import moe_from_hf

        return moe_from_hf(hf_model)
    config = config_from_hf(hf_model.config)
    dtype = next(hf_model.parameters()).dtype
    model = Transformer(config)
    moe_layers = _moe_layers(config)
    if moe_layers:
        from dojo.models.moe import moe_from_hf

        for i in moe_layers:
            model.layers[i].mlp = moe_from_hf(hf_model.model.layers[i].mlp)
    ours = {}
    for key, tensor in hf_model.state_dict().items():
        key = key.removeprefix("model.")
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue  # the tied head is the embedding matrix itself
        if _in_moe_mlp(key, moe_layers):
            continue  # already converted by moe_from_hf
        ours[key] = tensor
    _load(model, ours, moe_layers, "from_hf")
    return model.to(dtype).eval()


def to_hf(model: Transformer, model_type: str | None = None) -> nn.Module:
    """A transformers `...ForCausalLM` with the same weights as our `model` (in eval mode)."""
    from transformers import AutoModelForCausalLM

    config = model.config
    hf_config = config_to_hf(config, model_type)
    dtype = next(model.parameters()).dtype
    hf_model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    moe_layers = _moe_layers(config)
    state = {}
    for key, tensor in model.state_dict().items():
        if _in_moe_mlp(key, moe_layers):
            continue
        state[key if key.startswith("lm_head.") else f"model.{key}"] = tensor
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _in_moe_mlp(k.removeprefix("model."), moe_layers)]
    if config.tie_word_embeddings and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
        hf_model.tie_weights()
    if missing or unexpected:
        raise RuntimeError(
            f"to_hf: weights did not line up; missing {missing}, unexpected {unexpected}"
        )
    if moe_layers:
        from dojo.models.moe import moe_to_hf

        for i in moe_layers:
            block = moe_to_hf(model.layers[i].mlp, hf_config)
            hf_model.model.layers[i].mlp.load_state_dict(block.state_dict())
    return hf_model.eval()


def _in_moe_mlp(key: str, moe_layers: list[int]) -> bool:
    return any(key.startswith(f"layers.{i}.mlp.") for i in moe_layers)


def _load(
    model: nn.Module, state: dict[str, torch.Tensor], moe_layers: list[int], where: str
) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _in_moe_mlp(k, moe_layers)]
    if missing or unexpected:
        raise RuntimeError(
            f"{where}: weights did not line up; missing {missing}, unexpected {unexpected}"
        )
