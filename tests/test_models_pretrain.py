"""The pretraining loop: schedule, batching, and that loss goes down for our model and HF's."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dojo.models import Transformer, TransformerConfig
from dojo.models.pretrain import chunk_batches, lr_at, pretrain, read_texts

# A stream with structure to learn: a repeating pattern with noise-free period 7.
STREAM = torch.tensor([3, 1, 4, 1, 5, 9, 2] * 200)


def tiny(vocab=16):
    torch.manual_seed(0)
    return Transformer(
        TransformerConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 100, 10, 1.0, 0.0) == pytest.approx(0.5)


def test_chunk_batches_are_fixed_length_slices_of_the_stream():
    stream = torch.arange(1000)
    batches = chunk_batches(stream, batch_size=4, seq_len=16, seed=0)
    for _ in range(100):  # several epochs
        batch = next(batches)
        assert batch.shape == (4, 16)
        assert torch.equal(batch[:, 1:] - batch[:, :-1], torch.ones(4, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="fewer than one chunk"):
        next(chunk_batches(torch.arange(10), 2, 16))


def test_pretrain_learns_and_is_reproducible():
    seen = []
    kw = dict(batch_size=4, seq_len=14, lr=2e-2, warmup=3, seed=0, progress=False)
    losses = pretrain(tiny(), STREAM, steps=30, callback=lambda s, loss: seen.append(s), **kw)
    assert len(losses) == 30 and seen == list(range(30))
    assert losses[0] > math.log(16) * 0.8  # starts near uniform guessing
    assert sum(losses[-5:]) / 5 < 0.5  # the period-7 pattern is learned
    again = pretrain(tiny(), STREAM.tolist(), steps=5, **kw)
    assert again == pytest.approx(losses[:5], abs=1e-5)


def test_pretrain_drives_an_hf_model_too():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    hf = LlamaForCausalLM(config)
    losses = pretrain(
        hf, STREAM, steps=20, batch_size=4, seq_len=14, lr=2e-2, warmup=3, progress=False
    )
    assert sum(losses[-5:]) / 5 < losses[0] / 2


def test_read_texts_splits_documents():
    docs = read_texts()
    assert len(docs) > 10 and all(d == d.strip() and d for d in docs)


def test_split_stream_interleaves_held_out_blocks():
    from dojo.models.pretrain import split_stream

    stream = torch.arange(100)
    train, held_out = split_stream(stream, eval_fraction=0.25, block=10)
    assert held_out.tolist() == [*range(30, 40), *range(70, 80)]
    assert len(train) == 80 and set(train.tolist()).isdisjoint(held_out.tolist())
    with pytest.raises(ValueError, match="fewer than 4 blocks"):
        split_stream(torch.arange(20), eval_fraction=0.25, block=10)
