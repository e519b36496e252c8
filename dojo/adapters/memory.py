"""A training-memory planner: weights, gradients, optimizer states and activations, in bytes.

Design choices:
- Model sizes come from the architecture alone (hidden size, layers, heads, vocabulary), so a
  config dict is enough: the real configs of Qwen2.5-0.5B, Qwen2.5-7B, Llama-2-7B and
  Llama-3-70B ship here and need no hub access.
- Each term follows what the code in this repository actually does: torch's AdamW keeps two
  moments in the parameter's dtype; PEFT keeps LoRA weights in float32; QLoRA stores block
  linears as NF4 with double-quantised constants (0.516 bytes per weight) while
  `prepare_model_for_kbit_training` keeps embeddings, norms and the head in float32.
- Activations count the tensors autograd saves per token in a Llama-style block (norm inputs
  and outputs, q/k/v after RoPE, attention output, the four SwiGLU intermediates) plus the
  logits and their log-softmax; with gradient checkpointing only each block's input is kept,
  plus one block recomputed at a time.
- `measure_peak_memories` checks the planner: it trains a few steps in a fresh subprocess
  (`dojo.adapters.measure_memory`) and reads the peak resident memory above the pre-model
  baseline (CPU) or max-allocated (CUDA).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

GIB = 1024**3

BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit index + 8-bit absmax + fp32 absmax2
OPTIMIZER_STATES = {  # bytes per trainable parameter, as a multiple of the parameter's bytes
    "adamw": 2.0,  # exp_avg and exp_avg_sq
    "sgd": 0.0,
    "sgd_momentum": 1.0,
}
OPTIMIZER_FIXED_BYTES = {"adamw_8bit": 2.0}  # two 8-bit moments per parameter, whatever its dtype
METHODS = ("full", "lora", "qlora")

# Real architectures, written out so the planner runs offline (values from each model's config.json).
MODEL_CONFIGS: dict[str, dict] = {
    "Qwen/Qwen2.5-0.5B": {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "attention_bias": True,
    },
    "Qwen/Qwen2.5-7B": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
        "attention_bias": True,
    },
    "meta-llama/Llama-2-7b-hf": {
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
    "meta-llama/Meta-Llama-3-70B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
}


@dataclass
class Architecture:
    """The numbers of a Llama-style decoder that memory depends on."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    head_dim: int | None = None

    @property
    def kv_dim(self) -> int:
        head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        return head_dim * self.num_key_value_heads

    @property
    def q_dim(self) -> int:
        head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        return head_dim * self.num_attention_heads

    def block_linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one block."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_params(self) -> int:
        """Weights of all block linears (what QLoRA quantises)."""
        per_block = sum(a * b for a, b in self.block_linears().values())
        return per_block * self.num_hidden_layers

    def other_params(self) -> int:
        """Embeddings, head, norms and biases: what stays in 16/32-bit under QLoRA."""
        h, n = self.hidden_size, self.num_hidden_layers
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        bias = (self.q_dim + 2 * self.kv_dim) * n if self.attention_bias else 0
        return embed + bias + 2 * h * n + h

    def num_params(self) -> int:
        """All parameters (tied embeddings counted once)."""
        return self.linear_params() + self.other_params()

    def lora_params(self, r: int, targets: tuple[str, ...] | str = "all-linear") -> int:
        """Trainable LoRA parameters r * (in + out) over the targeted block linears."""
        chosen = self.block_linears()
        if targets != "all-linear":
            chosen = {k: v for k, v in chosen.items() if k in targets}
        return r * sum(a + b for a, b in chosen.values()) * self.num_hidden_layers


def architecture(model_config_or_name) -> Architecture:
    """An `Architecture` from a known name, a config dict, a transformers config or a model folder."""
    if isinstance(model_config_or_name, Architecture):
        return model_config_or_name
    config = model_config_or_name
    if isinstance(config, (str, Path)):
        if str(config) in MODEL_CONFIGS:
            config = MODEL_CONFIGS[str(config)]
        elif (Path(config) / "config.json").exists():
            config = json.loads((Path(config) / "config.json").read_text())
        else:
            raise ValueError(
                f"unknown model {str(config)!r}: pass a config dict, a transformers config, a "
                f"local folder with config.json, or one of {', '.join(MODEL_CONFIGS)}"
            )
    if not isinstance(config, dict):
        config = config.to_dict()
    fields = Architecture.__dataclass_fields__
    values = {k: config[k] for k in fields if k in config and config[k] is not None}
    values.setdefault("num_key_value_heads", config["num_attention_heads"])
    return Architecture(**values)


@dataclass
class MemoryEstimate:
    """Bytes needed to train, by kind, and their sum."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    trainable_params: int
    total_params: int

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def gib(self) -> dict[str, float]:
        """The same figures in GiB, rounded, plus the total."""
        out = {k: round(v / GIB, 3) for k, v in asdict(self).items() if not k.endswith("params")}
        out["total"] = round(self.total / GIB, 3)
        return out


def activation_bytes(
    arch: Architecture,
    method: str,
    batch: int,
    seq_len: int,
    compute_bytes: int,
    gradient_checkpointing: bool,
    r: int = 8,
) -> float:
    """Bytes autograd keeps for backward in one training step (Llama-style decoder, SDPA attention)."""
    tokens = batch * seq_len
    h, i, kv, q = arch.hidden_size, arch.intermediate_size, arch.kv_dim, arch.q_dim
    c = compute_bytes
    frozen_base = method != "full"
    # Per block, per token: two RMSNorms (fp32 input, normalised, weighted output; the frozen
    # norm weights of LoRA keep one fewer), q and k after RoPE and v, the attention output
    # and the input of o_proj, then gate, SiLU(gate), up and their product for SwiGLU.
    norms = 2 * (4 * h + c * h + (0 if frozen_base else c * h))
    attention = c * (2 * q + 2 * kv + q) + 4 * arch.num_attention_heads  # + logsumexp
    mlp = c * 4 * i
    adapter = 0 if method == "full" else 4 * r * len(arch.block_linears())  # A outputs (fp32)
    per_block = norms + attention + mlp + adapter
    # logits (compute dtype), their float32 log-softmax for the loss, and the float32 gradient
    # of the logits that backward creates first, while everything above is still alive.
    head = c * arch.vocab_size + 2 * 4 * arch.vocab_size + 3 * 4 * h
    if gradient_checkpointing:
        # Keep each block's input; backward first frees the head, then recomputes one block
        # at a time, so only the larger of the two is alive at the peak.
        return tokens * (arch.num_hidden_layers * c * h + max(per_block, head))
    return tokens * (arch.num_hidden_layers * per_block + head)


def estimate_memory(
    model_config_or_name,
    method: str = "lora",
    precision: str = "bf16",
    batch: int = 1,
    seq_len: int = 512,
    optimizer: str = "adamw",
    gradient_checkpointing: bool = False,
    r: int = 8,
    target_modules: tuple[str, ...] | str = "all-linear",
) -> MemoryEstimate:
    """Plan training memory for `method` in {"full", "lora", "qlora"} at `precision` (fp32/bf16/fp16)."""
    arch = architecture(model_config_or_name)
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {', '.join(METHODS)}")
    if precision not in BYTES:
        raise ValueError(f"precision={precision!r} must be one of fp32, bf16, fp16")
    if optimizer not in OPTIMIZER_STATES and optimizer not in OPTIMIZER_FIXED_BYTES:
        known = ", ".join([*OPTIMIZER_STATES, *OPTIMIZER_FIXED_BYTES])
        raise ValueError(f"optimizer={optimizer!r} must be one of {known}")
    c = BYTES[precision]
    total_params = arch.num_params()
    if method == "full":
        weights = total_params * c
        trainable, param_bytes = total_params, c
    else:
        trainable, param_bytes = arch.lora_params(r, target_modules), 4  # PEFT: fp32 adapters
        if method == "lora":
            weights = total_params * c + trainable * 4
        else:  # qlora: NF4 block linears, float32 rest (prepare_model_for_kbit_training)
            weights = arch.linear_params() * NF4_BYTES_PER_WEIGHT + arch.other_params() * 4
            weights += trainable * 4
    gradients = trainable * param_bytes
    if optimizer in OPTIMIZER_FIXED_BYTES:
        opt = trainable * OPTIMIZER_FIXED_BYTES[optimizer]
    else:
        opt = trainable * param_bytes * OPTIMIZER_STATES[optimizer]
    acts = activation_bytes(arch, method, batch, seq_len, c, gradient_checkpointing, r)
    return MemoryEstimate(weights, gradients, opt, acts, trainable, total_params)


def memory_table(
    models=("Qwen/Qwen2.5-0.5B", "meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-70B"),
    methods=("full", "lora", "qlora"),
    precision: str = "bf16",
    batch: int = 1,
    seq_len: int = 1024,
    gradient_checkpointing: bool = True,
) -> list[dict]:
    """Rows of GiB figures for each model and method (for a pandas DataFrame)."""
    rows = []
    for model in models:
        for method in methods:
            est = estimate_memory(
                model, method, precision, batch, seq_len, "adamw", gradient_checkpointing
            )
            row = {"model": model.split("/")[-1], "method": method, "params_B": 0.0}
            row["params_B"] = round(est.total_params / 1e9, 2)
            row.update(est.gib())
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Measurement: train a few steps in a fresh process and read its peak memory.


def measure_peak_memories(
    model_config: dict | str | Path,
    methods: Sequence[str] = METHODS,
    batch: int = 2,
    seq_len: int = 64,
    precision: str = "fp32",
    gradient_checkpointing: bool = False,
    r: int = 8,
    steps: int = 2,
    device: str = "cpu",
    timeout: float = 900,
) -> dict[str, dict]:
    """Measured peak bytes of a few AdamW training steps per method: {method: {"peak": ...}}.

    Runs `python -m dojo.adapters.measure_memory` in a subprocess (so nothing else in this
    process counts). On CPU `peak` is the kernel's peak resident set size (VmHWM) during the
    training steps minus the resident size just before the model was built; on CUDA it is
    `torch.cuda.max_memory_allocated` above the allocation before the model. Each method also
    reports `model_loaded` (resident growth once its model stands), `model_tensors` (the bytes
    of the model's tensors) and `seconds`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={list(methods)!r}: each must be one of {', '.join(METHODS)}")
    spec = {
        "config": str(model_config) if isinstance(model_config, Path) else model_config,
        "methods": list(methods),
        "batch": batch,
        "seq_len": seq_len,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "r": r,
        "steps": steps,
        "device": device,
    }
    env = dict(os.environ)
    # Every large tensor gets its own mmap, returned to the OS when freed, so resident memory
    # follows live tensors instead of the allocator's high-water mark.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "dojo.adapters.measure_memory", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_peak_memory(model_config: dict | str | Path, method: str = "full", **kwargs) -> dict:
    """`measure_peak_memories` for one method: its bytes dict (`peak`, `model_tensors`, ...)."""
    return measure_peak_memories(model_config, (method,), **kwargs)[method]
