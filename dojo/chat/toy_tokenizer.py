"""A one-token-per-byte tokenizer, built in memory, for exact mask checks and offline demos.

Every byte is one token, so token boundaries fall exactly on character boundaries and a mask
can be compared with the rendered text character for character. A family's special tokens are
added as single tokens, exactly as a real tokenizer has them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AddedToken, PreTrainedTokenizerFast


def byte_tokenizer(
    special_tokens: Iterable[str] = (),
    bos_token: str | None = None,
    eos_token: str | None = None,
    pad_token: str | None = None,
    add_bos: bool = False,
) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens) plus `special_tokens`; `add_bos=True` makes
    plain `tokenizer(text)` prepend BOS, like Llama's tokenizers do."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core)
    wanted = [t for t in [*special_tokens, bos_token, eos_token, pad_token] if t]
    tok.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(wanted)],
        special_tokens=True,
    )
    tok.bos_token, tok.eos_token, tok.pad_token = bos_token, eos_token, pad_token
    if add_bos and bos_token:
        bos_id = tok.convert_tokens_to_ids(bos_token)
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A $B",
            special_tokens=[(bos_token, bos_id)],
        )
    return tok
