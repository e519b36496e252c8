"""NF4 and int8 from scratch, checked against bitsandbytes on the same tensors (CPU)."""

import pytest
import torch

from dojo.adapters import int8_dequantize, int8_quantize, nf4_code, nf4_dequantize, nf4_quantize
from dojo.adapters.nf4 import dynamic_code, nf4_code_from_normal

F = pytest.importorskip("bitsandbytes.functional")


def weight(shape=(96, 80), seed=0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=gen) * 0.02
    w[3, 7] = 0.5  # an outlier: spoils only its own block
    return w.to(dtype)


def test_code_books_match_bitsandbytes():
    torch.testing.assert_close(nf4_code(), F.get_4bit_type("nf4", device="cpu"), atol=0, rtol=0)
    torch.testing.assert_close(nf4_code_from_normal(), nf4_code(), atol=1.2e-7, rtol=0)
    torch.testing.assert_close(dynamic_code(), F.create_dynamic_map(), atol=0, rtol=0)
    code = nf4_code()
    assert code.numel() == 16 and code[7] == 0 and (code[:7] < 0).all() and (code[8:] > 0).all()


@pytest.mark.parametrize("double_quant", [False, True], ids=["single", "double"])
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((96, 80), torch.float32), ((64, 33), torch.float32), ((128, 64), torch.bfloat16)],
    ids=["fp32", "ragged-last-block", "bf16"],
)
def test_nf4_matches_bitsandbytes(shape, dtype, double_quant):
    w = weight(shape, dtype=dtype)
    packed, state = F.quantize_4bit(
        w, blocksize=64, quant_type="nf4", compress_statistics=double_quant
    )
    ours = nf4_quantize(w, blocksize=64, double_quant=double_quant)
    assert torch.equal(ours.packed, packed.view(-1))  # same 4-bit indices, same packing
    tol = {"atol": 1e-7, "rtol": 1e-6}
    if double_quant:
        torch.testing.assert_close(ours.absmax2, state.state2.absmax, atol=0, rtol=0)
        assert ours.offset == pytest.approx(float(state.offset), abs=1e-9)
        # bitsandbytes' CPU C kernel finds the 8-bit level by an approximate binary search
        # that can pick the second-nearest level near a midpoint; ours takes the nearest.
        # So a few absmax constants sit one 8-bit level apart (< 1.5% of that absmax).
        step = (ours.absmax.int() - state.absmax.int()).abs()
        assert step.max() <= 1 and (step == 0).float().mean() >= 0.95
        tol = {"atol": 1e-7, "rtol": 1.5e-2}
    else:
        torch.testing.assert_close(ours.absmax, state.absmax, atol=0, rtol=0)
    theirs = F.dequantize_4bit(packed, state)
    mine = nf4_dequantize(ours)
    assert mine.shape == w.shape and mine.dtype == w.dtype
    if shape[-1] % 64 and shape[-1] % 2 == 0:
        # bitsandbytes 0.50's CPU C kernel for dequantize_4bit goes wrong when blocks straddle
        # rows (row length not a multiple of the blocksize). There, compare with its own
        # PyTorch reference implementation, and check that the C kernel is the one that is off.
        from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

        absmax = state.absmax
        if double_quant:
            absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
        code = F.get_4bit_type("nf4", device="cpu")
        kernel_error = (theirs.float() - w.float()).abs().max()
        assert kernel_error > 4 * (mine.float() - w.float()).abs().max()
        theirs = _dequantize_4bit_compute(packed.view(-1), absmax, code, 64, shape, dtype)
    torch.testing.assert_close(mine.float(), theirs.float(), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_nf4_dequantize_reads_bitsandbytes_double_quant_state_exactly(dtype):
    """Our dequantiser, fed bitsandbytes' own double-quantised state, rebuilds its weights bit for bit."""
    from dojo.adapters import NF4State

    w = weight((128, 256), dtype=dtype)  # 512 blocks of 64: two blocks of 256 absmax constants
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    theirs = F.dequantize_4bit(packed, state)
    ours = NF4State(
        packed=packed.view(-1),
        absmax=state.absmax,  # uint8 indices into the 8-bit dynamic code book
        shape=w.shape,
        dtype=dtype,
        blocksize=64,
        absmax2=state.state2.absmax,
        offset=float(state.offset),
    )
    assert torch.equal(nf4_dequantize(ours), theirs)


def test_nf4_error_is_small_and_storage_is_about_4_bits():
    w = weight((256, 256))
    plain = nf4_quantize(w)
    double = nf4_quantize(w, double_quant=True)
    err = (nf4_dequantize(plain) - w).abs()
    assert err.mean() < 0.2 * w.abs().mean()
    bits_plain = plain.nbytes() * 8 / w.numel()
    bits_double = double.nbytes() * 8 / w.numel()
    assert bits_plain == pytest.approx(4.5)  # 4 bits + a 32-bit absmax per 64 weights
    assert bits_double == pytest.approx(4.127, abs=0.002)
    # double quantisation moves each block's scale by well under 1.5%
    assert (nf4_dequantize(double) - nf4_dequantize(plain)).abs().max() < 0.015 * w.abs().max()


def test_nf4_beats_uniform_4bit_on_normal_weights():
    w = weight((256, 256))
    absmax = w.view(-1, 64).abs().amax(1, keepdim=True)
    uniform = (torch.round(w.view(-1, 64) / absmax * 7) / 7 * absmax).view_as(w)
    nf4 = nf4_dequantize(nf4_quantize(w))
    assert (nf4 - w).pow(2).mean() < (uniform - w).pow(2).mean()


def test_int8_matches_bitsandbytes():
    w = weight((64, 48))
    q, absmax = int8_quantize(w)
    ref_q, ref_absmax, _ = F.int8_vectorwise_quant(w.clone())
    assert torch.equal(q, ref_q)
    torch.testing.assert_close(absmax, ref_absmax, atol=0, rtol=0)
    torch.testing.assert_close(int8_dequantize(q, absmax), w, atol=absmax.max() / 254, rtol=0)


def test_bad_quantisation_input():
    with pytest.raises(TypeError, match="float tensor"):
        nf4_quantize(torch.ones(64, dtype=torch.int32))
    with pytest.raises(ValueError, match="blocksize=48"):
        nf4_quantize(torch.ones(64), blocksize=48)
    with pytest.raises(ValueError, match="2-D"):
        int8_quantize(torch.ones(4, 4, 4))
