"""Byte-level BPE from scratch against the `tokenizers` library."""

import json

import pytest

from dojo import paths
from dojo.models.bpe import (
    bytes_to_unicode,
    compression_ratio,
    library_byte_rank,
    library_merges,
    train_bpe,
    train_tokenizer,
)

TEXT = (paths.DATA_DIR / "pretrain" / "everyday_science.txt").read_text(encoding="utf-8")[:6000]
TEXT += "\n数字和算术 3 + 4 = 7 😀 it's"


@pytest.fixture(scope="module")
def ours():
    return train_bpe(TEXT, 256 + 120)


@pytest.fixture(scope="module")
def library():
    return train_tokenizer([TEXT], 256 + 120)


def test_round_trip_any_text(ours):
    for text in [TEXT, "", "  spaces   and\ttabs\n\n", "ünïcödé 中文 🙂🙃", "x" * 50]:
        assert ours.decode(ours.encode(text)) == text


def test_merges_equal_the_library(ours, library):
    model = json.loads(library.backend_tokenizer.to_str())["model"]
    theirs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    chars, vocab = bytes_to_unicode(), ours.vocab
    mine = [
        ("".join(chars[x] for x in vocab[a]), "".join(chars[x] for x in vocab[b]))
        for a, b in ours.merges
    ]
    assert len(mine) == 120
    assert mine == theirs
    # The helpers the notebook uses say the same.
    assert ours.merge_strings() == mine and library_merges(library) == theirs


def test_encoding_equals_the_library(ours, library):
    rank = library_byte_rank()  # the library numbers bytes in its own order
    mine = [rank[i] if i < 256 else i for i in ours.encode(TEXT)]
    assert mine == library(TEXT)["input_ids"]


def test_compression_grows_with_merges(ours):
    assert compression_ratio(list, TEXT) < 1.01  # list(str) ~ one token per character
    small = train_bpe(TEXT, 256 + 20)
    assert 1.0 < compression_ratio(small.encode, TEXT) < compression_ratio(ours.encode, TEXT)


def test_special_tokens_are_kept_whole():
    tok = train_tokenizer([TEXT], 300, special_tokens=["<|im_start|>", "<|im_end|>"])
    ids = tok("<|im_start|>user hi<|im_end|>")["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.decode(ids) == "<|im_start|>user hi<|im_end|>"


def test_too_small_vocab_is_refused():
    with pytest.raises(ValueError, match="below the 256 byte tokens"):
        train_bpe("abc", 100)
