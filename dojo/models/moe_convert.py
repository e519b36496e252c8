"""Our `SparseMoE` to and from Hugging Face's `MixtralSparseMoeBlock` / `Qwen2MoeSparseMoeBlock`.

transformers 5 stores the experts of both families fused, exactly as `ExpertBank` does
(`experts.gate_up_proj` [experts, 2 * intermediate, hidden], `experts.down_proj`), the router as
`gate.weight` [experts, hidden], and Qwen2-MoE's shared expert as a plain MLP plus a one-output
`shared_expert_gate`; so converting is copying tensors. Blocks from transformers 4 (a ModuleList
of per-expert MLPs, `w1`/`w3`/`w2` in Mixtral, `gate_proj`/`up_proj`/`down_proj` in Qwen2-MoE)
are read too.
"""

from __future__ import annotations

import torch
from torch import nn

from dojo.models.moe import SparseMoE

HF_MOE_BLOCKS = ("MixtralSparseMoeBlock", "Qwen2MoeSparseMoeBlock")


def is_hf_moe_block(module: nn.Module) -> bool:
    """True for an HF Mixtral / Qwen2-MoE sparse-MoE block."""
    return type(module).__name__ in HF_MOE_BLOCKS


def _hf_expert_weights(experts: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(gate_up [E, 2I, H], down [E, H, I]) from fused (transformers 5) or per-expert experts."""
    if hasattr(experts, "gate_up_proj"):
        if getattr(experts, "is_transposed", False) or getattr(experts, "has_bias", False):
            raise ValueError(
                "moe_from_hf: this experts module stores transposed weights or biases; only "
                "the plain [experts, out, in] layout without biases is supported"
            )
        return experts.gate_up_proj.detach(), experts.down_proj.detach()
    if isinstance(experts, nn.ModuleList):  # transformers 4: one MLP module per expert
        first = experts[0]
        names = (
            ("w1", "w3", "w2") if hasattr(first, "w1") else ("gate_proj", "up_proj", "down_proj")
        )
        gate_up = torch.stack(
            [torch.cat([getattr(m, names[0]).weight, getattr(m, names[1]).weight]) for m in experts]
        )
        down = torch.stack([getattr(m, names[2]).weight for m in experts])
        return gate_up.detach(), down.detach()
    raise TypeError(f"moe_from_hf: cannot read expert weights from {type(experts).__name__}")


def _hf_activation(block: nn.Module) -> str:
    config = getattr(block.experts, "config", None) or getattr(block, "config", None)
    return getattr(config, "hidden_act", "silu") if config is not None else "silu"


def moe_from_hf(
    block: nn.Module, dispatch: str = "grouped", return_router_logits: bool | None = None
) -> SparseMoE:
    """Our `SparseMoE` with the weights of an HF Mixtral / Qwen2-MoE sparse-MoE block.

    By default it returns what the block returns: only the hidden states (transformers 5), or
    (hidden states, router logits) for a transformers 4 block.
    """
    if not is_hf_moe_block(block):
        raise TypeError(
            f"moe_from_hf: expected one of {HF_MOE_BLOCKS}, got {type(block).__name__}; pass the "
            f"block itself, e.g. model.model.layers[0].mlp"
        )
    if _hf_activation(block) != "silu":
        raise ValueError(
            f"moe_from_hf: experts use {_hf_activation(block)!r}; SparseMoE implements SwiGLU (silu)"
        )
    gate_up, down = _hf_expert_weights(block.experts)
    num_experts, two_i, hidden = gate_up.shape
    router = block.gate
    weight = router.weight if hasattr(router, "weight") else router.linear.weight
    shared = getattr(block, "shared_expert", None)
    moe = SparseMoE(
        hidden_size=hidden,
        intermediate_size=two_i // 2,
        num_experts=num_experts,
        top_k=getattr(router, "top_k", None) or block.top_k,
        # Mixtral always renormalises; Qwen2-MoE follows its config.
        norm_topk_prob=getattr(router, "norm_topk_prob", getattr(block, "norm_topk_prob", True)),
        shared_expert_intermediate_size=shared.up_proj.weight.shape[0] if shared else None,
        dispatch=dispatch,
        router_jitter_noise=getattr(block, "jitter_noise", 0.0),
        return_router_logits=(
            isinstance(block.experts, nn.ModuleList)
            if return_router_logits is None
            else return_router_logits
        ),
    ).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        moe.router.weight.copy_(weight)
        moe.experts.gate_up_proj.copy_(gate_up)
        moe.experts.down_proj.copy_(down)
        if shared is not None:
            moe.shared_expert.load_state_dict(
                {k: v for k, v in shared.state_dict().items() if k.endswith("weight")}
            )
            moe.shared_expert_gate.weight.copy_(block.shared_expert_gate.weight)
    return moe.train(block.training)


def hf_moe_config(moe: SparseMoE, **overrides):
    """A minimal HF config for `moe`: Mixtral without a shared expert, Qwen2-MoE with one."""
    from transformers import MixtralConfig, Qwen2MoeConfig

    # A standalone block has no model to pick its experts kernel; "eager" is HF's plain loop
    # (what it falls back to anyway, with a warning, when this is left unset).
    overrides.setdefault("experts_implementation", "eager")
    if moe.shared_expert is None:
        if not moe.norm_topk_prob:
            raise ValueError(
                "moe_to_hf: Mixtral always renormalises the top-k weights and Qwen2-MoE always "
                "has a shared expert; an MoE with norm_topk_prob=False and no shared expert has "
                "no HF block"
            )
        return MixtralConfig(
            hidden_size=moe.hidden_size,
            intermediate_size=moe.intermediate_size,
            num_local_experts=moe.num_experts,
            num_experts_per_tok=moe.top_k,
            router_jitter_noise=moe.router_jitter_noise,
            **overrides,
        )
    return Qwen2MoeConfig(
        hidden_size=moe.hidden_size,
        moe_intermediate_size=moe.intermediate_size,
        num_experts=moe.num_experts,
        num_experts_per_tok=moe.top_k,
        norm_topk_prob=moe.norm_topk_prob,
        shared_expert_intermediate_size=moe.shared_expert_intermediate_size,
        **overrides,
    )


def _check_config_matches(moe: SparseMoE, hf_config) -> None:
    mixtral = hf_config.model_type == "mixtral"
    expected = {
        "hidden_size": moe.hidden_size,
        "intermediate_size" if mixtral else "moe_intermediate_size": moe.intermediate_size,
        "num_local_experts" if mixtral else "num_experts": moe.num_experts,
        "num_experts_per_tok": moe.top_k,
    }
    if not mixtral:
        expected["norm_topk_prob"] = moe.norm_topk_prob
        expected["shared_expert_intermediate_size"] = moe.shared_expert_intermediate_size
    elif moe.shared_expert is not None or not moe.norm_topk_prob:
        raise ValueError(
            "moe_to_hf: Mixtral has no shared expert and always renormalises top-k; use a "
            "Qwen2MoeConfig for this MoE"
        )
    wrong = [
        f"{k}={getattr(hf_config, k)!r} (ours {v!r})"
        for k, v in expected.items()
        if getattr(hf_config, k) != v
    ]
    if wrong:
        raise ValueError(f"moe_to_hf: hf_config does not match the MoE: {', '.join(wrong)}")


def moe_to_hf(moe: SparseMoE, hf_config=None) -> nn.Module:
    """An HF `MixtralSparseMoeBlock` / `Qwen2MoeSparseMoeBlock` with the weights of `moe`.

    `hf_config` (a `MixtralConfig` or `Qwen2MoeConfig`) picks the family; None builds a minimal
    one with `hf_moe_config`. HF blocks have no capacity limit, so `moe.capacity_factor` must be None.
    """
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    if moe.capacity_factor is not None:
        raise ValueError(
            f"moe_to_hf: capacity_factor={moe.capacity_factor}, but HF blocks never drop tokens; "
            f"set moe.capacity_factor = None first"
        )
    hf_config = hf_config if hf_config is not None else hf_moe_config(moe)
    blocks = {"mixtral": MixtralSparseMoeBlock, "qwen2_moe": Qwen2MoeSparseMoeBlock}
    if hf_config.model_type not in blocks:
        raise ValueError(
            f"moe_to_hf: hf_config.model_type={hf_config.model_type!r}; expected one of {list(blocks)}"
        )
    _check_config_matches(moe, hf_config)
    ref = moe.router.weight
    block = blocks[hf_config.model_type](hf_config).to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        block.gate.weight.copy_(moe.router.weight)
        block.experts.gate_up_proj.copy_(moe.experts.gate_up_proj)
        block.experts.down_proj.copy_(moe.experts.down_proj)
        if moe.shared_expert is not None:
            block.shared_expert.load_state_dict(moe.shared_expert.state_dict())
            block.shared_expert_gate.weight.copy_(moe.shared_expert_gate.weight)
    return block.train(moe.training)


def hf_moe_forward(block: nn.Module, hidden_states: torch.Tensor):
    """Run an HF sparse-MoE block and also return its router logits, as our `SparseMoE` does.

    transformers 5 blocks return only the hidden states (the model collects router logits with
    hooks), so the logits are captured from the router's forward here.
    """
    captured = {}

    def keep_logits(module, args, output) -> None:  # returning None leaves the output as it is
        captured["logits"] = output[0]

    handle = block.gate.register_forward_hook(keep_logits)
    try:
        out = block(hidden_states)
    finally:
        handle.remove()
    if isinstance(out, tuple):  # transformers 4 already returned (hidden, router_logits)
        return out
    return out, captured["logits"]
