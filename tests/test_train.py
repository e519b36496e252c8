"""dojo.train end to end on dojo-tiny: the run folder, every method and tuning for a few steps,
and the stop on a non-finite loss."""

import json
import math
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from dojo import paths
from dojo.train import load_config, train
from dojo.train.__main__ import main
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


def _flags(**values) -> list[str]:
    return [x for key, value in values.items() for x in (f"--{key}", str(value))]


# A handful of steps on a handful of records, as command-line flags on top of a recipe file.
FEW_STEP_FLAGS = _flags(**FEW_STEPS)

# Every method's CPU recipe, as `python -m dojo.train --config configs/<recipe> <flags>` runs it
# (plus DPO's IPO and hinge losses, one flag away).
RECIPES = {
    "pretrain": ("pretrain_tiny_cpu.yaml", []),
    "sft": ("sft_tiny_cpu.yaml", []),
    "dpo": ("dpo_tiny_cpu.yaml", []),
    "dpo-ipo": ("dpo_tiny_cpu.yaml", ["--loss_type", "ipo"]),
    "dpo-hinge": ("dpo_tiny_cpu.yaml", ["--loss_type", "hinge"]),
    "simpo": ("simpo_tiny_cpu.yaml", []),
    "orpo": ("orpo_tiny_cpu.yaml", []),
    "kto": ("kto_tiny_cpu.yaml", []),
    "grpo": ("grpo_tiny_cpu.yaml", _flags(num_generations=4, max_completion_length=8)),
    "reward": ("reward_tiny_cpu.yaml", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", RECIPES)
def test_every_method_recipe_runs_from_the_command_line(case, tmp_path, capsys):
    recipe, extra = RECIPES[case]
    flags = list(FEW_STEP_FLAGS)
    if case == "grpo":  # GRPO has no max_length: prompts and completions are bounded apart
        i = flags.index("--max_length")
        del flags[i : i + 2]
    argv = ["--config", str(paths.CONFIGS_DIR / recipe), *flags, *extra]
    assert main([*argv, "--output_dir", str(tmp_path / case)]) == 0
    run = tmp_path / case
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"] == yaml.safe_load((paths.CONFIGS_DIR / recipe).read_text())["method"]
    if extra[:1] == ["--loss_type"]:
        assert config["loss_type"] == [extra[1]]  # TRL keeps loss types as a list
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["effective_batch_size"] == 4
    metric = "reward" if case == "grpo" else "loss"
    values = [r[metric] for r in _metrics(run) if metric in r]
    assert len(values) == 2 and all(math.isfinite(x) for x in values)
    assert (run / "model").is_dir() and any((run / "model").glob("*.safetensors"))
    assert "effective batch size: 4 per device x 1 accumulation x 1 processes = 4" in (
        capsys.readouterr().out
    )


TUNINGS = {
    "freeze": ["--tuning", "freeze", "--freeze_trainable_layers", "1"],
    "lora": ["--tuning", "lora"],
    "dora": ["--tuning", "dora"],
    "qlora": ["--tuning", "qlora"],
    "lora-8bit": ["--tuning", "lora", "--load_in_8bit"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", TUNINGS)
def test_every_tuning_trains(case, tmp_path):
    recipe = "sft_tiny_cpu.yaml" if case == "freeze" else "sft_tiny_lora_cpu.yaml"
    argv = ["--config", str(paths.CONFIGS_DIR / recipe), *FEW_STEP_FLAGS, *TUNINGS[case]]
    config = load_config([*argv, "--output_dir", str(tmp_path / case)])
    result = train(config)  # what `python -m dojo.train ARGV` runs
    assert result.summary["steps"] == 2
    losses = [r["loss"] for r in _metrics(result.run_dir) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    model, saved = result.model, result.run_dir / "model"
    tuning = config.dojo.tuning
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if tuning in ("lora", "dora", "qlora"):
        adapter = json.loads((saved / "adapter_config.json").read_text())
        assert adapter["use_dora"] is (tuning == "dora")
        assert trainable and all("lora_" in n for n in trainable)
    if tuning == "qlora":
        assert "Linear4bit" in _linear_types(model)
    if config.model.load_in_8bit:
        assert "Linear8bitLt" in _linear_types(model)
    if tuning == "freeze":
        assert trainable and all(".layers.3." in n or n == "model.norm.weight" for n in trainable)


def _subprocess_env() -> dict:
    # the subprocess imports this checkout's dojo, one thread each (2-core CI machines)
    path = os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "DOJO_PROFILE": "cpu", "PYTHONPATH": path}


# A driver that runs `python -m dojo.train` but SIGKILLs itself while saving the checkpoint of
# step KILL_AT (weights and optimizer written, RNG and trainer state not yet), as a preempted
# job or an out-of-memory kill would: no clean shutdown, a checkpoint cut in half.
KILLER = """
import os, signal, sys
import transformers

save_rng_state = transformers.Trainer._save_rng_state

def killed_while_saving(self, output_dir):
    if self.state.global_step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return save_rng_state(self, output_dir)

transformers.Trainer._save_rng_state = killed_while_saving
from dojo.train.__main__ import main
sys.exit(main())
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_loss(tmp_path):
    argv = _flags(
        max_steps=6,
        save_steps=2,
        save_total_limit=2,
        per_device_train_batch_size=4,
        max_samples=64,
        max_length=48,
        logging_steps=1,
        accuracy_samples=0,
        sample_prompts=0,
    )
    run = tmp_path / "run"
    command = [*argv, "--output_dir", str(run)]
    (tmp_path / "killer.py").write_text(KILLER)
    env = _subprocess_env()
    killed = subprocess.run(
        [sys.executable, str(tmp_path / "killer.py"), *command],
        cwd=tmp_path, env={**env, "KILL_AT": "4"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run / "summary.json").exists()
    # the checkpoint being saved never appears under its name: it was still in staging
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    half = run / ".checkpoint-staging" / "checkpoint-4"
    assert (half / "optimizer.pt").exists() and not (half / "trainer_state.json").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "dojo.train", *command],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run folder: {run} (resuming from checkpoint-2)" in resumed.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["steps"] == 6
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert not (run / ".checkpoint-staging").exists()

    straight = train(load_config([*argv, "--output_dir", str(tmp_path / "straight")]))
    losses = {r["step"]: r["loss"] for r in _metrics(run) if "loss" in r}
    expected = {r["step"]: r["loss"] for r in _metrics(straight.run_dir) if "loss" in r}
    assert sorted(losses) == list(range(1, 7))  # steps 3-6 logged once, by the resumed run
    assert losses == pytest.approx(expected, rel=1e-5, abs=1e-6)
    for a, b in zip(
        AutoModelForCausalLM.from_pretrained(run / "model").parameters(),
        straight.model.parameters(),
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# Each method once through the launcher (DPO's loss variants share DPO's code path).
LAUNCHED = [c for c in RECIPES if not c.startswith("dpo-")]


@pytest.mark.slow
@pytest.mark.parametrize("case", LAUNCHED)
def test_every_method_runs_in_two_cpu_processes_through_accelerate_launch(case, tmp_path):
    """`accelerate launch -m dojo.train` with the project's 2-process CPU config (gloo)."""
    recipe, extra = RECIPES[case]
    run = tmp_path / "run"
    flags = FEW_STEP_FLAGS + ["--max_samples", "32", "--output_dir", str(run)]
    if case == "grpo":  # GRPO has no max_length: prompts and completions are bounded apart
        i = flags.index("--max_length")
        del flags[i : i + 2]
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(paths.CONFIGS_DIR / "accelerate" / "ddp_cpu_2proc.yaml"), "--main_process_port", "0",
         "-m", "dojo.train", "--config", str(paths.CONFIGS_DIR / recipe), *flags, *extra],
        cwd=tmp_path, env=_subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # printed once (by the main process), with the world size of the gloo group
    assert result.stdout.count("effective batch size:") == 1
    assert "4 per device x 1 accumulation x 2 processes = 8" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["effective_batch_size"] == 8 and summary["steps"] == 2
    rows = [r for r in _metrics(run) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]  # logged by one process only


def test_unknown_key_fails_before_any_model_loads(monkeypatch, capsys):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the recipe was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    recipe = str(paths.CONFIGS_DIR / "dpo_tiny_cpu.yaml")
    assert main(["--config", recipe, "--bata", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'bata'" in err and "did you mean 'beta'" in err


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
    from transformers import AutoTokenizer

    from dojo.infer.generate import generate_replies

    result = train(**FEW_STEPS, output_dir=str(tmp_path / "run"))
    saved = result.run_dir / "model"
    model = AutoModelForCausalLM.from_pretrained(saved)
    tokenizer = AutoTokenizer.from_pretrained(saved)
    for a, b in zip(model.parameters(), result.model.parameters()):
        torch.testing.assert_close(a, b)
    assert generate_replies(model, tokenizer, [[{"role": "user", "content": "2 + 2 = ?"}]])
