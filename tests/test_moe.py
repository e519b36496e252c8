"""The mixture-of-experts layer: dispatchers agree, capacity drops are counted, and the layer, its
router logits and its auxiliary loss match HF's Mixtral / Qwen2-MoE blocks."""

import math

import pytest
import torch
from transformers import MixtralConfig, Qwen2MoeConfig
from transformers.models.mixtral.modeling_mixtral import (
    MixtralSparseMoeBlock,
    load_balancing_loss_func,
)
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

from dojo.models.moe import (
    SparseMoE,
    drop_over_capacity,
    expert_capacity,
    expert_load,
    load_balancing_loss,
    moe_from_hf,
    moe_to_hf,
    router_z_loss,
)
from dojo.models.moe_convert import hf_moe_forward

TOL = 1e-5


def _random_init(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # HF leaves expert weights uninitialised (torch.empty) and Qwen2-MoE's router at zero.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module.eval()


def _mixtral(hidden=24, inter=40, experts=6, top_k=2, seed=0):
    config = MixtralConfig(
        hidden_size=hidden,
        intermediate_size=inter,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
    )
    return _random_init(MixtralSparseMoeBlock(config), seed), config


def _qwen2_moe(hidden=24, inter=20, experts=8, top_k=3, shared=36, norm=False, seed=0):
    config = Qwen2MoeConfig(
        hidden_size=hidden,
        moe_intermediate_size=inter,
        num_experts=experts,
        num_experts_per_tok=top_k,
        shared_expert_intermediate_size=shared,
        norm_topk_prob=norm,
    )
    return _random_init(Qwen2MoeSparseMoeBlock(config), seed), config


def _x(batch=3, seq=7, hidden=24, seed=1):
    return torch.randn(batch, seq, hidden, generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- the layer on its own -------------------------------------------------------------------


@pytest.mark.parametrize("shared", [None, 16])
@pytest.mark.parametrize("norm", [True, False])
def test_naive_and_grouped_dispatch_agree(shared, norm):
    torch.manual_seed(0)
    moe = SparseMoE(24, 32, 8, 2, norm, shared, dispatch="naive")
    x = _x()
    y_naive, logits_naive = moe(x)
    moe.dispatch = "grouped"
    y_grouped, logits_grouped = moe(x)
    assert y_naive.shape == x.shape and logits_naive.shape == (21, 8)
    assert _max_diff(y_naive, y_grouped) <= 1e-6
    assert torch.equal(logits_naive, logits_grouped)


def test_dispatchers_have_the_same_gradients():
    torch.manual_seed(0)
    moe = SparseMoE(16, 24, 4, 2, dispatch="naive")
    x = _x(hidden=16)
    grads = []
    for dispatch in ("naive", "grouped"):
        moe.dispatch = dispatch
        moe.zero_grad()
        y, logits = moe(x)
        (y.square().sum() + load_balancing_loss(logits, 4, 2)).backward()
        grads.append([p.grad.clone() for p in moe.parameters()])
    for g_naive, g_grouped in zip(*grads):
        assert _max_diff(g_naive, g_grouped) <= 1e-5
    assert moe.router.weight.grad.abs().sum() > 0  # the router learns through the weights


def test_router_renormalises_top_k():
    torch.manual_seed(0)
    moe = SparseMoE(16, 8, 5, 3, norm_topk_prob=True)
    routing = moe.router(torch.randn(10, 16))
    assert torch.allclose(routing.weights.sum(-1), torch.ones(10))
    assert torch.equal(routing.experts, routing.probs.topk(3).indices)
    moe.router.norm_topk_prob = False
    raw = moe.router(torch.randn(10, 16))
    assert torch.equal(raw.weights, raw.probs.gather(1, raw.experts))
    assert (raw.weights.sum(-1) < 1).all()


def test_each_expert_is_a_swiglu():
    torch.manual_seed(0)
    moe = SparseMoE(16, 12, 3, 1)
    x = torch.randn(5, 16)
    for e in range(3):
        assert _max_diff(moe.experts.expert(e)(x), moe.experts.expert_forward(e, x)) <= 1e-6


def test_top_1_of_one_expert_is_a_dense_mlp():
    torch.manual_seed(0)
    moe = SparseMoE(16, 12, 1, 1)
    x = _x(hidden=16)
    y, _ = moe(x)
    assert _max_diff(y, moe.experts.expert(0)(x)) <= 1e-6


# --- capacity and dropped tokens ------------------------------------------------------------


def test_expert_capacity_formula():
    assert expert_capacity(100, 8, 2, 1.0) == 25
    assert expert_capacity(100, 8, 2, 1.25) == math.ceil(31.25)
    assert expert_capacity(3, 8, 1, 0.1) == 1


def test_drop_over_capacity_serves_first_choices_first():
    # 4 tokens, top-2, 3 experts, each expert takes 2 copies.
    experts = torch.tensor([[0, 1], [0, 2], [1, 0], [0, 1]])
    kept = drop_over_capacity(experts, num_experts=3, capacity=2)
    # Expert 0: first choices of tokens 0, 1 fill it; token 3's first choice and token 2's
    # second choice are dropped. Expert 1: token 2 (first choice), then token 0 (second).
    assert kept.tolist() == [[0, 1], [0, 2], [1, 3], [3, 3]]


@pytest.mark.parametrize("dispatch", ["naive", "grouped"])
def test_capacity_drops_are_counted_and_applied(dispatch):
    torch.manual_seed(0)
    # Half the copies fit: 4 experts x capacity 8 = 32 places for 32 tokens x 2 copies.
    moe = SparseMoE(16, 24, 4, 2, capacity_factor=0.5, dispatch=dispatch)
    x = _x(batch=4, seq=8, hidden=16)
    y, logits = moe(x)
    stats = moe.last_stats
    tokens = 32
    assert stats.capacity == expert_capacity(tokens, 4, 2, 0.5) == 8
    assert stats.tokens_per_expert.sum() == tokens * 2
    assert (stats.processed_per_expert <= stats.capacity).all()
    assert stats.dropped == tokens * 2 - int(stats.processed_per_expert.sum()) > 0
    assert stats.dropped_fraction == pytest.approx(stats.dropped / (tokens * 2))
    # Tokens that lost both copies get zero output (the residual stream carries them on).
    routing = moe.router(x.reshape(-1, 16))
    kept = drop_over_capacity(routing.experts, 4, stats.capacity)
    lost = (kept == 4).all(dim=1)
    assert lost.any()
    assert torch.equal(y.reshape(-1, 16)[lost], torch.zeros(int(lost.sum()), 16))


def test_capacity_gives_the_same_output_in_both_dispatchers():
    torch.manual_seed(0)
    moe = SparseMoE(16, 24, 6, 2, shared_expert_intermediate_size=8, capacity_factor=0.7)
    x = _x(hidden=16)
    y_grouped, _ = moe(x)
    moe.dispatch = "naive"
    y_naive, _ = moe(x)
    assert _max_diff(y_naive, y_grouped) <= 1e-6


def test_ample_capacity_drops_nothing():
    torch.manual_seed(0)
    moe = SparseMoE(16, 24, 4, 2)
    x = _x(hidden=16)
    y_free, _ = moe(x)
    moe.capacity_factor = 4.0  # capacity = every token copy
    y_capped, _ = moe(x)
    assert moe.last_stats.dropped == 0
    assert torch.equal(y_free, y_capped)


# --- auxiliary losses -----------------------------------------------------------------------


def test_load_balancing_loss_matches_hf_over_layers_and_masks():
    gen = torch.Generator().manual_seed(0)
    layers = tuple(torch.randn(2 * 5, 6, generator=gen) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    for top_k in (1, 2, 4):
        ref = load_balancing_loss_func(layers, 6, top_k)
        assert _max_diff(load_balancing_loss(layers, 6, top_k), ref) <= TOL
        ref_masked = load_balancing_loss_func(layers, 6, top_k, mask)
        ours_masked = load_balancing_loss(layers, 6, top_k, mask)
        assert _max_diff(ours_masked, ref_masked) <= TOL
        assert _max_diff(ours_masked, ref) > 1e-4  # the mask really changes it


def test_load_balancing_loss_is_top_k_when_the_router_is_flat():
    # Uniform probabilities: P_e = 1/E, sum_e f_e = top_k, so the loss is top_k whatever f is.
    assert load_balancing_loss(torch.zeros(12, 8), 8, 2).item() == pytest.approx(2.0)
    skewed = torch.zeros(12, 8)
    skewed[:, 0] = 10.0  # everyone to expert 0: f_0 = 1, P_0 ~ 1 -> loss ~ E
    assert load_balancing_loss(skewed, 8, 1).item() == pytest.approx(8.0, rel=1e-3)


def test_load_balancing_loss_rejects_wrong_expert_count():
    with pytest.raises(ValueError, match="num_experts=4"):
        load_balancing_loss(torch.zeros(3, 6), 4, 2)


def test_router_z_loss():
    assert router_z_loss(torch.zeros(5, 8)).item() == pytest.approx(math.log(8) ** 2)
    logits = torch.randn(7, 4)
    assert router_z_loss(logits).item() == pytest.approx(
        (torch.logsumexp(logits, -1) ** 2).mean().item()
    )
    assert router_z_loss(10 * logits) > router_z_loss(logits)


def test_expert_load_sums_to_one():
    load = expert_load(torch.randn(50, 6), top_k=2)
    assert load.shape == (6,) and load.sum().item() == pytest.approx(1.0)


# --- bad configurations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_k": 5}, "top_k=5 is larger than num_experts=4"),
        ({"top_k": 0}, "top_k=0 must be a positive integer"),
        ({"num_experts": 0, "top_k": 1}, "num_experts=0"),
        ({"capacity_factor": 0.0}, "capacity_factor=0.0 must be > 0"),
        ({"dispatch": "fast"}, "dispatch='fast'"),
        ({"shared_expert_intermediate_size": -3}, "shared_expert_intermediate_size=-3"),
        ({"router_jitter_noise": 1.5}, "router_jitter_noise=1.5"),
    ],
)
def test_bad_configs_fail_at_construction(kwargs, message):
    args = {"hidden_size": 8, "intermediate_size": 8, "num_experts": 4, "top_k": 2} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SparseMoE(**args)


# --- Hugging Face equivalence ---------------------------------------------------------------


@pytest.mark.parametrize("dispatch", ["naive", "grouped"])
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_from_hf_mixtral_matches(dispatch, top_k):
    block, config = _mixtral(top_k=top_k, seed=top_k)
    moe = moe_from_hf(block, dispatch=dispatch, return_router_logits=True)
    assert moe.top_k == top_k and moe.norm_topk_prob and moe.shared_expert is None
    x = _x()
    with torch.no_grad():
        y_ref, logits_ref = hf_moe_forward(block, x)
        y, logits = moe(x)
    assert _max_diff(y, y_ref) <= TOL
    assert _max_diff(logits, logits_ref) <= TOL
    aux_ref = load_balancing_loss_func((logits_ref,), config.num_local_experts, top_k)
    assert _max_diff(load_balancing_loss(logits, moe.num_experts, top_k), aux_ref) <= TOL


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("dispatch", ["naive", "grouped"])
def test_from_hf_qwen2_moe_matches(norm, dispatch):
    block, config = _qwen2_moe(norm=norm)
    moe = moe_from_hf(block, dispatch=dispatch, return_router_logits=True)
    assert moe.norm_topk_prob == norm and moe.shared_expert_intermediate_size == 36
    x = _x()
    with torch.no_grad():
        y_ref, logits_ref = hf_moe_forward(block, x)
        y, logits = moe(x)
    assert _max_diff(y, y_ref) <= TOL
    assert _max_diff(logits, logits_ref) <= TOL
    aux_ref = load_balancing_loss_func(
        (logits_ref,), config.num_experts, config.num_experts_per_tok
    )
    assert _max_diff(load_balancing_loss(logits, 8, 3), aux_ref) <= TOL


@pytest.mark.parametrize("shared", [None, 16])
def test_to_hf_round_trip(shared):
    torch.manual_seed(0)
    moe = SparseMoE(24, 20, 5, 2, norm_topk_prob=True, shared_expert_intermediate_size=shared)
    block = moe_to_hf(moe)
    family = MixtralSparseMoeBlock if shared is None else Qwen2MoeSparseMoeBlock
    assert isinstance(block, family)
    x = _x()
    with torch.no_grad():
        y_ref, logits_ref = hf_moe_forward(block, x)
        y, logits = moe(x)
    assert _max_diff(y, y_ref) <= TOL and _max_diff(logits, logits_ref) <= TOL
    back = moe_from_hf(block)
    for (name, a), (_, b) in zip(moe.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name


def test_to_hf_with_an_explicit_config_checks_it():
    moe = SparseMoE(24, 40, 6, 2)
    _, config = _mixtral()
    block = moe_to_hf(moe, config)
    assert torch.equal(block.experts.down_proj, moe.experts.down_proj)
    with pytest.raises(ValueError, match="num_local_experts=6 \\(ours 4\\)"):
        moe_to_hf(SparseMoE(24, 40, 4, 2), config)
    with pytest.raises(ValueError, match="no shared expert"):
        moe_to_hf(SparseMoE(24, 40, 6, 2, shared_expert_intermediate_size=8), config)
    with pytest.raises(ValueError, match="capacity_factor=1.0"):
        moe_to_hf(SparseMoE(24, 40, 6, 2, capacity_factor=1.0), config)


def test_from_hf_rejects_other_modules():
    with pytest.raises(TypeError, match="expected one of"):
        moe_from_hf(torch.nn.Linear(3, 3))


def test_dojo_models_from_hf_delegates_to_moe():
    from dojo.models import from_hf

    block, _ = _mixtral()
    moe = from_hf(block)
    assert isinstance(moe, SparseMoE)
    x = _x()
    with torch.no_grad():
        # Like the transformers 5 block: a tensor out, router logits kept on the side.
        out, expected = moe(x), block(x)
        assert isinstance(out, torch.Tensor) and _max_diff(out, expected) <= TOL
        logits_ref = hf_moe_forward(block, x)[1]
        assert _max_diff(moe.last_router_logits, logits_ref) <= TOL


# --- the chapter-05 training lab ------------------------------------------------------------


def test_naive_dispatch_runs_every_expert_on_every_token(monkeypatch):
    import dojo.models.moe as moe_module

    torch.manual_seed(0)
    moe = SparseMoE(16, 24, 4, 1, dispatch="naive")
    calls = []
    forward = moe_module.swiglu
    monkeypatch.setattr(moe_module, "swiglu", lambda x, *w: calls.append(len(x)) or forward(x, *w))
    moe(_x(hidden=16))
    assert calls == [21] * 4  # all 21 tokens through each of the 4 experts
    moe.dispatch, calls[:] = "grouped", []
    moe(_x(hidden=16))
    assert sum(calls) == 21  # top-1: each token through one expert only


def test_tiny_lm_configs_have_equal_active_parameters():
    from dojo.models import Transformer
    from dojo.models.moe_lab import count_parameters, tiny_lm_config

    dense = count_parameters(Transformer(tiny_lm_config(num_experts=0, top_k=2, expert_size=32)))
    moe = count_parameters(Transformer(tiny_lm_config(num_experts=8, top_k=2, expert_size=32)))
    assert dense["active"] == dense["total"]
    # Equal but for the routers (hidden x experts per layer).
    assert moe["active"] - dense["active"] == 2 * 64 * 8
    assert moe["total"] > 3 * dense["active"] // 2


def test_train_tiny_lm_records_losses_and_expert_load():
    from dojo.models.moe_lab import tiny_lm_config, train_tiny_lm

    stream = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6] * 3000)
    config = tiny_lm_config(num_experts=4, top_k=2, expert_size=16, hidden_size=32)
    _, run = train_tiny_lm(config, stream, steps=30, batch_size=4, seq_len=16, progress=False)
    assert len(run.cross_entropy) == len(run.aux_loss) == len(run.expert_load) == 30
    assert run.expert_load[0].shape == (2, 4)
    assert torch.allclose(run.expert_load[-1].sum(-1), torch.ones(2))
    assert run.cross_entropy[-1] < run.cross_entropy[0] - 0.5
    assert run.eval_loss < run.cross_entropy[0]
