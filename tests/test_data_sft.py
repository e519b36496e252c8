"""SFT tokenization: assistant-only labels, last-turn and all-token options, whole-turn
truncation, and the same ids and labels as TRL's SFTTrainer(assistant_only_loss=True)."""

import pytest

from dojo import paths
from dojo.data import DataError, load, load_records
from dojo.data.sft import IGNORE_INDEX, tokenize_conversation, tokenize_sft

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def build_chat_tokenizer():
    """dojo-tiny's tokenizer when shipped; else a small byte-level BPE with the same specials."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (paths.TINY_MODEL / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(paths.TINY_MODEL)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = [
        "What is 17 + 25? 17 + 25 = 42. The assistant answers the user.",
        "user assistant system tool weather Paris 计算 你好 世界",
    ]
    tok.train_from_iterator(text * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None
    )
    fast.chat_template = (paths.CHAT_TEMPLATES_DIR / "chatml.jinja").read_text()
    return fast


@pytest.fixture(scope="module")
def tok():
    return build_chat_tokenizer()


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "2 + 2 = 4"},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "3 + 3 = 6"},
]


def _decoded_targets(tok, out):
    return tok.decode([t for t in out["labels"] if t != IGNORE_INDEX])


def test_labels_cover_assistant_replies_and_their_end_token(tok):
    out = tokenize_conversation(tok, CONVERSATION)
    assert _decoded_targets(tok, out) == "2 + 2 = 4<|im_end|>3 + 3 = 6<|im_end|>"
    assert len(out["labels"]) == len(out["input_ids"])


def test_train_on_last_and_all(tok):
    last = tokenize_conversation(tok, CONVERSATION, train_on="last")
    assert _decoded_targets(tok, last) == "3 + 3 = 6<|im_end|>"
    every = tokenize_conversation(tok, CONVERSATION, train_on="all")
    assert every["labels"] == every["input_ids"]


def test_truncation_keeps_whole_turns(tok):
    full = tokenize_conversation(tok, CONVERSATION)
    first_turn = tokenize_conversation(tok, CONVERSATION[:3])
    out = tokenize_conversation(tok, CONVERSATION, max_length=len(full["input_ids"]) - 2)
    # Cut after the first reply (a whole turn), not two tokens before the end.
    assert out["input_ids"] == first_turn["input_ids"]
    assert out["truncation"] == "at a turn boundary"
    assert _decoded_targets(tok, out) == "2 + 2 = 4<|im_end|>"


def test_truncation_mid_turn_when_the_first_reply_does_not_fit(tok):
    labels = tokenize_conversation(tok, CONVERSATION)["labels"]
    first_target = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    out = tokenize_conversation(tok, CONVERSATION, max_length=first_target + 2)
    assert out["truncation"] == "mid-turn" and len(out["input_ids"]) == first_target + 2
    assert sum(t != IGNORE_INDEX for t in out["labels"]) == 2


def test_truncation_that_drops_the_whole_answer_raises(tok):
    with pytest.raises(DataError, match=r"record 7: truncation to max_length=5 would drop every"):
        tokenize_conversation(tok, CONVERSATION, max_length=5, where="record 7")


def test_tokenize_sft_skip_reports_drops_and_truncations(tok):
    long = [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "ok"}]
    ds = load([{"messages": CONVERSATION}, {"messages": long}], "sft")
    n = len(tokenize_conversation(tok, CONVERSATION)["input_ids"])
    out, summary = tokenize_sft(ds, tok, max_length=n - 2, on_error="skip")
    assert len(out) == 1 and summary.dropped == 1 and summary.fixed == 1
    assert summary.drops["answer truncated"] == 1
    assert summary.fixes["truncated at a turn boundary"] == 1
    with pytest.raises(DataError, match="record 1"):
        tokenize_sft(ds, tok, max_length=n - 2)


def _trl_prepared(dataset, tok, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=True, max_length=None, report_to=[],
        use_cpu=True, dataset_num_proc=None,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=LlamaForCausalLM(config), args=args, train_dataset=dataset, processing_class=tok
    )
    return trainer.train_dataset


@pytest.mark.slow
def test_same_ids_and_labels_as_trl_sft_trainer_on_shipped_data(tok, tmp_path):
    # Every shipped SFT file (tool calls and Chinese included), a slice of the large synthetic one.
    records = []
    for path in sorted((paths.DATA_DIR / "sft").glob("*.json*")):
        cut = 100 if path.name.startswith("arithmetic") else None
        records += load_records(path, "sft", max_samples=cut)[0]
    dataset = load(records, "sft")
    ours, _ = tokenize_sft(dataset, tok)
    theirs = _trl_prepared(dataset, tok, tmp_path)
    assert len(ours) == len(theirs) == len(dataset)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["labels"] == theirs["labels"]


def test_length_stats_and_plot(tok):
    import matplotlib

    matplotlib.use("Agg")
    from dojo.data import length_stats, plot_length_stats

    long = [{"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "ok"}]
    ds = load([{"messages": CONVERSATION}, {"messages": long}], "sft")
    n = len(tokenize_conversation(tok, CONVERSATION)["input_ids"])
    stats = length_stats(ds, tok, max_length=n)
    assert stats["assistant_turns"] == [2, 1]
    assert stats["tokens_per_role"]["user"][2] == len(tok("word " * 80)["input_ids"])
    assert stats["templated_lengths"][0] == n < stats["templated_lengths"][1]
    assert stats["truncated"] == 1
    assert stats["summary"]["assistant turns"]["max"] == 2
    fig = plot_length_stats(stats)
    assert len(fig.axes) == 3
