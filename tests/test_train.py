"""dojo.train end to end on dojo-tiny: the run folder, every method and tuning for a few steps,
and the stop on a non-finite loss."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
import yaml

from dojo import paths
from dojo.train import load_config, train
from dojo.train.folder import MetricsLogger, NonFiniteLossError, resolve_run_dir

pytestmark = pytest.mark.skipif(not paths.TINY_MODEL.exists(), reason="dojo-tiny not built")

# A handful of steps on a handful of records: enough to run every code path.
FEW_STEPS = dict(
    max_steps=2,
    per_device_train_batch_size=4,
    max_samples=16,
    max_length=48,
    logging_steps=1,
    save_strategy="no",
    accuracy_samples=0,
    sample_prompts=0,
)


def test_default_recipe_writes_the_run_folder(tmp_path):
    result = train(
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        per_device_train_batch_size=8,
        accuracy_samples=6,
        sample_prompts=2,
        hub_token="hf_not_a_real_token",
        output_dir=str(tmp_path / "run"),
    )
    run = result.run_dir
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"] == "sft" and config["max_steps"] == 4
    assert "hf_not_a_real_token" not in (run / "config.yaml").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert (run / "loss.png").stat().st_size > 1000
    for name in ("samples_start.jsonl", "samples_end.jsonl"):
        samples = (run / name).read_text().splitlines()
        assert len(samples) == 2 and "reply" in json.loads(samples[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["effective_batch_size"] == 8
    assert summary["tokens_per_s"] > 0 and math.isfinite(summary["train_loss"])
    assert summary["accuracy_before"]["total"] == 6 == summary["accuracy_after"]["total"]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (run / "checkpoint-4" / "optimizer.pt").exists()
    assert (run / "model" / "model.safetensors").exists()
    assert (run / "model" / "tokenizer.json").exists()
    # a finished run is kept: the same command starts a fresh folder next to it
    assert resolve_run_dir(tmp_path / "run") == tmp_path / "run-2"


def _linear_types(model) -> set[str]:
    return {type(m).__name__ for m in model.modules()}


CASES = {
    "pretrain": dict(method="pretrain"),
    "sft-freeze": dict(tuning="freeze", freeze_trainable_layers=1),
    "sft-lora": dict(tuning="lora"),
    "sft-dora": dict(tuning="dora"),
    "sft-qlora": dict(tuning="qlora"),
    "sft-lora-8bit": dict(tuning="lora", load_in_8bit=True),
    "dpo": dict(method="dpo"),
    "dpo-ipo": dict(method="dpo", loss_type="ipo"),
    "dpo-hinge": dict(method="dpo", loss_type="hinge"),
    "simpo": dict(method="simpo", loss_type="simpo", cpo_alpha=0.0),
    "orpo": dict(method="orpo"),
    "kto": dict(method="kto"),
    "grpo": dict(
        method="grpo", reward_funcs=["exact_answer"], num_generations=4, max_completion_length=8
    ),
    "reward": dict(method="reward"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_method_and_tuning_trains(case, tmp_path):
    overrides = {**FEW_STEPS, **CASES[case], "output_dir": str(tmp_path / case)}
    if case == "grpo":
        overrides.pop("max_length")
    config = load_config(overrides=overrides)
    result = train(config)
    summary = result.summary
    assert summary["steps"] == 2
    losses = [r["loss"] for r in _metrics(result.run_dir) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    model, saved = result.model, result.run_dir / "model"
    tuning = config.dojo.tuning
    if tuning in ("lora", "dora", "qlora"):
        adapter = json.loads((saved / "adapter_config.json").read_text())
        assert adapter["use_dora"] is (tuning == "dora")
        assert "lora_A" in " ".join(n for n, p in model.named_parameters() if p.requires_grad)
    if tuning == "qlora":
        assert "Linear4bit" in _linear_types(model)
    if config.model.load_in_8bit:
        assert "Linear8bitLt" in _linear_types(model)
    if tuning == "freeze":
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(".layers.3." in n or n == "model.norm.weight" for n in trainable)


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_non_finite_loss_stops_the_run_with_a_hint(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    logger = MetricsLogger(tmp_path)
    state = SimpleNamespace(is_world_process_zero=True, global_step=12)
    logger.on_log(None, state, None, logs={"loss": 1.5})
    with pytest.raises(NonFiniteLossError) as info:
        logger.on_log(None, state, None, logs={"loss": float("nan")})
    message = str(info.value)
    assert "at step 12" in message and "checkpoint-10" in message
    assert "learning_rate" in message
    assert len(_metrics(tmp_path)) == 2


def test_trained_model_reloads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dojo.infer.generate import generate_replies

    result = train(**FEW_STEPS, output_dir=str(tmp_path / "run"))
    saved = result.run_dir / "model"
    model = AutoModelForCausalLM.from_pretrained(saved)
    tokenizer = AutoTokenizer.from_pretrained(saved)
    for a, b in zip(model.parameters(), result.model.parameters()):
        torch.testing.assert_close(a, b)
    assert generate_replies(model, tokenizer, [[{"role": "user", "content": "2 + 2 = ?"}]])
