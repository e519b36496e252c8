"""configs/accelerate/*.yaml: each parses, and accelerate 1.15 turns it into its plugin (no launch).

`accelerate launch` copies unknown keys onto its arguments without complaint, so a misspelt key
would be silently ignored; these tests run the launcher's own validation and environment
preparation, then build the DDP / FSDP / DeepSpeed plugin from that environment.
"""

import os
import re
import subprocess
import sys
import textwrap
from unittest import mock

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from dojo import paths

CONFIG_DIR = paths.CONFIGS_DIR / "accelerate"
EXPECTED = {"ddp", "ddp_cpu_2proc", "fsdp", "deepspeed_zero2", "deepspeed_zero3"}
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def launch_args(config_file):
    """The launcher's arguments after it has merged the config file (what `accelerate launch` does)."""
    args = launch_command_parser().parse_args(
        ["--config_file", str(config_file), "-m", "dojo.train"]
    )
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    return args


def launch_env(args) -> dict:
    """The environment the launcher would give each training process."""
    if args.use_deepspeed:
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_all_documented_configs_exist():
    assert {p.stem for p in CONFIGS} == EXPECTED
    readme = (CONFIG_DIR / "README.md").read_text()
    for name in EXPECTED:
        assert f"{name}.yaml" in readme


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_into_accelerate(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict) and "distributed_type" in raw
    assert path.read_text().lstrip().startswith("#"), (
        "each config opens with a comment saying what it is for"
    )
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)

    # Every nested key must be an argument of `accelerate launch`, or it would be silently ignored.
    known = {action.dest for action in launch_command_parser()._actions}
    for section, prefix in [("fsdp_config", "fsdp_"), ("deepspeed_config", "")]:
        for key in raw.get(section, {}):
            name = key if key.startswith(prefix) else prefix + key
            assert name in known, (
                f"{path.name}: {section}.{key} is not an `accelerate launch` option"
            )

    env = launch_env(launch_args(path))
    assert (
        env["ACCELERATE_MIXED_PRECISION"] == "no"
    )  # the recipe, not this file, picks the precision


def test_fsdp_config_builds_an_fsdp2_plugin():
    args = launch_args(CONFIG_DIR / "fsdp.yaml")
    assert args.use_fsdp and args.num_processes == 2
    with mock.patch.dict(os.environ, launch_env(args), clear=True):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.cpu_ram_efficient_loading is True
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.transformer_cls_names_to_wrap is None  # taken from the model's _no_split_modules


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_build_their_zero_stage(stage):
    args = launch_args(CONFIG_DIR / f"deepspeed_zero{stage}.yaml")
    assert args.use_deepspeed
    with mock.patch.dict(os.environ, launch_env(args), clear=True):
        plugin = DeepSpeedPlugin()
    ds = plugin.deepspeed_config
    assert ds["zero_optimization"]["stage"] == stage
    # Batch size, accumulation and clipping stay "auto": the recipe's TrainingArguments fill them.
    assert ds["gradient_accumulation_steps"] == "auto" and ds["gradient_clipping"] == "auto"
    assert plugin.zero3_init_flag is (stage == 3)
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_ddp_configs():
    for name, cpu in [("ddp", False), ("ddp_cpu_2proc", True)]:
        config = load_config_from_file(str(CONFIG_DIR / f"{name}.yaml"))
        assert config.distributed_type == DistributedType.MULTI_GPU  # torchrun: one process each
        assert config.use_cpu is cpu
        args = launch_args(CONFIG_DIR / f"{name}.yaml")
        assert args.multi_gpu and args.num_processes == 2


@pytest.mark.slow
def test_ddp_cpu_2proc_starts_two_gloo_processes(tmp_path):
    """The CPU config through the real launcher: two processes in one gloo group."""
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch, torch.distributed as dist
            from accelerate import PartialState
            state = PartialState(cpu=True)  # what TrainingArguments(use_cpu=True) does
            total = torch.tensor([state.process_index + 1.0])
            dist.all_reduce(total)
            print(f"rank={state.process_index} world={state.num_processes} "
                  f"backend={state.backend} sum={total.item():.0f}", flush=True)
            # leaving without this can abort a gloo rank at exit ("terminate called ...")
            dist.destroy_process_group()
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(CONFIG_DIR / "ddp_cpu_2proc.yaml"), "--main_process_port", "0", str(script)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the two ranks write to one pipe at once, so their lines can run together
    lines = sorted(re.findall(r"rank=\d world=\d backend=\w+ sum=\d+", result.stdout))
    assert lines == [
        "rank=0 world=2 backend=gloo sum=3",
        "rank=1 world=2 backend=gloo sum=3",
    ]
