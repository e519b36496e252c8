"""Small MoE experiments for chapter 05: train a tiny MoE (or dense) language model and watch its
experts.

The model is our from-scratch `Transformer` (`dojo.models.transformer`) whose MLPs become
`SparseMoE` layers when the config has `num_experts > 0`; the data is the shipped pretraining
text as raw UTF-8 bytes (256 ids, no tokenizer needed). The loop is `dojo.models.pretrain`'s
recipe (AdamW, warmup + cosine, clipping) but keeps what an MoE chapter needs apart: the
cross-entropy, the load-balancing loss and the share of tokens each expert got at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from dojo.models.config import TransformerConfig
from dojo.models.moe import expert_load
from dojo.models.pretrain import chunk_batches, lr_at, make_optimizer, read_texts, split_stream
from dojo.models.transformer import Transformer


def byte_stream(max_bytes: int | None = None) -> torch.Tensor:
    """The shipped pretraining text (data/pretrain) as one stream of UTF-8 byte ids (0..255)."""
    data = "\n\n".join(read_texts()).encode("utf-8")[:max_bytes]
    return torch.tensor(list(data), dtype=torch.long)


def tiny_lm_config(
    num_experts: int = 0,
    top_k: int = 2,
    expert_size: int = 64,
    aux_loss_coef: float = 0.01,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> TransformerConfig:
    """A byte-level decoder; dense when num_experts=0, with MLP width top_k * expert_size.

    The dense MLP is as wide as the `top_k` experts a token uses together, so both models spend
    the same parameters and compute per token ("equal active parameters").
    """
    dense = num_experts == 0
    return TransformerConfig(
        vocab_size=256,
        hidden_size=hidden_size,
        intermediate_size=top_k * expert_size if dense else expert_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_experts=num_experts,
        num_experts_per_tok=top_k,
        moe_intermediate_size=None if dense else expert_size,
        router_aux_loss_coef=aux_loss_coef,
    )


def count_parameters(model: Transformer) -> dict[str, int]:
    """Total parameters, and those one token actually uses (only top_k experts per MoE layer)."""
    total = sum(p.numel() for p in model.parameters())
    config = model.config
    if config.num_experts == 0:
        return {"total": total, "active": total}
    expert = 3 * config.hidden_size * (config.moe_intermediate_size or config.intermediate_size)
    moe_layers = sum(config.is_moe_layer(i) for i in range(config.num_hidden_layers))
    idle = moe_layers * (config.num_experts - config.num_experts_per_tok) * expert
    return {"total": total, "active": total - idle}


@dataclass
class MoERun:
    """What one training run recorded, step by step."""

    cross_entropy: list[float] = field(default_factory=list)  # next-token loss (no aux term)
    aux_loss: list[float] = field(default_factory=list)  # load-balancing loss (MoE only)
    expert_load: list[torch.Tensor] = field(default_factory=list)  # [layers, experts] per step
    eval_loss: float = float("nan")  # cross-entropy on held-out text after training


def train_tiny_lm(
    config: TransformerConfig,
    token_ids: torch.Tensor,
    steps: int = 150,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    eval_fraction: float = 0.1,
    progress: bool = True,
) -> tuple[Transformer, MoERun]:
    """Train a fresh model of `config` on `token_ids` (`eval_fraction` of it held out)."""
    torch.manual_seed(seed)
    model = Transformer(config)
    train_ids, eval_ids = split_stream(token_ids, eval_fraction)
    batches = chunk_batches(train_ids, batch_size, seq_len, seed)
    optimizer = make_optimizer(model, lr)
    run = MoERun()
    model.train()
    for step in tqdm(range(steps), desc="train", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, max(1, steps // 10), lr)
        batch = next(batches)
        out = model(input_ids=batch, labels=batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _record(run, out, config)
    model.eval()
    run.eval_loss = evaluate(model, eval_ids, seq_len)
    return model, run


def _record(run: MoERun, out, config: TransformerConfig) -> None:
    aux = out.aux_loss.item() if out.aux_loss is not None else 0.0
    # The model's loss already includes coef * aux; keep the language-modelling part apart.
    run.cross_entropy.append(out.loss.item() - config.router_aux_loss_coef * aux)
    if out.router_logits:
        run.aux_loss.append(aux)
        run.expert_load.append(
            torch.stack(
                [expert_load(x.detach(), config.num_experts_per_tok) for x in out.router_logits]
            )
        )


@torch.no_grad()
def evaluate(model: Transformer, token_ids: torch.Tensor, seq_len: int = 64) -> float:
    """Mean next-token cross-entropy over consecutive chunks of `token_ids`."""
    usable = (len(token_ids) - 1) // seq_len * seq_len
    if usable == 0:
        raise ValueError(f"evaluate: {len(token_ids)} tokens are fewer than one chunk of {seq_len}")
    chunks = token_ids[:usable].view(-1, seq_len)
    out = model(input_ids=chunks, labels=chunks)
    aux = out.aux_loss.item() if out.aux_loss is not None else 0.0
    return out.loss.item() - model.config.router_aux_loss_coef * aux


def load_imbalance(load: torch.Tensor) -> float:
    """max share / even share: 1.0 is a perfect balance, num_experts is one expert taking all."""
    return (load.max() * load.numel()).item()
