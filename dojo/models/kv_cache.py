"""A key/value cache: generation reuses the keys and values of tokens it has already seen.

Without it, producing token n+1 runs attention over all n previous tokens again (quadratic work
per step); with it, each step computes q/k/v for the one new token only and attends to the stored
keys and values. The cache holds, per layer, tensors of shape [batch, kv_heads, seq, head_dim]
(after RoPE, so stored keys never need rotating again).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer growing key/value tensors; `seq_len` is how many positions are stored."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @property
    def seq_len(self) -> int:
        """Positions already cached (0 before the first forward)."""
        return self.keys[0].shape[2] if self.keys else 0

    def update(
        self, layer_idx: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v for `layer_idx`; return all keys and values seen so far."""
        if layer_idx == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], k], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], v], dim=2)
        return self.keys[layer_idx], self.values[layer_idx]


def time_generation(
    model, prompt: torch.Tensor, lengths: list[int], repeats: int = 3
) -> dict[str, list[float]]:
    """Best-of-`repeats` seconds of greedy `model.generate` for each length, with and without cache.

    Arms alternate call by call, so a busy machine slows both alike; taking the fastest repeat
    drops the calls another process interrupted. Raises if the two arms disagree on any token
    (with greedy decoding the cache must not change the output).
    """
    import time

    seconds: dict[str, list[float]] = {"with cache": [], "without cache": []}
    for n in lengths:
        best = {name: float("inf") for name in seconds}
        outputs = {}
        for _ in range(repeats):
            for name in seconds:
                start = time.perf_counter()
                outputs[name] = model.generate(prompt, n, use_cache=name == "with cache")
                best[name] = min(best[name], time.perf_counter() - start)
        if not torch.equal(outputs["with cache"], outputs["without cache"]):
            raise AssertionError(f"time_generation: {n} tokens differ with and without the cache")
        for name in seconds:
            seconds[name].append(best[name])
    return seconds
