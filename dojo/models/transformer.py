"""The decoder-only transformer: embeddings, N pre-norm blocks, a final norm, the LM head.

Design choices, all as in Llama / Qwen2 / Mistral so HF weights load one-to-one:
- pre-norm residual blocks: x + attn(norm(x)), then x + mlp(norm(x));
- RMSNorm, rotary positions (no learned position table), grouped-query attention, SwiGLU MLP;
- no biases except where the family has them (Qwen2's q/k/v);
- the LM head is tied to the embedding matrix or a separate matrix (`tie_word_embeddings`);
- a block may hold a mixture of experts instead of the MLP (Mixtral, Qwen2-MoE), from
  `dojo.models.moe`; its router logits are returned so the load-balancing loss can be added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dojo.models.attention import GroupedQueryAttention
from dojo.models.config import TransformerConfig
from dojo.models.kv_cache import KVCache
from dojo.models.mlp import SwiGLU
from dojo.models.norm import RMSNorm
from dojo.models.rope import RotaryEmbedding
from dojo.models.sampling import sample_next_token


@dataclass
class CausalLMOutput:
    """What a forward pass returns: logits, and the loss when labels were given."""

    logits: torch.Tensor  # Shape [batch, seq, vocab]
    loss: torch.Tensor | None = None  # mean next-token cross-entropy (+ aux loss for MoE)
    cache: KVCache | None = None  # the cache, updated with this call's positions
    router_logits: tuple[torch.Tensor, ...] = ()  # one [batch * seq, experts] per MoE layer
    aux_loss: torch.Tensor | None = None  # load-balancing loss (MoE only)


def build_moe(config: TransformerConfig) -> nn.Module:
    """The mixture-of-experts layer of one block (lives in `dojo.models.moe`)."""
    from dojo.models.moe import moe_from_config

    return moe_from_config(config)


class DecoderBlock(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: TransformerConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = GroupedQueryAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.is_moe = config.is_moe_layer(layer_idx)
        if self.is_moe:
            self.mlp = build_moe(config)
        else:
            self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, config.mlp_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [batch, seq, hidden] -> (same shape, router logits or None)."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, padding_mask)
        h = self.post_attention_layernorm(x)
        router_logits = None
        if self.is_moe:
            h, router_logits = self.mlp.forward_with_router_logits(h)
        else:
            h = self.mlp(h)
        return x + h, router_logits


class Transformer(nn.Module):
    """A causal language model: token ids in, next-token logits out."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(config)
        self.layers = nn.ModuleList(
            DecoderBlock(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # A tied head has no matrix of its own: it multiplies by the embedding matrix.
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def num_parameters(self) -> int:
        """Number of parameters (a tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> CausalLMOutput:
        """input_ids [batch, seq] -> logits [batch, seq, vocab]; loss if labels (HF-style, unshifted)."""
        past = cache.seq_len if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
            position_ids = position_ids[None].expand(input_ids.shape[0], -1)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing padded: keep the fast unmasked path
        x = self.embed_tokens(input_ids)  # Shape [batch, seq, hidden]
        cos, sin = self.rotary(position_ids, x.dtype)
        router_logits = []
        for block in self.layers:
            x, logits = block(x, cos, sin, cache, attention_mask)
            if logits is not None:
                router_logits.append(logits)
        x = self.norm(x)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head)  # Shape [batch, seq, vocab]
        out = CausalLMOutput(logits=logits, cache=cache, router_logits=tuple(router_logits))
        if router_logits:
            out.aux_loss = self._aux_loss(out.router_logits, attention_mask)
        if labels is not None:
            out.loss = causal_lm_loss(logits, labels)
            if out.aux_loss is not None:
                out.loss = out.loss + self.config.router_aux_loss_coef * out.aux_loss
        return out

    def _aux_loss(
        self, router_logits: tuple[torch.Tensor, ...], attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        from dojo.models.moe import load_balancing_loss

        return load_balancing_loss(
            router_logits, self.config.num_experts, self.config.num_experts_per_tok, attention_mask
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue input_ids [batch, seq]; greedy when temperature is 0, else sampled.

        Returns prompt + new tokens [batch, seq + n]. Rows that produced `eos_token_id` are padded
        with it afterwards; generation stops early once every row has.
        """
        was_training = self.training
        self.eval()
        cache = KVCache() if use_cache else None
        tokens = input_ids
        step_input = input_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits = self(step_input if use_cache else tokens, cache=cache).logits[:, -1]
            next_token = sample_next_token(logits, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                next_token = torch.where(done, eos_token_id, next_token)
                done = done | (next_token == eos_token_id)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            step_input = next_token[:, None]
            if eos_token_id is not None and bool(done.all()):
                break
        self.train(was_training)
        return tokens


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting labels[t + 1] from position t; -100 labels are ignored."""
    # Shift the labels, not the logits (as HF does): slicing the big logits tensor would copy it.
    targets = F.pad(labels[:, 1:], (0, 1), value=-100).reshape(-1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets, ignore_index=-100)
