"""Preference and RL objectives from scratch: DPO (and IPO, hinge, robust), SimPO, ORPO, KTO, GRPO.

Each function takes the per-sequence (or per-token) log-probabilities a trainer already has and
returns the loss, so a notebook can show the whole objective in a few lines and a test can hold it
against TRL's trainers on the same batch (tests/test_losses.py). Design choices:

- Losses are per example (one value per pair or per completion) so the reader sees which examples
  pull hardest; the trainer takes `.mean()`. GRPO is the exception: its normalisations (`grpo`,
  `bnpo`, `dr_grpo`, `dapo`) are *how* tokens are averaged, so `grpo_loss` returns the scalar.
- Names and defaults follow TRL 1.16's config fields (`beta`, `loss_type`, `label_smoothing`,
  `simpo_gamma`, `epsilon`, `epsilon_high`, `scale_rewards`, ...), so a value means the same here,
  in `dojo.train` recipes and in TRL.
- Where TRL 1.16 deviates from a paper (IPO divides the log-ratios by the completion length; the
  k3 KL term is multiplied by the importance ratio), we follow TRL and say so in the docstring.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


# --------------------------------------------------------------------------------------------
# Log-probabilities of a completion
# --------------------------------------------------------------------------------------------


def per_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token (`labels` shifted by one); -100 positions give 0."""
    # Position t predicts token t+1, so drop the last logit and the first label.
    logits = logits[:, :-1, :].float()  # Shape [batch, seq-1, vocab]
    labels = labels[:, 1:]  # Shape [batch, seq-1]
    mask = labels != -100
    safe_labels = labels.masked_fill(~mask, 0)  # any valid index; masked out below
    # log softmax(x)_i = x_i - logsumexp(x): gather first, so no [batch, seq, vocab] log-prob copy.
    chosen_logits = torch.gather(logits, 2, safe_labels.unsqueeze(-1)).squeeze(-1)
    logps = chosen_logits - torch.logsumexp(logits, dim=-1)
    return logps * mask


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """Sum (or, with `average=True`, mean) of the completion's token log-probs; labels -100 are skipped."""
    logps = per_token_logps(logits, labels)
    if not average:
        return logps.sum(-1)
    counts = (labels[:, 1:] != -100).sum(-1).clamp(min=1)
    return logps.sum(-1) / counts


# --------------------------------------------------------------------------------------------
# DPO and its loss types
# --------------------------------------------------------------------------------------------


class PreferenceRewards(NamedTuple):
    """Implicit rewards of a preference objective, as TRL logs them (`rewards/chosen`, ...)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    margins: torch.Tensor
    accuracies: torch.Tensor


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO loss of type sigmoid (DPO), ipo, hinge or robust, from summed completion log-probs.

    `label_smoothing` is the probability that a label is flipped: "robust" uses it as TRL does;
    "sigmoid" with a non-zero value is conservative DPO (cDPO), which TRL 1.16's "sigmoid" ignores.
    "ipo" follows TRL and divides each log-ratio by its completion length when `chosen_lengths` and
    `rejected_lengths` (completion token counts) are given; without them it is the paper's Eq. 17.
    """
    _check_choice("loss_type", loss_type, DPO_LOSS_TYPES)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    # The implicit reward margin: how much more the policy moved towards chosen than rejected.
    delta = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(
            -beta * delta
        )
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "ipo":
        if chosen_lengths is not None and rejected_lengths is not None:
            delta = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / (
                rejected_lengths.clamp(min=1)
            )
        # IPO regresses the margin onto 1/(2 beta) instead of pushing it to infinity.
        return (delta - 1 / (2 * beta)) ** 2
    # robust: unbiased under label noise; the flipped term enters with a minus sign.
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"dpo_loss: label_smoothing={label_smoothing} is outside [0, 0.5) for loss_type='robust'; "
            "it is the probability that a preference label is flipped (the paper suggests 0.1)."
        )
    clean = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
    flipped = -label_smoothing * F.logsigmoid(-beta * delta)
    return (clean - flipped) / (1 - 2 * label_smoothing)


def dpo_rewards(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> PreferenceRewards:
    """DPO's implicit rewards beta * log(pi / pi_ref) for chosen and rejected, their margins and accuracy."""
    chosen = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return PreferenceRewards(chosen, rejected, chosen - rejected, (chosen > rejected).float())


# --------------------------------------------------------------------------------------------
# Reference-free preference objectives: SimPO, ORPO
# --------------------------------------------------------------------------------------------


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    simpo_gamma: float = 0.5,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair SimPO loss -log sigmoid(beta * (c - r) - gamma) on length-averaged log-probs.

    The log-probs must be *averaged* over completion tokens (`sequence_logps(..., average=True)`):
    the length normalisation is what replaces the reference model. Defaults are TRL's CPOConfig
    (`loss_type="simpo"`); the SimPO paper uses beta around 2 and gamma / beta around 0.5.
    """
    logits = beta * (policy_chosen_logps - policy_rejected_logps) - simpo_gamma
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -ln 2."""
    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def orpo_log_odds_ratio(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor
) -> torch.Tensor:
    """log odds(chosen) - log odds(rejected), where odds(y) = p / (1 - p) on length-averaged log-probs."""
    chosen, rejected = policy_chosen_logps.float(), policy_rejected_logps.float()
    # log(p/(1-p)) = log p - log(1 - p); the second term in log space to stay finite near p = 1.
    return (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    chosen_nll_loss: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Per-pair ORPO loss: chosen NLL - beta * log sigmoid(log odds ratio), on length-averaged log-probs.

    TRL's `chosen_nll_loss` is one number per batch: the token-mean cross-entropy of the chosen
    sequences (prompt and completion). Pass it to get the full objective; its mean equals TRL's loss.
    """
    ratio = F.logsigmoid(orpo_log_odds_ratio(policy_chosen_logps, policy_rejected_logps))
    return chosen_nll_loss - beta * ratio


# --------------------------------------------------------------------------------------------
# KTO: unpaired good / bad examples
# --------------------------------------------------------------------------------------------


def kto_kl(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point: the batch mean of log(pi / pi_ref) on mismatched completions, floored at 0."""
    # Mismatched (prompt, completion) pairs estimate KL(pi || pi_ref) without favouring any answer.
    return (policy_kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Per-example KTO loss: 1 - sigmoid(beta * (logratio - kl)) if desirable, 1 - sigmoid(beta * (kl - logratio)) if not.

    `labels` is True for desirable completions; `kl` comes from `kto_kl` (0 disables it).
    """
    labels = torch.as_tensor(labels, dtype=torch.bool, device=policy_logps.device)
    logratios = policy_logps - ref_logps
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (logratios - kl)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios)))
    return torch.where(labels, desirable, undesirable)


# --------------------------------------------------------------------------------------------
# GRPO: group-relative advantages and the clipped policy-gradient loss
# --------------------------------------------------------------------------------------------


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sample standard deviation (Bessel-corrected) ignoring NaNs, as TRL's `nanstd`."""
    keep = dim is not None
    mean = torch.nanmean(x, dim=dim, keepdim=True) if keep else torch.nanmean(x)
    var = torch.nanmean((x - mean) ** 2, dim=dim) if keep else torch.nanmean((x - mean) ** 2)
    count = (~torch.isnan(x)).sum(dim=dim) if keep else (~torch.isnan(x)).sum()
    return torch.sqrt(var * count / (count - 1))


def grpo_advantages(
    rewards: torch.Tensor, group_size: int, scale: bool | str = True, eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages: reward minus its group's mean, divided by the std (+ eps) when scaling.

    `rewards` holds `group_size` consecutive completions per prompt. `scale` is TRL's
    `scale_rewards`: True / "group" (std of the group), "batch" (std of all rewards), or
    False / "none" (Dr. GRPO: no division). NaN rewards (unscorable) get advantage 0.
    """
    mode = {True: "group", False: "none"}.get(scale, scale)
    _check_choice("scale", mode, ("group", "batch", "none"))
    if rewards.numel() % group_size:
        raise ValueError(
            f"grpo_advantages: {rewards.numel()} rewards do not split into groups of {group_size}; "
            "pass num_generations completions per prompt, grouped consecutively."
        )
    grouped = rewards.float().view(-1, group_size)  # Shape [num_prompts, group_size]
    advantages = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if mode == "group":
        std = _nanstd(grouped, dim=1).unsqueeze(1) if group_size > 1 else torch.zeros_like(grouped)
        advantages = advantages / (std + eps)
    elif mode == "batch":
        advantages = advantages / (_nanstd(grouped) + eps)
    return torch.nan_to_num(advantages.view(-1), nan=0.0)


def k3_kl(per_token_logps: torch.Tensor, ref_per_token_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi (always >= 0)."""
    d = ref_per_token_logps - per_token_logps
    return torch.exp(d) - d - 1


def grpo_per_token_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    ref_per_token_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    delta: float | None = None,
    use_bias_correction_kl: bool = True,
    importance_sampling_level: str = "token",
    completion_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token GRPO loss: -min(ratio * A, clip(ratio) * A) + beta * k3 KL, before any averaging.

    `old_per_token_logps=None` means on-policy (one update per generation): the ratio is exactly 1
    but still carries the gradient. `delta` caps the ratio from above (two-sided GRPO);
    `use_bias_correction_kl` multiplies the KL term by the ratio, as TRL 1.16 does by default.
    `importance_sampling_level="sequence"` (GSPO) uses one ratio per completion, the exp of the
    mean token log-ratio over `completion_mask`.
    """
    _check_choice("importance_sampling_level", importance_sampling_level, ("token", "sequence"))
    if old_per_token_logps is None:
        old_per_token_logps = per_token_logps.detach()
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # Shape [B, 1]
    log_ratio = per_token_logps - old_per_token_logps  # Shape [B, T]
    if importance_sampling_level == "sequence":
        if completion_mask is None:
            raise ValueError(
                "grpo_per_token_loss: importance_sampling_level='sequence' averages the log-ratio "
                "over each completion's tokens; pass completion_mask."
            )
        mask = completion_mask.to(log_ratio.dtype)
        log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    ratio = torch.exp(log_ratio)  # Shape [B, T], or [B, 1] per sequence
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    if delta is not None:
        ratio = torch.clamp(ratio, max=delta)
    # Pessimistic bound: take the smaller objective, so a step never profits from leaving the trust region.
    loss = -torch.min(ratio * advantages, clipped * advantages)
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError(
                f"grpo_per_token_loss: beta={beta} needs ref_per_token_logps (the reference model's "
                "log-probs of the same completion tokens); pass them or set beta=0.0."
            )
        kl = k3_kl(per_token_logps, ref_per_token_logps)
        if use_bias_correction_kl:
            kl = kl * torch.exp(log_ratio)
        loss = loss + beta * kl
    return loss


def grpo_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    ref_per_token_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "dapo",
    max_completion_length: int | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    delta: float | None = None,
    use_bias_correction_kl: bool = True,
    importance_sampling_level: str = "token",
) -> torch.Tensor:
    """Scalar GRPO loss with TRL's normalisations: grpo, bnpo, dr_grpo or dapo (TRL's default).

    - grpo: mean over each sequence's tokens, then over sequences (long answers weigh less per token);
    - bnpo: mean over all tokens of this batch;
    - dr_grpo: sum over tokens / (batch size * max_completion_length), a constant, so no length bias;
    - dapo: sum over tokens / tokens in the whole generation batch (`num_items_in_batch`,
      defaults to this batch's count, where it equals bnpo).
    """
    _check_choice("loss_type", loss_type, GRPO_LOSS_TYPES)
    per_token = grpo_per_token_loss(
        per_token_logps,
        old_per_token_logps,
        advantages,
        ref_per_token_logps,
        beta,
        epsilon,
        epsilon_high,
        delta,
        use_bias_correction_kl,
        importance_sampling_level,
        completion_mask,
    )
    mask = completion_mask.to(per_token.dtype)
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError(
                "grpo_loss: loss_type='dr_grpo' divides by batch size * max_completion_length; "
                "pass max_completion_length (GRPOConfig.max_completion_length)."
            )
        return masked.sum() / (per_token.size(0) * max_completion_length)
    total = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
    return masked.sum() / total.to(masked.dtype).clamp(min=1.0)


def _check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise a ValueError naming the argument, the bad value and the valid ones."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}.")
