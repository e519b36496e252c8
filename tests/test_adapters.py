"""From-scratch LoRA / rsLoRA / DoRA / LoRA+ against PEFT; target modules; freeze-tuning; errors."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from dojo.adapters import (
    DEFAULT_TARGET_MODULES,
    LoRALinear,
    add_lora,
    compare_with_peft,
    create_loraplus_optimizer,
    default_target_modules,
    freeze_all_but_last,
    linear_layer_names,
    load_lora,
    lora_layers,
    match_target_modules,
    merge_lora,
    peft_config_for,
    save_lora,
    unmerge_lora,
)

TOL = 1e-5


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(seed))


def paired(
    dora: bool, rslora: bool, targets="all-linear", r: int = 4, alpha: float = 8, dropout=0.0
):
    """Our adapters and PEFT's on copies of one model, with identical non-trivial weights."""
    base = tiny_llama()
    ours = add_lora(copy.deepcopy(base), r, alpha, targets, dropout, dora=dora, rslora=rslora)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_dora=dora,
        use_rslora=rslora,
    )
    theirs = get_peft_model(copy.deepcopy(base), config)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            # B = 0 at init would hide any error in the update path: make it non-trivial.
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=gen) * 0.1)
            peft_layer = theirs.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A.weight)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B.weight)
            if dora:
                # both start at ||W||; perturb so the magnitude path is exercised too
                assert torch.allclose(
                    peft_layer.lora_magnitude_vector["default"].weight, layer.magnitude, atol=TOL
                )
                layer.magnitude.mul_(1 + 0.1 * torch.rand(layer.magnitude.shape, generator=gen))
                peft_layer.lora_magnitude_vector["default"].weight.copy_(layer.magnitude)
    return base, ours, theirs


VARIANTS = [(False, False), (False, True), (True, False), (True, True)]
VARIANT_IDS = ["lora", "rslora", "dora", "dora+rslora"]


@pytest.mark.parametrize(("dora", "rslora"), VARIANTS, ids=VARIANT_IDS)
def test_outputs_and_gradients_match_peft(dora, rslora):
    _, ours, theirs = paired(dora, rslora)
    assert sorted(lora_layers(ours)) == sorted(
        n.removeprefix("base_model.model.")
        for n, m in theirs.named_modules()
        if hasattr(m, "lora_A") and n
    )
    x = ids()
    ours.train(), theirs.train()
    out_ours = ours(input_ids=x, labels=x)
    out_theirs = theirs(input_ids=x, labels=x)
    torch.testing.assert_close(out_ours.logits, out_theirs.logits, atol=TOL, rtol=0)
    out_ours.loss.backward()
    out_theirs.loss.backward()
    for name, layer in lora_layers(ours).items():
        peft_layer = theirs.base_model.model.get_submodule(name)
        for ours_p, theirs_p in [
            (layer.lora_A.weight, peft_layer.lora_A["default"].weight),
            (layer.lora_B.weight, peft_layer.lora_B["default"].weight),
        ] + (
            [(layer.magnitude, peft_layer.lora_magnitude_vector["default"].weight)] if dora else []
        ):
            assert ours_p.grad is not None and ours_p.grad.abs().sum() > 0
            torch.testing.assert_close(ours_p.grad, theirs_p.grad, atol=TOL, rtol=0)
    trainable_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    trainable_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert trainable_ours == trainable_theirs


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_dropout_in_training_matches_peft(dora):
    """Same seed, same dropout masks: with dropout on, the two still agree (DoRA's direction
    term must see the dropped input, as PEFT's does)."""
    _, ours, theirs = paired(dora, False, dropout=0.3)
    x = ids()
    ours.train(), theirs.train()
    torch.manual_seed(5)
    out_ours = ours(input_ids=x, labels=x)
    torch.manual_seed(5)
    out_theirs = theirs(input_ids=x, labels=x)
    torch.testing.assert_close(out_ours.logits, out_theirs.logits, atol=TOL, rtol=0)
    out_ours.loss.backward()
    out_theirs.loss.backward()
    for name, layer in lora_layers(ours).items():
        peft_layer = theirs.base_model.model.get_submodule(name)
        torch.testing.assert_close(
            layer.lora_A.weight.grad, peft_layer.lora_A["default"].weight.grad, atol=TOL, rtol=0
        )
    torch.manual_seed(6)
    assert not torch.allclose(ours(input_ids=x).logits, out_ours.logits)  # dropout is active


@pytest.mark.parametrize(("dora", "rslora"), VARIANTS, ids=VARIANT_IDS)
def test_merged_weights_match_merge_and_unload(dora, rslora):
    _, ours, theirs = paired(dora, rslora)
    x = ids()
    with torch.no_grad():
        before = ours(input_ids=x).logits
    merged_ours = merge_lora(ours)
    merged_theirs = theirs.merge_and_unload()
    assert not lora_layers(merged_ours)
    theirs_state = merged_theirs.state_dict()
    for key, value in merged_ours.state_dict().items():
        torch.testing.assert_close(value, theirs_state[key], atol=TOL, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(merged_ours(input_ids=x).logits, before, atol=TOL, rtol=0)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_merge_then_unmerge_restores_base(dora):
    base, ours, _ = paired(dora, False)
    x = ids()
    with torch.no_grad():
        adapted = ours(input_ids=x).logits
        merge_lora(ours, unload=False)
        assert all(layer.merged for layer in lora_layers(ours).values())
        torch.testing.assert_close(ours(input_ids=x).logits, adapted, atol=TOL, rtol=0)
        unmerge_lora(ours)
        torch.testing.assert_close(ours(input_ids=x).logits, adapted, atol=TOL, rtol=0)
        for name, layer in lora_layers(ours).items():
            original = base.get_submodule(name).weight
            torch.testing.assert_close(layer.base_layer.weight, original, atol=TOL, rtol=0)


def test_new_adapter_starts_as_the_base_model():
    base = tiny_llama()
    x = ids()
    with torch.no_grad():
        want = base(input_ids=x).logits
    for dora in (False, True):
        model = add_lora(copy.deepcopy(base), r=4, dora=dora)
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=x).logits, want, atol=TOL, rtol=0)
        layer = next(iter(lora_layers(model).values()))
        assert torch.count_nonzero(layer.lora_B.weight) == 0
        assert torch.count_nonzero(layer.lora_A.weight) == layer.lora_A.weight.numel()
        bound = 1 / layer.lora_A.in_features**0.5  # kaiming_uniform(a=sqrt(5)) bound
        assert layer.lora_A.weight.abs().max() <= bound
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        kinds = {n.removesuffix(".weight").rsplit(".", 1)[-1] for n in trainable}
        assert kinds == ({"lora_A", "lora_B", "magnitude"} if dora else {"lora_A", "lora_B"})


def test_dropout_only_touches_the_adapter_path():
    base = tiny_llama()
    model = add_lora(copy.deepcopy(base), r=4, dropout=0.5).train()
    x = ids()
    with torch.no_grad():  # B = 0: the adapter adds nothing, so dropout must change nothing
        torch.testing.assert_close(model(input_ids=x).logits, base(input_ids=x).logits)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_saved_adapter_is_a_peft_adapter(tmp_path, dora):
    base, ours, _ = paired(dora, False)
    ours.eval()
    x = ids()
    save_lora(ours, tmp_path / "adapter")
    with torch.no_grad():
        want = ours(input_ids=x).logits
        loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter")
        torch.testing.assert_close(loaded(input_ids=x).logits, want, atol=TOL, rtol=0)
        ours_again = load_lora(copy.deepcopy(base), tmp_path / "adapter")
        torch.testing.assert_close(ours_again(input_ids=x).logits, want, atol=TOL, rtol=0)


def test_target_lists_and_regex_follow_peft_rules():
    model = tiny_llama()
    names = match_target_modules(model, ["q_proj", "v_proj"])
    assert names == [n for n in linear_layer_names(model) if n.endswith(("q_proj", "v_proj"))]
    assert len(names) == 4
    regex = match_target_modules(model, r".*layers\.1\.mlp\..*_proj")
    assert regex == [f"model.layers.1.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    all_linear = match_target_modules(model, "all-linear")
    assert "lm_head" not in all_linear and len(all_linear) == 14
    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(target_modules=r".*layers\.1\.mlp\..*_proj")
    )
    peft_names = {
        n.removeprefix("base_model.model.")
        for n, m in peft_model.named_modules()
        if hasattr(m, "lora_A")
    }
    assert set(regex) == peft_names


def test_pattern_matching_nothing_lists_the_linear_layers():
    with pytest.raises(ValueError, match="matches no linear layer") as err:
        add_lora(tiny_llama(), target_modules=["query_key_value"])
    message = str(err.value)
    for leaf in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert leaf in message


@pytest.mark.parametrize("r", [0, -2, 33])
def test_bad_rank_is_rejected_before_any_change(r):
    model = tiny_llama()
    with pytest.raises(ValueError, match="rank r=") as err:
        add_lora(model, r=r)
    assert ("positive" in str(err.value)) if r <= 0 else ("larger than the layer" in str(err.value))
    assert not lora_layers(model)  # nothing was wrapped
    assert all(p.requires_grad for p in model.parameters())


def test_family_defaults_agree_with_peft():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT

    shared = set(DEFAULT_TARGET_MODULES) & set(PEFT)
    assert {"llama", "qwen2", "bloom", "falcon", "chatglm", "gpt2"} <= shared
    for family in shared:
        assert default_target_modules(family) == list(PEFT[family]), family
    assert default_target_modules("baichuan") == ["W_pack"]
    assert default_target_modules("qwen") == ["c_attn"]
    assert default_target_modules(tiny_llama()) == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match="known families"):
        default_target_modules("not-a-family")


def test_freeze_all_but_last_trains_only_the_last_blocks():
    model = freeze_all_but_last(tiny_llama(), 1, train_extra=["norm"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm")) for n in trainable)
    assert any(n.startswith("model.layers.1.") for n in trainable)
    x = ids()
    model(input_ids=x, labels=x).loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is None
    assert model.model.layers[1].self_attn.q_proj.weight.grad is not None
    with pytest.raises(ValueError, match="1..2"):
        freeze_all_but_last(tiny_llama(), 3)


def test_loraplus_gives_b_the_larger_learning_rate():
    from peft.optimizers import create_loraplus_optimizer as peft_loraplus

    _, ours, theirs = paired(True, False)
    opt = create_loraplus_optimizer(ours, lr=1e-4, ratio=16)
    ref = peft_loraplus(theirs, torch.optim.AdamW, lr=1e-4, loraplus_lr_ratio=16)

    def sizes_by_lr(optimizer):
        out = {}
        for group in optimizer.param_groups:
            out.setdefault(group["lr"], []).extend(sorted(p.numel() for p in group["params"]))
        return {lr: sorted(v) for lr, v in out.items() if v}

    assert sizes_by_lr(opt) == sizes_by_lr(ref)
    b_ids = {id(layer.lora_B.weight) for layer in lora_layers(ours).values()}
    fast = next(g for g in opt.param_groups if g["lr"] == pytest.approx(1.6e-3))
    assert b_ids <= {id(p) for p in fast["params"]}


def test_peft_config_for_each_tuning():
    lora = peft_config_for("lora", r=16, alpha=32, family="llama")
    assert lora.r == 16 and lora.lora_alpha == 32 and not lora.use_dora
    assert set(lora.target_modules) == {"q_proj", "v_proj"}
    assert peft_config_for("dora").use_dora
    assert peft_config_for("qlora", target_modules=["W_pack"]).target_modules == {"W_pack"}
    assert peft_config_for("lora").target_modules == "all-linear"
    with pytest.raises(ValueError, match="must be 'lora', 'dora' or 'qlora'"):
        peft_config_for("prefix")
    with pytest.raises(ValueError, match="positive"):
        peft_config_for("lora", r=0)


def test_lora_layer_math_is_the_formula():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    layer = LoRALinear(base, r=2, alpha=6, rslora=True)
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 16)
    scaling = 6 / 2**0.5
    want = (
        x @ base.weight.T
        + base.bias
        + scaling * (x @ layer.lora_A.weight.T) @ layer.lora_B.weight.T
    )
    torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize(
    ("dora", "rslora"), [(False, False), (True, True)], ids=["lora", "dora+rs"]
)
def test_compare_with_peft_reports_tiny_differences(dora, rslora):
    diffs = compare_with_peft(tiny_llama(), ids(), r=4, alpha=8, dora=dora, rslora=rslora)
    assert set(diffs) == {"logits", "loss", "adapter grads", "merged weights"}
    assert max(diffs.values()) <= TOL, diffs
    assert diffs["adapter grads"] >= 0 and diffs["logits"] >= 0
