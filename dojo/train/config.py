"""The typed training config: one flat set of keys from YAML and the command line.

Notable choices:
- A recipe is flat, like TRL's: `dojo.train`'s own keys (`DojoArgs`), TRL's `ModelConfig` keys
  (`model_name_or_path`, `lora_r`, `load_in_4bit`…) and the keys of the method's TRL config
  class (`SFTConfig`, `DPOConfig`…), so a key means what the TRL field of that name means.
- Everything is checked before any model loads: an unknown key names the closest valid one,
  a value of the wrong type names the key and where it came from, and inconsistent
  combinations (4-bit weights with full tuning, GRPO without a reward) are refused.
- Precedence: dataclass defaults < the profile's defaults < the YAML file < command-line flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import dojo
from dojo import paths


class ConfigError(ValueError):
    """A recipe that cannot run: says which key, where it came from, and what to do."""


TUNINGS = ("full", "freeze", "lora", "dora", "qlora")


@dataclass
class DojoArgs:
    """dojo.train's own keys; everything else belongs to TRL's ModelConfig or trainer config."""

    method: str = field(
        default="sft",
        metadata={"help": "pretrain | sft | dpo | simpo | orpo | kto | grpo | reward"},
    )
    tuning: str = field(
        default="full",
        metadata={"help": "full | freeze | lora | dora | qlora (LoRA on 4-bit weights)"},
    )
    freeze_trainable_layers: int = field(
        default=2, metadata={"help": "tuning=freeze: train only the last N decoder blocks"}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "training data: a local file or folder, or a hub dataset name"},
    )
    dataset_split: str | None = field(default=None, metadata={"help": "split of a hub dataset"})
    dataset_format: str | None = field(
        default=None, metadata={"help": "override format auto-detection (e.g. sharegpt, alpaca)"}
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "held-out data for the eval loss; default: the dataset's *_eval file"},
    )
    max_samples: int | None = field(default=None, metadata={"help": "use at most N records"})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "use at most N held-out records for the eval loss"}
    )
    accuracy_dataset: str | None = field(
        default=None,
        metadata={"help": "held-out problems with an `answer`, scored before and after training"},
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "GRPO rewards by name from dojo.rewards, e.g. [exact_answer, format]"},
    )
    accuracy_samples: int = field(
        default=100,
        metadata={"help": "held-out problems scored before and after training (0: skip)"},
    )
    sample_prompts: int = field(
        default=3, metadata={"help": "generations written to the run folder at start and end"}
    )
    profile: str | None = field(
        default=None, metadata={"help": "cpu | gpu; default: $DOJO_PROFILE, else by CUDA"}
    )


def method_config_class(method: str) -> type:
    """The TRL config class whose keys a recipe of `method` may use."""
    import trl

    classes = {
        "pretrain": trl.SFTConfig,
        "sft": trl.SFTConfig,
        "dpo": trl.DPOConfig,
        "kto": trl.KTOConfig,
        "grpo": trl.GRPOConfig,
        "reward": trl.RewardConfig,
    }
    if method in ("orpo", "simpo"):  # TRL keeps these two under trl.experimental
        from trl.experimental.cpo import CPOConfig
        from trl.experimental.orpo import ORPOConfig

        classes.update(orpo=ORPOConfig, simpo=CPOConfig)
    if method not in classes:
        raise ConfigError(_unknown("method", method, METHODS))
    return classes[method]


METHODS = ("pretrain", "sft", "dpo", "simpo", "orpo", "kto", "grpo", "reward")


@dataclass
class RunConfig:
    """A resolved recipe: dojo's keys, TRL's model keys, and the method's trainer config."""

    dojo: DojoArgs
    model: Any  # trl.ModelConfig
    trainer: Any  # trl.SFTConfig, trl.DPOConfig, ...
    sources: dict[str, str]  # key -> where its value came from ("configs/x.yaml", "--flag")

    def to_dict(self) -> dict[str, Any]:
        """Every key with its resolved value, secrets removed: what the run folder records."""
        out: dict[str, Any] = {}
        for part in (self.dojo, self.model):
            out.update(dataclasses.asdict(part))
        out.update(self.trainer.to_dict())
        for key in list(out):
            if "token" in key and key.endswith(("hub_token", "_token")) and out[key]:
                out[key] = "<redacted>"
        return out


def _unknown(key: str, value: str, valid) -> str:
    close = difflib.get_close_matches(value, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}{hint}"


def parse_cli(argv: list[str]) -> tuple[Path | None, dict[str, str]]:
    """Split `--config FILE --key value --key=value` into the file and the raw overrides."""
    config, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; flags look like --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                value = "true"  # a bare flag switches a boolean on
            else:
                i += 1
                value = argv[i]
        if key == "config":
            config = Path(value)
        else:
            overrides[key] = value
        i += 1
    return config, overrides


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A recipe file as a flat dict, and where each key is (`configs/x.yaml line 7`)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of key: value, got {type(data).__name__}")
    lines = {}
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split(":", 1)[0]
        if ":" in line and key in data and key not in lines:  # top-level keys only
            lines[key] = f"{path} line {number}"
    return data, {key: lines.get(key, str(path)) for key in data}


def profile_defaults(profile: dojo.Profile, method: str) -> dict[str, Any]:
    """What a recipe uses when it says nothing: the profile's model, data, sizes and device."""
    data_kind = {"pretrain": "pretrain", "sft": "sft", "kto": "kto", "grpo": "prompts"}.get(
        method, "preference"
    )
    defaults = {
        "model_name_or_path": _starting_model(profile, method),
        "dataset": profile.datasets.get(data_kind),
        "dtype": profile.dtype,
        "attn_implementation": profile.attn_implementation,
        "per_device_train_batch_size": profile.batch_size,
        "max_steps": profile.max_steps,
        "accuracy_samples": profile.eval_samples,
        # Without CUDA, processes launched by accelerate only form a (gloo) group when the
        # training arguments ask for the CPU; otherwise each would train alone on all the data.
        "use_cpu": profile.device == "cpu",
    }
    if profile.name == "cpu" and method != "pretrain":
        defaults["accuracy_dataset"] = str(paths.DATA_DIR / "prompts" / "arithmetic_eval.jsonl")
    # Precision for the device: TRL turns bf16 on by default, which on a CPU is slower than
    # fp32. Activation checkpointing (TRL's default) trades compute for memory, and a tiny
    # model on a CPU has memory to spare.
    defaults["bf16"] = profile.dtype == "bfloat16"
    defaults["activation_checkpointing"] = profile.device != "cpu"
    return defaults


# A profile default yields to the recipe's setting of a related key (the old name, the other
# precision).
YIELDS_TO = {"activation_checkpointing": ("gradient_checkpointing",), "bf16": ("fp16",)}


def _starting_model(profile: dojo.Profile, method: str) -> str:
    """The base model for pretrain / SFT, the chat model for the rest (when it has been made)."""
    if method in ("pretrain", "sft"):
        return profile.model
    chat = Path(profile.chat_model)
    is_local = chat.is_absolute() or chat.parts[0] in (".", "..", "data")
    return profile.model if is_local and not chat.exists() else profile.chat_model


# The default recipe: what `python -m dojo.train` with no arguments runs (SFT of dojo-tiny on
# the shipped arithmetic conversations, full fine-tuning, loss on assistant tokens only). It is
# the bottom layer of an SFT run without --config; configs/sft_tiny_cpu.yaml holds the same keys.
DEFAULT_RECIPE: dict[str, Any] = {
    "method": "sft",
    "tuning": "full",
    "model_name_or_path": "data/models/dojo-tiny",
    "dataset": "data/sft/arithmetic_train.jsonl",
    "accuracy_dataset": "data/prompts/arithmetic_eval.jsonl",
    "accuracy_samples": 200,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 10,
    "max_steps": 120,
    "per_device_train_batch_size": 32,
    "assistant_only_loss": True,
    "max_length": 128,
    "logging_steps": 5,
    "save_steps": 40,
    "save_total_limit": 2,
    "report_to": "none",
    "seed": 0,
}

# Keys holding a local path (or a hub name): resolved against the repository root when they
# do not exist from the working directory, so recipes work from notebooks/ as from the root.
PATH_KEYS = (
    "model_name_or_path",
    "dataset",
    "eval_dataset",
    "accuracy_dataset",
    "chat_template_path",
)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _coerce(key: str, value: Any, annotation: Any, source: str) -> Any:
    """Convert a YAML or command-line value to the field's type, or say why it cannot be."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        nulls = ("null", "~") if str in args else ("none", "null", "~")  # report_to: none
        if value is None or (isinstance(value, str) and value.lower() in nulls):
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(key, value, arg, source)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError
            return value
    except (TypeError, ValueError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{key}: expected {name}, got {value!r} (from {source})") from None
    return value  # enums, dicts and unions TRL resolves itself in __post_init__


def _is_set(overrides: dict, key: str) -> bool:
    return key in overrides and overrides[key] is not None


def load_config(
    argv: list[str] | None = None,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve a recipe from command-line flags, a YAML file and/or keyword overrides."""
    from trl import ModelConfig

    cli_path, cli = parse_cli(argv or [])
    path = Path(path) if path else cli_path
    layers = [read_yaml(path)] if path else []
    layers += [(cli, dict.fromkeys(cli, "the command line"))]
    layers += [(overrides or {}, dict.fromkeys(overrides or {}, "keyword arguments"))]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, where in layers:
        merged |= layer
        sources |= where

    method = str(merged.get("method", "sft"))
    if method not in METHODS:
        raise ConfigError(_unknown("method", method, METHODS) + f" (from {sources['method']})")
    classes = {"dojo": DojoArgs, "model": ModelConfig, "trainer": method_config_class(method)}
    types_by_class = {name: _field_types(cls) for name, cls in classes.items()}
    owner = {key: name for name, fields in types_by_class.items() for key in fields}
    if not path and method == "sft":  # the default recipe fills what the flags leave out
        for key, value in DEFAULT_RECIPE.items():
            if key not in merged:
                merged[key], sources[key] = value, "the default recipe"
    profile = dojo.profile(merged.get("profile"))
    for key, value in profile_defaults(profile, method).items():
        overridden = key in merged or any(k in merged for k in YIELDS_TO.get(key, ()))
        if not overridden and value is not None:
            merged[key], sources[key] = value, f"the {profile.name} profile"

    values: dict[str, dict[str, Any]] = {name: {} for name in classes}
    for key, value in merged.items():
        if key not in owner:
            close = difflib.get_close_matches(key, owner, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown key {key!r} (from {sources[key]}) for method {method!r}{hint} "
                f"(`python -m dojo.train --help` lists the keys)"
            )
        name = owner[key]
        values[name][key] = _coerce(key, value, types_by_class[name][key], sources[key])
    # What the recipe says is checked before what is on disk: a wrong combination is the
    # first thing to fix, whether or not the model has been downloaded yet.
    _check_combinations(values, sources, method)
    for part in values.values():
        for key in part:
            part[key] = _resolve_path(key, part[key], sources.get(key, "the recipe"))
    values["trainer"].setdefault("output_dir", default_output_dir(values, method))
    try:
        built = {name: cls(**values[name]) for name, cls in classes.items()}
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid recipe: {e}") from e
    return RunConfig(built["dojo"], built["model"], built["trainer"], sources)


DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".txt", ".yaml", ".safetensors")


def _looks_local(value: str) -> bool:
    """A path rather than a hub name (`gpt2`, `org/name`, `org/name:config`)."""
    first = Path(value).parts[0]
    return (
        Path(value).is_absolute()
        or value.startswith((".", "~"))
        or Path(value).suffix in DATA_SUFFIXES
        or value.count("/") > 1
        or (value.count("/") == 1 and (Path(first).is_dir() or (paths.REPO_ROOT / first).is_dir()))
    )


def _resolve_path(key: str, value: Any, source: str) -> Any:
    """A path key's value as an existing path (cwd first, then the repo root), or a hub name."""
    if key not in PATH_KEYS or not isinstance(value, str):
        return value
    for candidate in (Path(value).expanduser(), paths.REPO_ROOT / value):
        if candidate.exists():
            return str(candidate)
    if _looks_local(value):
        raise ConfigError(
            f"{key}: {value} does not exist (from {source}); give a path relative to the "
            "working directory or the repository root, or a hub name such as org/name"
        )
    return value


def default_output_dir(values: dict[str, dict[str, Any]], method: str) -> str:
    """runs/<method>-<tuning>-<model name>: the same command finds the same folder."""
    model = Path(str(values["model"].get("model_name_or_path", "model"))).name
    tuning = values["dojo"].get("tuning", "full")
    return str(Path("runs") / f"{method}-{tuning}-{model}")


def _check_combinations(
    values: dict[str, dict[str, Any]], sources: dict[str, str], method: str
) -> None:
    """Refuse recipes that cannot run, before any model or data loads."""
    d, m, t = values["dojo"], values["model"], values["trainer"]

    def where(key: str) -> str:
        return f" (from {sources[key]})" if key in sources else ""

    tuning = d.get("tuning", "full")
    if tuning not in TUNINGS:
        raise ConfigError(_unknown("tuning", tuning, TUNINGS) + where("tuning"))
    quantized = [k for k in ("load_in_4bit", "load_in_8bit") if m.get(k)]
    if quantized and tuning in ("full", "freeze"):
        raise ConfigError(
            f"{quantized[0]}=true{where(quantized[0])} with tuning={tuning!r}: quantized weights "
            "cannot be trained directly; use tuning: qlora (4-bit) or tuning: lora with "
            "load_in_8bit: true"
        )
    if tuning == "qlora" and m.get("load_in_8bit"):
        raise ConfigError(
            "tuning=qlora loads 4-bit weights; drop load_in_8bit or use tuning: lora"
            + where("load_in_8bit")
        )
    if method == "grpo":
        if not d.get("reward_funcs"):
            raise ConfigError(
                "method=grpo needs at least one reward: set reward_funcs, e.g. "
                "[exact_answer, format] (see dojo.rewards)"
            )
        from dojo import rewards

        for name in d["reward_funcs"]:
            try:
                rewards.get(name)
            except ValueError as e:
                raise ConfigError(f"{e}{where('reward_funcs')}") from None
    if method == "kto" and t.get("per_device_train_batch_size", 8) < 2:
        raise ConfigError(
            "method=kto needs per_device_train_batch_size >= 2: its KL baseline pairs each "
            "completion with another prompt of the batch" + where("per_device_train_batch_size")
        )
    if not d.get("dataset"):
        raise ConfigError(f"no dataset for method={method!r}: set dataset: PATH_OR_NAME")


def help_text(method: str = "sft") -> str:
    """Every key a recipe of `method` may set, grouped by owner, with its help."""
    from trl import ModelConfig

    lines = [
        "usage: python -m dojo.train [--config FILE] [--key value ...]",
        "       accelerate launch [--config_file configs/accelerate/X.yaml] -m dojo.train ...",
        "",
        "With no arguments, runs the default recipe: SFT of dojo-tiny on the shipped arithmetic",
        "conversations. Keys come from three places (set --method first to see its trainer keys):",
    ]
    for title, cls in (
        ("dojo.train", DojoArgs),
        ("model (trl.ModelConfig)", ModelConfig),
        (f"trainer ({method_config_class(method).__name__})", method_config_class(method)),
    ):
        lines += ["", f"{title}:"]
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            help_ = " ".join(str(f.metadata.get("help", "")).split())[:110]
            lines.append(f"  --{f.name:<36} {help_}")
    return "\n".join(lines)
