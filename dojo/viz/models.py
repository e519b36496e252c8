"""Plots for the from-scratch chapters (04, 05): loss curves, generation time, expert load."""

from __future__ import annotations

import torch


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_losses(curves: dict[str, list[float]], window: int = 10, title: str = "training loss"):
    """One smoothed line per run, e.g. {"MoE": [...], "dense": [...]}; raw values faint behind."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, values in curves.items():
        (line,) = ax.plot(smooth(values, window), label=name)
        ax.plot(values, color=line.get_color(), alpha=0.2, linewidth=0.8)
    ax.set(xlabel="step", ylabel="cross-entropy (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_generation_times(lengths: list[int], seconds: dict[str, list[float]]):
    """Seconds to generate n tokens, one line per arm (e.g. with / without the KV cache)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for name, values in seconds.items():
        ax.plot(lengths, values, marker="o", label=name)
    ax.set(xlabel="new tokens", ylabel="seconds", title="greedy generation time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_expert_load(loads: dict[str, list[torch.Tensor]], window: int = 5):
    """Heatmaps of each expert's share of token copies over training, one row per run and layer.

    `loads[name]` holds one [layers, experts] tensor per step (as `MoERun.expert_load`); a
    balanced router paints every column the same colour, 1 / experts.
    """
    import matplotlib.pyplot as plt

    names = list(loads)
    layers = loads[names[0]][0].shape[0]
    fig, axes = plt.subplots(
        len(names), layers, figsize=(3.2 * layers, 2.2 * len(names)), squeeze=False
    )
    for row, name in zip(axes, names):
        stacked = torch.stack(loads[name])  # [steps, layers, experts]
        experts = stacked.shape[-1]
        for layer, ax in enumerate(row):
            series = stacked[:, layer].T.numpy()  # [experts, steps]
            kernel = torch.ones(1, 1, window) / window
            series = torch.nn.functional.conv1d(
                torch.as_tensor(series)[:, None], kernel, padding=window // 2
            )[:, 0, : stacked.shape[0]].numpy()
            image = ax.imshow(
                series, aspect="auto", cmap="viridis", vmin=0, vmax=min(1.0, 4 / experts)
            )
            ax.set(title=f"{name}, layer {layer}", xlabel="step", ylabel="expert")
            ax.set_yticks(range(experts))
        fig.colorbar(image, ax=row.tolist(), label="share of tokens", shrink=0.9)
    return fig


def plot_load_bars(loads: dict[str, torch.Tensor]):
    """Bar chart of each expert's share of tokens, one group of bars per run (e.g. final loads)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    names = list(loads)
    experts = loads[names[0]].numel()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([e + i * width for e in range(experts)], loads[name].tolist(), width, label=name)
    ax.axhline(1 / experts, color="grey", linestyle="--", linewidth=1, label="even share")
    ax.set_xticks([e + 0.4 - width / 2 for e in range(experts)], range(experts))
    ax.set(xlabel="expert", ylabel="share of tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
