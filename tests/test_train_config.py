"""dojo.train.config: recipes resolve before any model loads, and bad ones fail with the key,
where it came from, and what to write instead."""

from pathlib import Path

import pytest
import yaml

from dojo import paths
from dojo.train import ConfigError, load_config
from dojo.train.__main__ import main
from dojo.train.config import DEFAULT_RECIPE, help_text, parse_cli

CONFIGS = sorted(paths.CONFIGS_DIR.glob("*.yaml"))


def _error(*argv: str, **overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(list(argv), overrides=overrides or None)
    return str(info.value)


def test_no_arguments_is_the_default_recipe():
    config = load_config([])
    assert config.dojo.method == "sft" and config.dojo.tuning == "full"
    assert Path(config.model.model_name_or_path).resolve() == paths.TINY_MODEL
    assert Path(config.dojo.dataset).resolve() == paths.DATA_DIR / "sft" / "arithmetic_train.jsonl"
    assert config.trainer.learning_rate == DEFAULT_RECIPE["learning_rate"]
    assert config.trainer.assistant_only_loss is True
    assert config.sources["max_steps"] == "the default recipe"
    # the cpu profile: fp32 on the CPU, and use_cpu so launched processes form a gloo group
    assert config.trainer.use_cpu is True and config.trainer.bf16 is False
    assert config.trainer.output_dir == str(Path("runs") / "sft-full-dojo-tiny")


def test_sft_tiny_cpu_recipe_is_the_default_recipe():
    recipe = yaml.safe_load((paths.CONFIGS_DIR / "sft_tiny_cpu.yaml").read_text())
    assert recipe == DEFAULT_RECIPE


def test_precedence_flags_over_file_over_profile(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\nlearning_rate: 0.01\nmax_steps: 7\n")
    config = load_config(["--config", str(recipe), "--max_steps", "3", "--seed=5"])
    assert config.trainer.learning_rate == 0.01  # from the file
    assert (config.trainer.max_steps, config.trainer.seed) == (3, 5)  # flags win
    assert config.sources["learning_rate"] == f"{recipe} line 2"
    assert config.sources["per_device_train_batch_size"] == "the cpu profile"


def test_cli_values_take_the_field_type():
    config = load_config(["--logging_steps", "2", "--reward_funcs", "a,b", "--packing"])
    assert config.trainer.logging_steps == 2 and config.trainer.packing is True
    assert config.dojo.reward_funcs == ["a", "b"]
    assert config.trainer.report_to == []  # "none" stays the string TRL expects, not None
    assert parse_cli(["--config", "x.yaml", "--a-b=1"]) == (Path("x.yaml"), {"a_b": "1"})


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    assert "did you mean 'learning_rate'" in _error("--learnig_rate", "1e-4")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dpo\n\nbetta: 0.1\n")
    message = _error("--config", str(recipe))
    assert "unknown key 'betta'" in message and "did you mean 'beta'" in message
    assert f"{recipe} line 3" in message
    # a key of another method's trainer is unknown to this one
    assert "unknown key 'num_generations'" in _error("--num_generations", "4")


def test_unknown_method_and_tuning():
    assert "did you mean 'grpo'" in _error("--method", "gpro")
    assert "did you mean 'qlora'" in _error("--tuning", "qlor")


def test_wrong_type_names_key_and_source(tmp_path):
    assert _error("--max_steps", "ten") == (
        "max_steps: expected int, got 'ten' (from the command line)"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: [1, 2]\n")
    assert f"learning_rate: expected float, got [1, 2] (from {recipe} line 1)" in _error(
        "--config", str(recipe)
    )
    assert "expected bool" in _error("--packing", "maybe")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tuning", "full", "--load_in_4bit"], "quantized weights cannot be trained directly"),
        (["--tuning", "freeze", "--load_in_8bit"], "quantized weights cannot be trained directly"),
        (["--tuning", "qlora", "--load_in_8bit"], "tuning=qlora loads 4-bit weights"),
        (["--method", "grpo"], "method=grpo needs at least one reward"),
        (["--method", "grpo", "--reward_funcs", "exact_answr"], "Did you mean 'exact_answer'"),
        (
            ["--method", "kto", "--per_device_train_batch_size", "1"],
            "needs per_device_train_batch_size >= 2",
        ),
    ],
)
def test_inconsistent_combinations_are_refused(argv, expected):
    assert expected in _error(*argv)


def test_missing_files_fail_before_any_model_loads():
    assert _error("--dataset", "data/sft/nope.jsonl").startswith(
        "dataset: data/sft/nope.jsonl does not exist (from the command line)"
    )
    assert "model_name_or_path: ./no-such-model does not exist" in _error(
        "--model_name_or_path", "./no-such-model"
    )
    assert "config file missing.yaml does not exist" in _error("--config", "missing.yaml")
    # a hub name is left for the hub
    assert load_config(["--dataset", "org/some-dataset"]).dojo.dataset == "org/some-dataset"


def test_paths_resolve_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(["--config", str(paths.CONFIGS_DIR / "dpo_tiny_cpu.yaml")])
    assert Path(config.dojo.dataset).is_file()


def test_bad_yaml_and_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [sft\n")
    assert "not valid YAML" in _error("--config", str(bad))
    bad.write_text("- sft\n")
    assert "a recipe is a mapping" in _error("--config", str(bad))


def test_secrets_are_not_recorded():
    config = load_config(["--hub_token", "hf_secret"])
    assert config.to_dict()["hub_token"] == "<redacted>"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_parses(path):
    # use_cpu: transformers refuses bf16 without a GPU unless told to run on the CPU
    config = load_config(path=path, overrides={"use_cpu": True})
    recipe = yaml.safe_load(path.read_text())
    assert config.dojo.method == recipe["method"]
    if path.name.endswith("_cpu.yaml"):
        assert Path(config.model.model_name_or_path).is_dir()
        assert Path(config.dojo.dataset).exists()
    else:  # real-model recipes name real hub models and datasets (checked by hand)
        assert config.model.model_name_or_path in REAL_MODELS
        assert config.dojo.dataset in REAL_DATASETS


REAL_MODELS = {"Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct"}
REAL_DATASETS = {
    "HuggingFaceH4/ultrachat_200k",
    "trl-lib/ultrafeedback_binarized",
    "trl-lib/kto-mix-14k",
}


def test_every_method_has_a_cpu_recipe():
    from dojo.train.config import METHODS

    names = {p.name for p in CONFIGS}
    assert {f"{m}_tiny_cpu.yaml" for m in METHODS} <= names


def test_cli_help_and_errors(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--learning_rate" in out and "--tuning" in out and "--lora_r" in out
    assert "--beta" in help_text("dpo")
    assert main(["--max_stepz", "3"]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err
