"""Plots for chapter 07 (DPO): the loss as a function of the margin, training curves, before/after.

Notable choices:
- Training curves read the run folder's `metrics.jsonl` (what `dojo.train` writes from TRL's
  logs), so the notebook plots exactly what the script mode records: `rewards/chosen`,
  `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, `logps/chosen`, `logps/rejected`.
- Before/after plots take `dojo.eval.PreferenceResult`s: accuracy bars and the distribution of
  the per-pair log-prob margin, log p(chosen) - log p(rejected), which is what preference
  tuning moves.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dojo.losses import dpo_loss


def metric_series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of one logged metric (rows without it are skipped)."""
    points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


def read_rows(run: str | Path | list[dict]) -> list[dict]:
    """A run folder's metrics.jsonl as rows, or the rows themselves."""
    if isinstance(run, list):
        return run
    from dojo.train.folder import read_metrics

    rows = read_metrics(Path(run))
    if not rows:
        raise ValueError(f"{run}: no metrics.jsonl rows; did the run log anything (logging_steps)?")
    return rows


def plot_loss_types(beta: float = 0.1, margin_range: float = 40.0, loss_types=None):
    """DPO's loss types as functions of the log-ratio margin (chosen minus rejected)."""
    import matplotlib.pyplot as plt

    loss_types = loss_types or ("sigmoid", "hinge", "ipo")
    delta = torch.linspace(-margin_range, margin_range, 401)
    zero = torch.zeros_like(delta)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for loss_type in loss_types:
        # The margin enters as policy_chosen - policy_rejected with a reference at zero.
        ax.plot(delta, dpo_loss(delta, zero, zero, zero, beta, loss_type), label=loss_type)
    ax.axvline(1 / (2 * beta), color="gray", ls=":", lw=1)
    ax.annotate("IPO target 1/(2β)", (1 / (2 * beta), 0.1), fontsize=8, color="gray")
    ax.set(
        xlabel="margin  log π/π_ref (chosen) − log π/π_ref (rejected)",
        ylabel="loss",
        title=f"DPO loss types (β = {beta})",
        ylim=(0, 4),
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_dpo_training(run: str | Path | list[dict]):
    """Loss, implicit rewards, log-probs and reward accuracy per step of a DPO-style run."""
    import matplotlib.pyplot as plt

    rows = read_rows(run)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    panels = [
        ("loss", [("loss", "loss")]),
        (
            "implicit reward β·log π/π_ref",
            [
                ("rewards/chosen", "chosen"),
                ("rewards/rejected", "rejected"),
                ("rewards/margins", "margin"),
            ],
        ),
        ("log p(reply)", [("logps/chosen", "chosen"), ("logps/rejected", "rejected")]),
        ("reward accuracy", [("rewards/accuracies", "chosen > rejected")]),
    ]
    for ax, (title, series) in zip(axes, panels):
        for key, label in series:
            steps, values = metric_series(rows, key)
            if steps:
                ax.plot(steps, values, label=label)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    axes[1].axhline(0, color="gray", lw=0.8)
    axes[3].set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return fig


def plot_preference_before_after(before, after, labels=("before", "after")):
    """Accuracy bars and the per-pair log-prob margin histogram of two `PreferenceResult`s."""
    import matplotlib.pyplot as plt

    fig, (bars, hist) = plt.subplots(1, 2, figsize=(11, 3.4))
    metrics = [("logp_accuracy", "log p(chosen) > log p(rejected)")]
    metrics.append(("avg_logp_accuracy", "same, per-token mean"))
    width = 0.38
    for i, (result, label) in enumerate(zip((before, after), labels)):
        values = [getattr(result, key) for key, _ in metrics]
        xs = [j + (i - 0.5) * width for j in range(len(metrics))]
        drawn = bars.bar(xs, values, width, label=label)
        bars.bar_label(drawn, fmt="{:.0%}", fontsize=8)
    bars.set_xticks(range(len(metrics)), [name for _, name in metrics], fontsize=8)
    bars.set(
        ylim=(0, 1.1), ylabel="share of pairs", title=f"preference accuracy ({before.pairs} pairs)"
    )
    bars.legend(fontsize=8, loc="lower right")
    margins = [
        [c - r for c, r in zip(res.chosen_logps, res.rejected_logps)] for res in (before, after)
    ]
    low, high = min(map(min, margins)), max(map(max, margins))
    bins = torch.linspace(low, high, 31).tolist()
    for values, label in zip(margins, labels):
        hist.hist(values, bins=bins, alpha=0.55, label=label)
    hist.axvline(0, color="black", lw=0.8)
    hist.set(
        xlabel="log p(chosen) − log p(rejected)",
        ylabel="pairs",
        title="per-pair margin (right of 0: prefers chosen)",
    )
    hist.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pair_logps(model, tokenizer, records: list[dict], completions: str = "pairs") -> dict:
    """log p(reply | prompt) of each record's chosen and rejected reply, summed and per-token mean.

    Returns tensors `chosen`, `rejected` (sums), `chosen_avg`, `rejected_avg` (means) and the
    reply lengths in tokens. With `completions="mismatched"`, prompt i is paired with the chosen
    reply of record i+1 (KTO's reference point) and only `chosen`/`chosen_avg` are meaningful.
    """
    from dojo.eval.preference import completion_ids, reply_logps

    prompts = [r["prompt"] for r in records]
    chosen = [r["chosen"] for r in records]
    rejected = [r["rejected"] for r in records]
    if completions == "mismatched":
        chosen = chosen[1:] + chosen[:1]
    out = {}
    for name, replies in (("chosen", chosen), ("rejected", rejected)):
        sums, means = reply_logps(model, tokenizer, prompts, replies)
        lengths = [
            sum(label != -100 for label in completion_ids(tokenizer, p, r)[1])
            for p, r in zip(prompts, replies)
        ]
        out[name] = torch.tensor(sums)
        out[f"{name}_avg"] = torch.tensor(means)
        out[f"{name}_len"] = torch.tensor(lengths, dtype=torch.float32)
    return out


def objective_table(
    policy: dict,
    ref: dict,
    kl_policy: dict | None = None,
    kl_ref: dict | None = None,
    beta: float = 0.1,
    simpo_beta: float = 2.0,
    simpo_gamma: float = 0.5,
    orpo_beta: float = 0.1,
):
    """Each preference objective of `dojo.losses` on the same pairs: loss and how hard it pushes.

    `policy` and `ref` come from `pair_logps`. The push columns are the gradients of the mean
    loss with respect to each pair's summed log p(chosen) and log p(rejected) (times the number
    of pairs, so they read per pair): positive "push up chosen" raises the chosen reply,
    positive "push down rejected" lowers the rejected one, zero means the pair no longer
    teaches anything. KTO scores chosen as desirable and rejected as undesirable, with its
    reference point from `kl_policy` / `kl_ref` (`pair_logps(..., "mismatched")`, else 0).
    """
    import pandas as pd

    from dojo import losses

    n = len(policy["chosen"])
    kl = 0.0
    if kl_policy is not None and kl_ref is not None:
        kl = losses.kto_kl(kl_policy["chosen"], kl_ref["chosen"])

    def dpo(loss_type):
        def f(c, r):
            return losses.dpo_loss(
                c,
                r,
                ref["chosen"],
                ref["rejected"],
                beta,
                loss_type,
                label_smoothing=0.1 if loss_type == "robust" else 0.0,
                chosen_lengths=policy["chosen_len"],
                rejected_lengths=policy["rejected_len"],
            )

        return f

    def simpo(c, r):  # length-averaged log-probs: the sum divided by the reply length
        return losses.simpo_loss(
            c / policy["chosen_len"], r / policy["rejected_len"], simpo_beta, simpo_gamma
        )

    def orpo(c, r):  # the odds-ratio term only; ORPO adds the SFT loss on chosen
        return losses.orpo_loss(c / policy["chosen_len"], r / policy["rejected_len"], orpo_beta)

    def kto(c, r):
        labels = torch.tensor([True] * n + [False] * n)
        both = losses.kto_loss(
            torch.cat([c, r]), torch.cat([ref["chosen"], ref["rejected"]]), labels, kl, beta
        )
        return both.view(2, n).mean(0)

    objectives = [
        ("DPO (sigmoid)", "yes", dpo("sigmoid")),
        ("IPO", "yes", dpo("ipo")),
        ("hinge (SLiC)", "yes", dpo("hinge")),
        ("robust DPO (ε=0.1)", "yes", dpo("robust")),
        ("KTO (unpaired)", "yes", kto),
        ("SimPO", "no", simpo),
        ("ORPO (odds-ratio term)", "no", orpo),
    ]
    rows = []
    for name, uses_ref, fn in objectives:
        c = policy["chosen"].clone().requires_grad_(True)
        r = policy["rejected"].clone().requires_grad_(True)
        loss = fn(c, r).mean()
        grad_c, grad_r = torch.autograd.grad(loss, (c, r))
        push_up, push_down = -grad_c * n, grad_r * n
        rows.append(
            {
                "objective": name,
                "reference model": uses_ref,
                "loss": loss.item(),
                "push up chosen": push_up.mean().item(),
                "push down rejected": push_down.mean().item(),
                "pairs still pushed": ((push_up.abs() + push_down.abs()) > 1e-6)
                .float()
                .mean()
                .item(),
            }
        )
    return pd.DataFrame(rows).set_index("objective")
