"""`TransformerConfig`: every size and switch of the from-scratch decoder, checked on construction.

Field names follow the Hugging Face config names (`hidden_size`, `num_key_value_heads`,
`rms_norm_eps`, ...) so a reader who knows `LlamaConfig` reads this one at a glance, and
`dojo.models.convert` maps between the two field by field. A bad combination (heads that do not
divide the hidden size, a top-k larger than the expert count) fails here, with what to change,
instead of as a shape error deep inside a forward pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The rope types we implement, and the keys each needs besides `rope_type` (HF's names).
ROPE_TYPES: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


@dataclass
class TransformerConfig:
    """Sizes and switches of a Llama / Qwen2 / Mistral-style decoder (optionally with MoE layers)."""

    vocab_size: int = 512  # number of token ids the embedding and the LM head know
    hidden_size: int = 128  # width of the residual stream
    intermediate_size: int = 344  # width inside the SwiGLU MLP
    num_hidden_layers: int = 4  # decoder blocks
    num_attention_heads: int = 4  # query heads
    num_key_value_heads: int | None = None  # key/value heads (GQA); None means = query heads (MHA)
    head_dim: int | None = None  # width of one head; None means hidden_size // num_attention_heads
    max_position_embeddings: int = 2048  # context the RoPE scaling variants are defined against
    rope_theta: float = 10000.0  # RoPE base wavelength
    # RoPE scaling as HF writes it in `rope_parameters` (minus rope_theta), e.g.
    # {"rope_type": "linear", "factor": 2.0}; None or {"rope_type": "default"} means plain RoPE.
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-6  # added inside RMSNorm's square root
    tie_word_embeddings: bool = False  # the LM head reuses the embedding matrix
    qkv_bias: bool = False  # biases on q/k/v projections (Qwen2: True)
    o_bias: bool = False  # bias on the attention output projection (Llama attention_bias=True)
    mlp_bias: bool = False  # biases in the MLP projections (Llama mlp_bias)
    sliding_window: int | None = (
        None  # each query sees at most this many keys (Mistral); None = all
    )
    attn_implementation: str = "sdpa"  # "sdpa" (fast, fused) or "explicit" (the math, for teaching)
    initializer_range: float = 0.02  # std of the normal init of linear and embedding weights
    # Mixture of experts (0 experts = a dense model). Filled by Mixtral / Qwen2-MoE conversions.
    num_experts: int = 0  # routed experts per MoE layer
    num_experts_per_tok: int = 2  # experts each token is sent to (top-k)
    moe_intermediate_size: int | None = None  # width of one expert; None means intermediate_size
    shared_expert_intermediate_size: int = 0  # Qwen2-MoE's always-on shared expert; 0 = none
    norm_topk_prob: bool = True  # renormalise the top-k router weights to sum to 1 (Mixtral: yes)
    router_aux_loss_coef: float = 0.01  # weight of the load-balancing loss added to the LM loss
    decoder_sparse_step: int = 1  # every n-th layer is an MoE layer (Qwen2-MoE)
    mlp_only_layers: list[int] = field(default_factory=list)  # layers kept dense (Qwen2-MoE)
    # Which HF family `to_hf` writes by default ("llama", "qwen2", "mistral", "mixtral", "qwen2_moe").
    model_type: str = "llama"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"TransformerConfig: hidden_size={self.hidden_size} is not divisible by "
                    f"num_attention_heads={self.num_attention_heads}; pick a head count that "
                    f"divides it, or set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        self._check_positive()
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"TransformerConfig: num_key_value_heads={self.num_key_value_heads} does not divide "
                f"num_attention_heads={self.num_attention_heads}; each key/value head must serve a "
                f"whole group of query heads (try a divisor such as 1 or "
                f"{self.num_attention_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"TransformerConfig: head_dim={self.head_dim} is odd; rotary embeddings rotate pairs "
                f"of dimensions, so head_dim must be even"
            )
        if self.attn_implementation not in ("sdpa", "explicit"):
            raise ValueError(
                f"TransformerConfig: attn_implementation={self.attn_implementation!r}; "
                f"use 'sdpa' or 'explicit'"
            )
        self._check_rope()
        self._check_moe()

    def _check_positive(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerConfig: {name}={getattr(self, name)} must be > 0")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"TransformerConfig: sliding_window={self.sliding_window} must be > 0")

    def _check_rope(self) -> None:
        scaling = dict(self.rope_scaling or {})
        scaling.pop("rope_theta", None)
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"TransformerConfig: rope_scaling rope_type={rope_type!r} is not supported; "
                f"use one of {sorted(ROPE_TYPES)}"
            )
        missing = [k for k in ROPE_TYPES[rope_type] if k not in scaling]
        if missing:
            raise ValueError(
                f"TransformerConfig: rope_scaling of type {rope_type!r} needs {missing} "
                f"(got {sorted(scaling)})"
            )
        scaling.pop("type", None)
        scaling["rope_type"] = rope_type
        self.rope_scaling = scaling

    def _check_moe(self) -> None:
        if self.num_experts < 0:
            raise ValueError(f"TransformerConfig: num_experts={self.num_experts} must be >= 0")
        if self.num_experts == 0:
            return
        if not 1 <= self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"TransformerConfig: num_experts_per_tok={self.num_experts_per_tok} must be between "
                f"1 and num_experts={self.num_experts}; a token cannot use more experts than exist"
            )
        if self.moe_intermediate_size is None:
            self.moe_intermediate_size = self.intermediate_size

    @property
    def num_key_value_groups(self) -> int:
        """Query heads that share one key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Whether block `layer_idx` uses a mixture of experts instead of the dense MLP."""
        return (
            self.num_experts > 0
            and layer_idx not in self.mlp_only_layers
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (for logging and saving)."""
        return asdict(self)
