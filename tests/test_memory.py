"""The training-memory planner: parameter counts of real configs, structure, and measured peaks."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from dojo.adapters import estimate_memory, measure_peak_memories, memory_table
from dojo.adapters.memory import MODEL_CONFIGS, architecture

GIB = 1024**3


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_parameter_counts_match_transformers(name):
    values = {k: v for k, v in MODEL_CONFIGS[name].items() if k != "model_type"}
    qwen = MODEL_CONFIGS[name]["model_type"] == "qwen2"
    with torch.device("meta"):  # shapes only, no memory
        if qwen:
            values.pop("attention_bias")
            model = Qwen2ForCausalLM(Qwen2Config(**values))
        else:
            model = LlamaForCausalLM(LlamaConfig(**values))
    assert architecture(name).num_params() == sum(p.numel() for p in model.parameters())


def test_known_sizes():
    assert architecture("Qwen/Qwen2.5-0.5B").num_params() == 494_032_768
    assert architecture("meta-llama/Llama-2-7b-hf").num_params() == 6_738_415_616
    assert round(architecture("meta-llama/Meta-Llama-3-70B").num_params() / 1e9, 1) == 70.6


def test_estimate_terms_follow_the_method():
    name = "meta-llama/Llama-2-7b-hf"
    params = architecture(name).num_params()
    full = estimate_memory(name, "full", "bf16", 1, 512, "adamw", False)
    lora = estimate_memory(name, "lora", "bf16", 1, 512, "adamw", False)
    qlora = estimate_memory(name, "qlora", "bf16", 1, 512, "adamw", False)
    assert full.weights == 2 * params and full.gradients == 2 * params
    assert full.optimizer == 4 * params  # two bf16 moments per parameter
    assert lora.trainable_params == qlora.trainable_params < 0.01 * params
    assert lora.optimizer == 8 * lora.trainable_params  # fp32 adapters, two fp32 moments
    assert full.total > lora.total > qlora.total
    assert 3.5 < qlora.weights / GIB < 4.5  # ~0.52 bytes per block weight + fp32 embeddings
    assert lora.activations == qlora.activations
    ckpt = estimate_memory(name, "lora", "bf16", 1, 512, "adamw", True)
    assert ckpt.activations < lora.activations / 4
    longer = estimate_memory(name, "lora", "bf16", 2, 512, "adamw", False)
    assert longer.activations == pytest.approx(2 * lora.activations)
    eight_bit = estimate_memory(name, "full", "bf16", 1, 512, "adamw_8bit", False)
    assert eight_bit.optimizer == 2 * params


def test_planner_accepts_dicts_and_folders(tmp_path):
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config.save_pretrained(tmp_path)
    from_dict = estimate_memory(config.to_dict(), "full", "fp32", 1, 8)
    from_folder = estimate_memory(tmp_path, "full", "fp32", 1, 8)
    with torch.device("meta"):
        params = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    assert from_dict.total == from_folder.total and from_dict.total_params == params


def test_bad_planner_input():
    with pytest.raises(ValueError, match="method="):
        estimate_memory("Qwen/Qwen2.5-0.5B", "prefix")
    with pytest.raises(ValueError, match="precision="):
        estimate_memory("Qwen/Qwen2.5-0.5B", "lora", "int3")
    with pytest.raises(ValueError, match="optimizer="):
        estimate_memory("Qwen/Qwen2.5-0.5B", "lora", optimizer="lion")
    with pytest.raises(ValueError, match="unknown model"):
        estimate_memory("no/such-model", "lora")


def test_memory_table_has_every_size_and_method():
    rows = memory_table()
    assert [(r["model"], r["method"]) for r in rows][:3] == [
        ("Qwen2.5-0.5B", "full"),
        ("Qwen2.5-0.5B", "lora"),
        ("Qwen2.5-0.5B", "qlora"),
    ]
    assert len(rows) == 9
    seventy = {r["method"]: r["total"] for r in rows if r["model"] == "Meta-Llama-3-70B"}
    assert seventy["full"] > 500 and seventy["qlora"] < 60  # GiB


# A random Llama of ~20M parameters (~76 MiB in float32): big enough that the interpreter's own
# resident-memory noise (a few MiB) cannot decide the outcome, small enough that all three
# methods train two steps in one subprocess in well under a minute on a loaded 2-core machine.
LARGER = {
    "vocab_size": 8192,
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}
MEASURED = {"batch": 2, "seq_len": 128, "precision": "fp32", "gradient_checkpointing": False}


@pytest.fixture(scope="module")
def measured():
    """One fresh subprocess trains two AdamW steps per method and reports its peak RSS growth."""
    pytest.importorskip("bitsandbytes")
    return measure_peak_memories(LARGER, ("full", "lora", "qlora"), steps=2, **MEASURED)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_estimate_is_within_20_percent_of_measured_peak(measured, method):
    result = measured[method]
    estimate = estimate_memory(
        LARGER,
        method,
        MEASURED["precision"],
        MEASURED["batch"],
        MEASURED["seq_len"],
        "adamw",
        MEASURED["gradient_checkpointing"],
    )
    ratio = estimate.total / result["peak"]
    print(
        f"{method}: estimate {estimate.total / 2**20:.1f} MiB, measured {result['peak'] / 2**20:.1f} MiB, ratio {ratio:.3f}"
    )
    assert 0.8 <= ratio <= 1.2, (method, ratio, result, estimate)
    # The planner's weight term is the model as it really sits in memory: the measured growth
    # after building it matches both the tensors' bytes and the estimate (QLoRA's 4-bit
    # linears with their double-quantised constants included).
    assert result["model_loaded"] == pytest.approx(result["model_tensors"], rel=0.1)
    assert result["model_tensors"] == pytest.approx(estimate.weights, rel=0.05)


@pytest.mark.slow
def test_measured_peaks_order_the_methods(measured):
    peaks = {method: result["peak"] for method, result in measured.items()}
    tensors = {method: result["model_tensors"] for method, result in measured.items()}
    # full fine-tuning adds a gradient and two AdamW moments per weight: more than twice LoRA
    assert peaks["full"] > 2 * peaks["lora"]
    # QLoRA saves what 4-bit storage saves, and nothing else changes (same adapters, same
    # activations): the two peaks differ by the difference of the weights' bytes
    saved = tensors["lora"] - tensors["qlora"]
    assert saved > 0.4 * tensors["lora"]
    assert peaks["lora"] - peaks["qlora"] == pytest.approx(saved, rel=0.2)


def test_bad_measurement_input():
    with pytest.raises(ValueError, match="methods="):
        measure_peak_memories(LARGER, ("prefix",))
