"""Models from scratch: a transformer and a mixture of experts that match Hugging Face.

- `TransformerConfig` (config), `Transformer` / `DecoderBlock` (transformer), and the pieces:
  `RMSNorm` (norm), `RotaryEmbedding` / `apply_rope` (rope), `GroupedQueryAttention` (attention),
  `SwiGLU` (mlp), `KVCache` (kv_cache), sampling helpers (sampling);
- `from_hf` / `to_hf` (convert): weights to and from HF Llama, Qwen2, Mistral, Mixtral, Qwen2-MoE;
- `train_bpe` / `train_tokenizer` (bpe): byte-level BPE from scratch and with `tokenizers`;
- `pretrain` (pretrain): a small next-token training loop for our model or an HF one;
- `dojo.models.moe`: the mixture-of-experts layer; `dojo.models.tiny`: the dojo-tiny recipe.
"""

from dojo.models.attention import GroupedQueryAttention, explicit_attention, sdpa_attention
from dojo.models.config import TransformerConfig
from dojo.models.convert import config_from_hf, config_to_hf, from_hf, to_hf
from dojo.models.kv_cache import KVCache
from dojo.models.mlp import SwiGLU
from dojo.models.norm import RMSNorm
from dojo.models.rope import RotaryEmbedding, apply_rope, rope_inv_freq
from dojo.models.sampling import sample_next_token
from dojo.models.transformer import CausalLMOutput, DecoderBlock, Transformer

__all__ = [
    "CausalLMOutput",
    "DecoderBlock",
    "GroupedQueryAttention",
    "KVCache",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "Transformer",
    "TransformerConfig",
    "apply_rope",
    "config_from_hf",
    "config_to_hf",
    "explicit_attention",
    "from_hf",
    "rope_inv_freq",
    "sample_next_token",
    "sdpa_attention",
    "to_hf",
]
