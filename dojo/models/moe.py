"""Mixture of experts from scratch: a router, a bank of SwiGLU experts, and two ways to dispatch.

A sparse MoE layer replaces one dense MLP by `num_experts` MLPs ("experts") and a router that
sends each token to only `top_k` of them, so the parameter count grows with the expert count
while the compute per token stays that of `top_k` MLPs.

Notable choices:
- The router is Mixtral's / Qwen2-MoE's: a bias-free linear layer gives `router_logits`, a
  float32 softmax turns them into probabilities, `torch.topk` keeps `top_k` experts, and
  (`norm_topk_prob=True`, always so in Mixtral) the kept weights are renormalised to sum to 1.
- Expert weights are stored fused as 3-D parameters, `gate_up_proj` [experts, 2 * intermediate,
  hidden] and `down_proj` [experts, hidden, intermediate], the layout transformers 5 uses, so
  conversion is a copy and each expert is one slice (`ExpertBank.expert(e)` shows it as a plain
  `SwiGLU`).
- Two dispatchers give the same numbers: `"naive"` loops over experts and runs each one on
  every token, weighting its output by the token's gate (0 where the expert was not chosen): no
  indexing at all, but num_experts / top_k times the work. `"grouped"` does only the routed work:
  it sorts the token copies by expert once, runs each expert on one contiguous slice and
  scatters back with one `index_add_`.
- `capacity_factor` caps the tokens per expert at ceil(factor * tokens * top_k / experts); the
  overflow is dropped (its weight is lost and the residual connection carries the token on), with
  first choices served before second choices (GShard's priority). `last_stats` counts the drops.
- The forward returns `(hidden_states, router_logits)` (as transformers 4 blocks did), or only
  the hidden states with `return_router_logits=False` (as transformers 5 blocks do, and as
  `from_hf` of such a block sets it); `last_router_logits` always holds them. The auxiliary
  losses are functions of the router logits (`load_balancing_loss`, equal to HF's `load_balancing_loss_func`, and
  `router_z_loss`), so a model sums them over its layers as Mixtral does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from dojo.models.mlp import SwiGLU

DISPATCHES = ("naive", "grouped")


class Routing(NamedTuple):
    """What the router decides for T tokens."""

    logits: torch.Tensor  # [T, num_experts], the raw scores (what HF returns as router_logits)
    probs: torch.Tensor  # [T, num_experts], float32 softmax of the logits
    weights: torch.Tensor  # [T, top_k], mixing weight of each chosen expert
    experts: torch.Tensor  # [T, top_k], index of each chosen expert (best first)


@dataclass
class MoEStats:
    """Routing counts of the last forward pass (detached; for plots and logging)."""

    tokens_per_expert: torch.Tensor  # [num_experts] token copies the router sent to each expert
    processed_per_expert: torch.Tensor  # [num_experts] of those, how many fit under the capacity
    capacity: int | None  # token copies one expert may take; None = unlimited
    dropped: int  # token copies dropped for lack of capacity
    dropped_fraction: float  # dropped / (tokens * top_k)


class Router(nn.Module):
    """Linear scores -> float32 softmax -> top-k -> (optionally) renormalised weights."""

    def __init__(
        self, hidden_size: int, num_experts: int, top_k: int, norm_topk_prob: bool = True
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.norm_topk_prob = norm_topk_prob
        # Shape [num_experts, hidden_size]: row e scores how well a token suits expert e.
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size))

    def forward(self, x: torch.Tensor) -> Routing:
        # Shape [tokens, num_experts]
        logits = F.linear(x, self.weight)
        # Softmax in float32, as HF does: bf16 probabilities tie too often for a stable top-k.
        probs = torch.softmax(logits.float(), dim=-1)
        weights, experts = torch.topk(probs, self.top_k, dim=-1)  # [tokens, top_k] each
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return Routing(logits, probs, weights, experts)

    def extra_repr(self) -> str:
        return (
            f"experts={self.num_experts}, top_k={self.top_k}, norm_topk_prob={self.norm_topk_prob}"
        )


class ExpertBank(nn.Module):
    """`num_experts` SwiGLU MLPs stored as two 3-D parameters (HF's fused layout)."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.intermediate_size = intermediate_size
        # Shape [num_experts, 2 * intermediate_size, hidden_size]: gate rows, then up rows.
        self.gate_up_proj = nn.Parameter(
            torch.empty(num_experts, 2 * intermediate_size, hidden_size)
        )
        # Shape [num_experts, hidden_size, intermediate_size]
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))

    def expert_forward(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `e` on the tokens `x` [n, hidden]: down(silu(gate x) * up x)."""
        return swiglu(x, self.gate_up_proj[e], self.down_proj[e])

    def per_expert(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gate_up [2I, H], down [H, I]) of every expert, split off the 3-D parameters at once.

        One `unbind` per forward rather than one `param[e]` per expert: in backward, indexing
        allocates a zero gradient of the whole bank for each expert, `unbind` stacks once.
        """
        return list(zip(self.gate_up_proj.unbind(0), self.down_proj.unbind(0)))

    @torch.no_grad()
    def expert(self, e: int) -> SwiGLU:
        """A standalone copy of expert `e` as a plain `SwiGLU` (to see that it is just an MLP)."""
        hidden = self.gate_up_proj.shape[-1]
        mlp = SwiGLU(hidden, self.intermediate_size).to(self.gate_up_proj)
        mlp.gate_proj.weight.copy_(self.gate_up_proj[e, : self.intermediate_size])
        mlp.up_proj.weight.copy_(self.gate_up_proj[e, self.intermediate_size :])
        mlp.down_proj.weight.copy_(self.down_proj[e])
        return mlp

    def extra_repr(self) -> str:
        e, two_i, h = self.gate_up_proj.shape
        return f"experts={e}, hidden={h}, intermediate={two_i // 2}"


def swiglu(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """One expert on tokens x [n, hidden]: down(silu(gate x) * up x), gate/up fused in one matrix."""
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)  # [n, intermediate] each
    return F.linear(F.silu(gate) * up, down)  # [n, hidden]


def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Token copies one expert may take: ceil(factor * tokens * top_k / experts), at least 1."""
    return max(1, math.ceil(capacity_factor * num_tokens * top_k / num_experts))


def drop_over_capacity(experts: torch.Tensor, num_experts: int, capacity: int) -> torch.Tensor:
    """Replace the assignments beyond each expert's capacity by `num_experts` ("no expert").

    Priority follows GShard: every token's first choice is served before any second choice,
    and within one choice rank earlier tokens go first.
    """
    tokens, top_k = experts.shape
    # Shape [top_k * tokens]: all first choices, then all second choices, ...
    queue = experts.t().reshape(-1)
    one_hot = F.one_hot(queue, num_experts)  # [top_k * tokens, num_experts]
    # Place of each assignment in its expert's queue (0 = first served).
    place = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1) - 1
    keep = (place < capacity).view(top_k, tokens).t()
    return torch.where(keep, experts, torch.full_like(experts, num_experts))


def naive_dispatch(
    bank: ExpertBank, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
) -> torch.Tensor:
    """Loop over experts, run each on every token, and weight its output by the token's gate."""
    # Shape [tokens, num_experts + 1]: each token's gate for each expert, 0 where not chosen
    # (the extra column collects copies dropped for capacity, marked with index num_experts).
    gates = torch.zeros(x.shape[0], bank.num_experts + 1, dtype=x.dtype, device=x.device)
    gates = gates.scatter_add(1, experts, weights)
    out = torch.zeros_like(x)  # [tokens, hidden]
    for e, (gate_up, down) in enumerate(bank.per_expert()):
        out = out + gates[:, e, None] * swiglu(x, gate_up, down)
    return out


def grouped_dispatch(
    bank: ExpertBank, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
) -> torch.Tensor:
    """Sort the token copies by expert, run each expert on one contiguous slice, scatter back."""
    top_k = experts.shape[1]
    flat = experts.reshape(-1)  # [tokens * top_k]; the value num_experts marks a dropped copy
    order = torch.argsort(flat, stable=True)  # copies grouped by expert, dropped ones last
    counts = torch.bincount(flat, minlength=bank.num_experts + 1)[: bank.num_experts]
    kept = order[: int(counts.sum())]
    token_idx = kept // top_k  # the token each sorted copy came from
    x_sorted = x[token_idx]  # one gather for all experts, [kept, hidden]
    chunks = x_sorted.split(counts.tolist())
    y = torch.cat([swiglu(chunk, *w) for chunk, w in zip(chunks, bank.per_expert())])
    y = y * weights.reshape(-1)[kept, None]
    return torch.zeros_like(x).index_add_(0, token_idx, y)


_DISPATCH = {"naive": naive_dispatch, "grouped": grouped_dispatch}


class SparseMoE(nn.Module):
    """A sparse mixture-of-experts MLP block (Mixtral / Qwen2-MoE), optionally with a shared expert.

    Args:
        hidden_size: width of the residual stream (input and output).
        intermediate_size: width inside one expert's SwiGLU.
        num_experts: routed experts.
        top_k: experts each token is sent to (HF: `num_experts_per_tok`).
        norm_topk_prob: renormalise the top-k weights to sum to 1 (Mixtral: always; Qwen2-MoE: its
            config's `norm_topk_prob`).
        shared_expert_intermediate_size: width of Qwen2-MoE's always-on shared expert, whose output
            is scaled by sigmoid(shared_expert_gate(x)); None or 0 = no shared expert.
        capacity_factor: cap each expert at ceil(factor * tokens * top_k / experts) token copies
            and drop the rest; None = no cap (as HF).
        dispatch: "grouped" (sort by expert, fast) or "naive" (a loop with masks, for reading).
        router_jitter_noise: Mixtral's multiplicative input noise in training; 0 = none.
        initializer_range: std of the normal init of all weights.
        return_router_logits: return (hidden_states, router_logits) like transformers 4's blocks;
            False returns only the hidden states, like transformers 5's.

    Forward: hidden_states [..., hidden_size] -> (hidden_states [..., hidden_size],
    router_logits [tokens, num_experts]), or only the hidden states; either way
    `last_router_logits` keeps the router logits (with their graph, for the auxiliary loss).
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_experts: int,
        top_k: int,
        norm_topk_prob: bool = True,
        shared_expert_intermediate_size: int | None = None,
        capacity_factor: float | None = None,
        dispatch: str = "grouped",
        router_jitter_noise: float = 0.0,
        initializer_range: float = 0.02,
        return_router_logits: bool = True,
    ) -> None:
        super().__init__()
        _check_moe_args(
            hidden_size,
            intermediate_size,
            num_experts,
            top_k,
            shared_expert_intermediate_size,
            capacity_factor,
            dispatch,
            router_jitter_noise,
        )
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_experts = num_experts
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        self.dispatch = dispatch
        self.router_jitter_noise = router_jitter_noise
        self.return_router_logits = return_router_logits
        self.router = Router(hidden_size, num_experts, top_k, norm_topk_prob)
        self.experts = ExpertBank(hidden_size, intermediate_size, num_experts)
        self.shared_expert_intermediate_size = shared_expert_intermediate_size or None
        self.shared_expert: SwiGLU | None = None
        self.shared_expert_gate: nn.Linear | None = None
        if self.shared_expert_intermediate_size:
            self.shared_expert = SwiGLU(hidden_size, self.shared_expert_intermediate_size)
            # One scalar per token: how much of the shared expert to let through.
            self.shared_expert_gate = nn.Linear(hidden_size, 1, bias=False)
        self.last_stats: MoEStats | None = None
        self.last_router_logits: torch.Tensor | None = None
        self.reset_parameters(initializer_range)

    @property
    def norm_topk_prob(self) -> bool:
        return self.router.norm_topk_prob

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, std) init of every weight (HF's `initializer_range` convention)."""
        for p in self.parameters():
            p.normal_(0.0, std)

    def forward(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        out, router_logits = self.forward_with_router_logits(hidden_states)
        return (out, router_logits) if self.return_router_logits else out

    def forward_with_router_logits(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden_states [..., hidden] -> (same shape, router logits [tokens, num_experts])."""
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, self.hidden_size)  # Shape [tokens, hidden_size]
        if self.training and self.router_jitter_noise > 0:
            noise = torch.empty_like(x).uniform_(
                1.0 - self.router_jitter_noise, 1.0 + self.router_jitter_noise
            )
            x = x * noise
        routing = self.router(x)
        experts = routing.experts
        capacity = None
        if self.capacity_factor is not None:
            capacity = expert_capacity(
                x.shape[0], self.num_experts, self.top_k, self.capacity_factor
            )
            experts = drop_over_capacity(experts, self.num_experts, capacity)
        out = _DISPATCH[self.dispatch](self.experts, x, routing.weights.to(x.dtype), experts)
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        self.last_stats = _stats(routing.experts, experts, self.num_experts, capacity)
        self.last_router_logits = routing.logits
        return out.reshape(shape), routing.logits

    def extra_repr(self) -> str:
        return (
            f"dispatch={self.dispatch!r}, capacity_factor={self.capacity_factor}, "
            f"router_jitter_noise={self.router_jitter_noise}, "
            f"return_router_logits={self.return_router_logits}"
        )


def _stats(
    routed: torch.Tensor, kept: torch.Tensor, num_experts: int, capacity: int | None
) -> MoEStats:
    with torch.no_grad():
        sent = torch.bincount(routed.reshape(-1), minlength=num_experts)[:num_experts]
        processed = torch.bincount(kept.reshape(-1), minlength=num_experts + 1)[:num_experts]
        dropped = int(sent.sum() - processed.sum())
    return MoEStats(sent, processed, capacity, dropped, dropped / max(1, routed.numel()))


def _check_moe_args(
    hidden_size: int,
    intermediate_size: int,
    num_experts: int,
    top_k: int,
    shared_expert_intermediate_size: int | None,
    capacity_factor: float | None,
    dispatch: str,
    router_jitter_noise: float,
) -> None:
    """Fail at construction, with what to change, instead of with a shape error in forward."""
    for name, value in [
        ("hidden_size", hidden_size),
        ("intermediate_size", intermediate_size),
        ("num_experts", num_experts),
        ("top_k", top_k),
    ]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"SparseMoE: {name}={value!r} must be a positive integer")
    if top_k > num_experts:
        raise ValueError(
            f"SparseMoE: top_k={top_k} is larger than num_experts={num_experts}; a token cannot "
            f"use more experts than exist (lower top_k or add experts)"
        )
    if shared_expert_intermediate_size is not None and shared_expert_intermediate_size < 0:
        raise ValueError(
            f"SparseMoE: shared_expert_intermediate_size={shared_expert_intermediate_size} must be "
            f"a positive width, or None / 0 for no shared expert"
        )
    if capacity_factor is not None and not capacity_factor > 0:
        raise ValueError(
            f"SparseMoE: capacity_factor={capacity_factor} must be > 0 (1.0 = an even share per "
            f"expert, 1.25 = 25% slack), or None for no capacity limit"
        )
    if dispatch not in DISPATCHES:
        raise ValueError(f"SparseMoE: dispatch={dispatch!r} is not one of {DISPATCHES}")
    if not 0.0 <= router_jitter_noise < 1.0:
        raise ValueError(
            f"SparseMoE: router_jitter_noise={router_jitter_noise} must be in [0, 1) "
            f"(inputs are scaled by uniform(1 - noise, 1 + noise))"
        )


def _flat_router_logits(
    router_logits: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor],
) -> tuple[torch.Tensor, int]:
    if isinstance(router_logits, (tuple, list)):
        if not router_logits:
            raise ValueError("load_balancing_loss: got an empty tuple of router logits")
        return torch.cat([t.reshape(-1, t.shape[-1]) for t in router_logits]), len(router_logits)
    return router_logits.reshape(-1, router_logits.shape[-1]), 1


def load_balancing_loss(
    router_logits: torch.Tensor | tuple[torch.Tensor, ...],
    num_experts: int,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch Transformer's balance loss, num_experts * sum_e f_e * P_e (= HF's function).

    f_e is the fraction of tokens whose top-k includes expert e (so sum_e f_e = top_k), P_e the
    mean router probability of e. Both are 1/num_experts-flat for a perfect balance, so the loss
    is top_k there and grows as the router favours a few experts. `router_logits` is one layer's
    [tokens, num_experts] or a tuple with one per layer (pooled, as HF does); `attention_mask`
    [batch, seq] leaves padding out.
    """
    logits, num_layers = _flat_router_logits(router_logits)
    if logits.shape[-1] != num_experts:
        raise ValueError(
            f"load_balancing_loss: router logits have {logits.shape[-1]} experts in the last "
            f"dimension, but num_experts={num_experts}"
        )
    probs = torch.softmax(logits.float(), dim=-1)  # [rows, num_experts]
    _, chosen = torch.topk(probs, top_k, dim=-1)  # [rows, top_k]
    # 1 where a row's top-k contains expert e, shape [rows, num_experts]
    routed = F.one_hot(chosen, num_experts).sum(dim=1).float()
    if attention_mask is None:
        row_weight = torch.ones(probs.shape[0], device=probs.device)
    else:
        row_weight = attention_mask.reshape(-1).to(probs).repeat(num_layers)
        if row_weight.shape[0] != probs.shape[0]:
            raise ValueError(
                f"load_balancing_loss: attention_mask has {attention_mask.numel()} positions but "
                f"each layer's router logits have {probs.shape[0] // num_layers} rows"
            )
    total = row_weight.sum()
    tokens_fraction = (routed * row_weight[:, None]).sum(dim=0) / total  # f_e
    mean_prob = (probs * row_weight[:, None]).sum(dim=0) / total  # P_e
    return num_experts * torch.sum(tokens_fraction * mean_prob)


def router_z_loss(router_logits: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """ST-MoE's router z-loss, mean(logsumexp(logits)^2): keeps router logits small and stable."""
    logits, _ = _flat_router_logits(router_logits)
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def expert_load(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Fraction of token copies each expert receives, [num_experts] summing to 1 (for plots)."""
    logits, _ = _flat_router_logits(router_logits)
    chosen = torch.topk(logits, top_k, dim=-1).indices  # softmax keeps the order of logits
    counts = torch.bincount(chosen.reshape(-1), minlength=logits.shape[-1]).float()
    return counts / counts.sum()


def moe_from_config(config, dispatch: str = "grouped") -> SparseMoE:
    """The `SparseMoE` of one decoder block of a `TransformerConfig` with num_experts > 0."""
    return SparseMoE(
        hidden_size=config.hidden_size,
        intermediate_size=config.moe_intermediate_size or config.intermediate_size,
        num_experts=config.num_experts,
        top_k=config.num_experts_per_tok,
        norm_topk_prob=config.norm_topk_prob,
        shared_expert_intermediate_size=config.shared_expert_intermediate_size or None,
        dispatch=dispatch,
        initializer_range=config.initializer_range,
    )


def __getattr__(name: str):
    # HF conversion lives in dojo.models.moe_convert (it imports transformers lazily); it is
    # re-exported here lazily because that module imports this one.
    if name in ("moe_from_hf", "moe_to_hf", "hf_moe_forward", "hf_moe_config"):
        from dojo.models import moe_convert

        return getattr(moe_convert, name)
    raise AttributeError(f"module 'dojo.models.moe' has no attribute {name!r}")
