"""NF4 from scratch: 4-bit NormalFloat blockwise quantisation with double quantisation (QLoRA).

Design choices (Dettmers et al., 2023, and bitsandbytes, whose numbers these match exactly):
- The code book holds 16 values at quantiles of a standard normal, rescaled to [-1, 1], with an
  exact zero; 8 positive and 7 negative levels (asymmetric, so zero is representable).
- Blockwise absmax: each block of 64 weights is divided by its largest |w|, so one outlier only
  spoils its own block. Each value is rounded to the nearest code entry; two 4-bit indices
  share a byte (first in the high nibble).
- Double quantisation: the fp32 absmax constants (32 bits per 64 weights = 0.5 bit/weight) are
  themselves quantised to 8 bits, after subtracting their mean, in blocks of 256 with an 8-bit
  "dynamic" code book; this brings the overhead down to ~0.127 bit/weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

# The NF4 levels as bitsandbytes (and the QLoRA paper, appendix E) tabulate them in float32;
# `nf4_code_from_normal` re-derives them from normal quantiles (equal within 1.2e-7).
NF4_CODE = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
NF4_OFFSET = 0.9677083  # the outermost quantile: the mean of (1 - 1/(2*15)) and (1 - 1/(2*16))
DOUBLE_QUANT_BLOCKSIZE = 256  # blocks of absmax constants quantised together


def nf4_code_from_normal(offset: float = NF4_OFFSET) -> torch.Tensor:
    """Derive the 16 NF4 levels: normal quantiles for 8 positive and 7 negative levels, plus 0."""
    # linspace in float32 first, as bitsandbytes does, then quantiles in float64.
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    levels = torch.cat([positive, negative, torch.zeros(1, dtype=torch.float64)]).sort().values
    return (levels / levels.max()).float()


def nf4_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """The NF4 code book, 16 float32 values from -1 to 1."""
    return torch.tensor(NF4_CODE, dtype=torch.float32, device=device)


@cache
def dynamic_code() -> torch.Tensor:
    """The signed 8-bit dynamic code book bitsandbytes uses for double quantisation.

    A dynamic exponent (powers of ten from 1e-6 to 1) and a shrinking linear fraction: 256
    levels dense near zero and sparse near +-1, sorted.
    """
    exponent_bits, non_sign_bits = 7, 7
    values: list[float] = []
    for i in range(exponent_bits):
        fraction_items = 2 ** (i + non_sign_bits - exponent_bits) + 1
        bounds = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-(exponent_bits - 1) + i)
        # multiply in float32, as bitsandbytes does, so the levels agree to the last bit
        values += (scale * means).tolist() + ((-scale) * means).tolist()
    values += [0.0, 1.0]
    values += [0.0] * (256 - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


def _absmax_blocks(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each block by its absmax: (values in [-1, 1], absmax per block); last block may be short."""
    n = flat.numel()
    full = n - n % blocksize
    blocks = flat[:full].view(-1, blocksize)  # Shape [n_blocks, blocksize]
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).view(-1, 1)).clamp(-1, 1).reshape(-1)
    if full < n:
        tail_max = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, tail_max.view(1)])
        scaled = torch.cat([scaled, (flat[full:] / tail_max).clamp(-1, 1)])
    return scaled, absmax


def _nearest(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code value (code sorted): search between midpoints."""
    midpoints = (code[:-1] + code[1:]) / 2
    return torch.bucketize(scaled, midpoints, out_int32=True).to(torch.uint8)


def _scale_back(values: torch.Tensor, absmax: torch.Tensor, blocksize: int) -> torch.Tensor:
    n = values.numel()
    full = n - n % blocksize
    out = torch.empty(n, dtype=torch.float32, device=values.device)
    out[:full] = (values[:full].view(-1, blocksize) * absmax[: full // blocksize].view(-1, 1)).view(
        -1
    )
    if full < n:
        out[full:] = values[full:] * absmax[-1]
    return out


@dataclass
class NF4State:
    """A weight quantised to NF4: packed indices plus what it takes to scale them back."""

    packed: torch.Tensor  # uint8 [ceil(n/2)]: two 4-bit code indices per byte
    absmax: torch.Tensor  # float32 [n_blocks], or uint8 [n_blocks] under double quantisation
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int
    # double quantisation only: absmax = code8[absmax] * absmax2[block] + offset
    absmax2: torch.Tensor | None = None  # float32 [ceil(n_blocks / 256)]
    offset: float = 0.0

    @property
    def double_quant(self) -> bool:
        return self.absmax2 is not None

    def nbytes(self) -> int:
        """Storage in bytes (indices plus quantisation constants)."""
        extra = 0 if self.absmax2 is None else self.absmax2.numel() * 4 + 4
        return self.packed.numel() + self.absmax.numel() * self.absmax.element_size() + extra


def nf4_quantize(weight: torch.Tensor, blocksize: int = 64, double_quant: bool = False) -> NF4State:
    """Quantise a float tensor to NF4 with blockwise absmax scaling (optionally double-quantised)."""
    if not weight.is_floating_point():
        raise TypeError(f"nf4_quantize needs a float tensor, got {weight.dtype}")
    if blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise ValueError(
            f"blocksize={blocksize} must be a power of two in 32..4096 (QLoRA uses 64)"
        )
    flat = weight.detach().reshape(-1).float()
    scaled, absmax = _absmax_blocks(flat, blocksize)
    idx = _nearest(scaled, nf4_code(flat.device))
    if idx.numel() % 2:
        idx = torch.cat([idx, idx.new_zeros(1)])
    packed = (idx[::2] << 4) | idx[1::2]
    state = NF4State(packed, absmax, weight.shape, weight.dtype, blocksize)
    if double_quant:
        offset = absmax.mean()
        scaled2, absmax2 = _absmax_blocks(absmax - offset, DOUBLE_QUANT_BLOCKSIZE)
        state.absmax = _nearest(scaled2, dynamic_code().to(flat.device))
        state.absmax2, state.offset = absmax2, float(offset)
    return state


def _absmax_of(state: NF4State) -> torch.Tensor:
    if not state.double_quant:
        return state.absmax
    code8 = dynamic_code().to(state.absmax.device)
    values = code8[state.absmax.long()]
    return _scale_back(values, state.absmax2, DOUBLE_QUANT_BLOCKSIZE) + state.offset


def nf4_dequantize(state: NF4State) -> torch.Tensor:
    """Rebuild the tensor: code value of each index times its block's absmax, in the original dtype."""
    n = state.shape.numel()
    idx = torch.empty(state.packed.numel() * 2, dtype=torch.long, device=state.packed.device)
    idx[::2] = (state.packed >> 4).long()
    idx[1::2] = (state.packed & 0xF).long()
    values = nf4_code(state.packed.device)[idx[:n]]
    return _scale_back(values, _absmax_of(state), state.blocksize).view(state.shape).to(state.dtype)
