"""Byte-level BPE: trained from scratch in a few lines (to learn), and with `tokenizers` (to use).

Byte-pair encoding starts from the 256 byte values (so any text, any language, encodes with no
unknown token) and repeatedly merges the most frequent adjacent pair into a new token. Text is
first split into chunks with GPT-2's regex (words with their leading space, numbers,
punctuation runs, whitespace), and merges never cross a chunk boundary.

`train_bpe` breaks ties between equally frequent pairs the way the `tokenizers` library does
(smaller pair of ids first, in the library's numbering), so both learn the same merges; the
tests check that merge for merge.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import regex

# GPT-2's pre-tokenizer pattern, also the default of `tokenizers`' ByteLevel pre-tokenizer.
GPT2_SPLIT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (how byte-level vocabularies are stored)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


@lru_cache(maxsize=1)
def library_byte_rank() -> tuple[int, ...]:
    """The id `tokenizers` gives each byte: its printable character's rank in code-point order."""
    order = sorted(range(256), key=lambda b: bytes_to_unicode()[b])
    rank = [0] * 256
    for position, b in enumerate(order):
        rank[b] = position
    return tuple(rank)


@dataclass
class ByteBPE:
    """A byte-level BPE tokenizer: ids 0-255 are bytes, id 256 + i is the i-th merge."""

    merges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Token id -> the bytes it stands for."""
        vocab = {b: bytes([b]) for b in range(256)}
        for i, (a, b) in enumerate(self.merges):
            vocab[256 + i] = vocab[a] + vocab[b]
        return vocab

    def encode(self, text: str) -> list[int]:
        """Text -> token ids: split into chunks, then apply merges in the order they were learned."""
        ranks = {pair: i for i, pair in enumerate(self.merges)}
        ids = []
        for chunk in GPT2_SPLIT.findall(text):
            word = list(chunk.encode("utf-8"))
            while len(word) > 1:
                # The adjacent pair that was learned earliest is merged first.
                pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, len(ranks)))
                if pair not in ranks:
                    break
                word = merge_pair(word, pair, 256 + ranks[pair])
            ids += word
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text (invalid UTF-8 byte runs become U+FFFD)."""
        vocab = self.vocab
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    def merge_strings(self) -> list[tuple[str, str]]:
        """The merges written as `tokenizers` writes them: each byte as GPT-2's printable character."""
        chars, vocab = bytes_to_unicode(), self.vocab
        return [
            ("".join(chars[x] for x in vocab[a]), "".join(chars[x] for x in vocab[b]))
            for a, b in self.merges
        ]


def merge_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of `pair` in `word` (left to right) by `new_id`."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int) -> ByteBPE:
    """Learn `vocab_size - 256` merges from `text` (from scratch; slow but readable)."""
    if vocab_size < 256:
        raise ValueError(f"train_bpe: vocab_size={vocab_size} is below the 256 byte tokens")
    # Each distinct chunk once, with how often it occurs: merges are counted per occurrence.
    words = {tuple(c.encode("utf-8")): n for c, n in Counter(GPT2_SPLIT.findall(text)).items()}
    rank = list(library_byte_rank())  # tie-break order; merged tokens rank by their own id
    bpe = ByteBPE()
    while 256 + len(bpe.merges) < vocab_size:
        counts: Counter[tuple[int, int]] = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break  # every chunk is a single token already
        best = max(counts, key=lambda p: (counts[p], -rank[p[0]], -rank[p[1]]))
        new_id = 256 + len(bpe.merges)
        bpe.merges.append(best)
        rank.append(new_id)
        words = {tuple(merge_pair(list(w), best, new_id)): n for w, n in words.items()}
    return bpe


def train_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str] = ()):
    """The same byte-level BPE trained by the `tokenizers` library, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special_tokens = list(special_tokens)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=special_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def library_merges(tokenizer) -> list[tuple[str, str]]:
    """The merges of a `tokenizers` BPE (or a transformers fast tokenizer around one), in order."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def compression_ratio(encode: Callable[[str], list[int]], text: str) -> float:
    """UTF-8 bytes per token: how much a tokenizer shortens `text` (1.0 = raw bytes)."""
    return len(text.encode("utf-8")) / max(1, len(encode(text)))
