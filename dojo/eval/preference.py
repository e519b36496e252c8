"""Preference accuracy: does the model score the chosen reply above the rejected one?

Two readings of "scores above":
- by log-probability: log p(chosen | prompt) > log p(rejected | prompt), summed over the reply's
  tokens (and, reported beside it, averaged per token, which does not favour short replies);
- by DPO's implicit reward beta * log(p / p_ref) against a reference model (the model before
  preference tuning): the quantity DPO pushes apart, with its mean margin and mean DPO loss
  (`dojo.losses.dpo_loss`), which is what TRL logs as `rewards/accuracies` and `loss`.

A reply's tokens are the template's `{% generation %}` span of the last turn (the reply and its
end-of-turn token), found by rendering the prompt with the generation prompt and checking that
prompt + reply renders with that prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dojo.losses import dpo_loss, dpo_rewards, sequence_logps


@dataclass
class PreferenceResult:
    """Accuracies, margins and losses over the pairs; per-pair log-probs for a closer look."""

    pairs: int
    logp_accuracy: float  # share of pairs with sum log p(chosen) > sum log p(rejected)
    avg_logp_accuracy: float  # the same with per-token mean log-probs
    logp_margin: float  # mean of sum log p(chosen) - sum log p(rejected)
    reward_accuracy: float | None = None  # DPO implicit reward accuracy (needs ref_model)
    reward_margin: float | None = None  # mean beta * (chosen log-ratio - rejected log-ratio)
    dpo_loss: float | None = None  # mean sigmoid DPO loss at `beta`
    chosen_logps: list[float] = field(default_factory=list, repr=False)
    rejected_logps: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """The summary numbers (no per-pair lists)."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("chosen_logps", "rejected_logps") and v is not None
        }


REQUIRED = ("prompt", "chosen", "rejected")


def _records(dataset) -> list[dict]:
    """A path, a datasets.Dataset or a list of dicts as TRL conversational preference records."""
    if isinstance(dataset, str) or hasattr(dataset, "is_file"):
        from dojo.data import load

        dataset = load(str(dataset), "preference")
    records = [dict(r) for r in dataset]
    for i, r in enumerate(records):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(
                f"preference record {i}: missing column(s) {', '.join(missing)}; a preference "
                "set has prompt, chosen and rejected (dojo.data.load(path, 'preference') "
                "converts other formats)"
            )
    return records


def _as_messages(value, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def completion_ids(tokenizer, prompt, reply) -> tuple[list[int], list[int]]:
    """Ids of prompt + reply and labels that keep only the reply's tokens (-100 elsewhere)."""
    from dojo.chat.masks import has_generation_markers, tokenize_chat

    prompt = _as_messages(prompt, "user")
    reply = _as_messages(reply, "assistant")
    head = tokenizer.apply_chat_template(
        prompt, tokenize=True, add_generation_prompt=True, return_dict=True
    )["input_ids"]
    head = list(head)
    if has_generation_markers(tokenizer.chat_template):
        full = tokenize_chat(tokenizer, prompt + reply)
        ids, mask = full["input_ids"], full["assistant_masks"]
    else:
        out = tokenizer.apply_chat_template(prompt + reply, tokenize=True, return_dict=True)
        ids = list(out["input_ids"])
        mask = [1] * len(ids)
    if ids[: len(head)] != head:
        raise ValueError("the chat template renders the prompt differently once a reply follows")
    labels = [t if i >= len(head) and mask[i] else -100 for i, t in enumerate(ids)]
    return ids, labels


@torch.no_grad()
def reply_logps(model, tokenizer, prompts, replies, batch_size: int = 16):
    """Summed and per-token-mean log p(reply | prompt) for each pair of the lists."""
    rows = [completion_ids(tokenizer, p, r) for p, r in zip(prompts, replies)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums, means = [], []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(rows), batch_size):
            batch = rows[i : i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in batch])
            labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in batch])
            attention = (
                torch.arange(width)[None] < torch.tensor([len(r[0]) for r in batch])[:, None]
            )
            logits = model(
                input_ids=ids.to(model.device), attention_mask=attention.long().to(model.device)
            ).logits
            labels = labels.to(logits.device)
            sums += sequence_logps(logits, labels).tolist()
            means += sequence_logps(logits, labels, average=True).tolist()
    finally:
        model.train(was_training)
    return sums, means


def preference_accuracy(
    model, tokenizer, dataset, ref_model=None, beta: float = 0.1, max_samples: int | None = None
) -> PreferenceResult:
    """Chosen-over-rejected accuracy by log-prob and, with `ref_model`, by DPO implicit reward."""
    records = _records(dataset)[:max_samples]
    prompts = [r["prompt"] for r in records]
    chosen, chosen_avg = reply_logps(model, tokenizer, prompts, [r["chosen"] for r in records])
    rejected, rejected_avg = reply_logps(
        model, tokenizer, prompts, [r["rejected"] for r in records]
    )
    n = len(records)
    result = PreferenceResult(
        pairs=n,
        logp_accuracy=sum(c > r for c, r in zip(chosen, rejected)) / n,
        avg_logp_accuracy=sum(c > r for c, r in zip(chosen_avg, rejected_avg)) / n,
        logp_margin=sum(c - r for c, r in zip(chosen, rejected)) / n,
        chosen_logps=chosen,
        rejected_logps=rejected,
    )
    if ref_model is not None:
        ref_chosen, _ = reply_logps(ref_model, tokenizer, prompts, [r["chosen"] for r in records])
        ref_rejected, _ = reply_logps(
            ref_model, tokenizer, prompts, [r["rejected"] for r in records]
        )
        logps = [torch.tensor(x) for x in (chosen, rejected, ref_chosen, ref_rejected)]
        rewards = dpo_rewards(*logps, beta=beta)
        result.reward_accuracy = rewards.accuracies.mean().item()
        result.reward_margin = rewards.margins.mean().item()
        result.dpo_loss = dpo_loss(*logps, beta=beta).mean().item()
    return result
