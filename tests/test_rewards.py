"""dojo.rewards: each reward alone, and all of them inside trl.GRPOTrainer on a tiny random model."""

import pickle
from fractions import Fraction

import pytest

from dojo import rewards

# --------------------------------------------------------------------------------------------
# Reading completions and answers
# --------------------------------------------------------------------------------------------


def test_completion_text_reads_strings_and_conversations():
    assert rewards.completion_text("42") == "42"
    assert rewards.completion_text([{"role": "assistant", "content": "4"}]) == "4"
    multimodal = [
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}
    ]
    assert rewards.completion_text(multimodal) == "a"
    with pytest.raises(TypeError, match="list of messages"):
        rewards.completion_text(42)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1,000", Fraction(1000)),
        ("1000.0", Fraction(1000)),
        ("$1000", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("-$5", Fraction(-5)),
        ("\u22127", Fraction(-7)),
        ("3/4", Fraction(3, 4)),
        ("50%", Fraction(50)),
        ("0.1", Fraction(1, 10)),
        ("12.", Fraction(12)),
        ("1,00", None),
        ("forty", None),
    ],
)
def test_parse_number(text, expected):
    assert rewards.parse_number(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<think>27 + 14</think><answer> 41 </answer>", "41"),
        ("<answer>1</answer> then <answer>2</answer>", "2"),
        ("27 + 14 = 41", "41"),
        ("27-14=13", "13"),
        ("x = -5", "-5"),
        ("It costs $1,250.50 in total.", "$1,250.50"),
        ("about 1e3 grams", "1e3"),
        ("no digits here", None),
        ("<answer>Paris</answer>", "Paris"),
    ],
)
def test_extract_answer(text, expected):
    assert rewards.extract_answer(text) == expected


def test_answers_match_normalises_numbers_and_text():
    assert rewards.answers_match("1,000", 1000)
    assert rewards.answers_match("$1000", "1e3")
    assert rewards.answers_match("1000.0", "1000")
    assert rewards.answers_match(" Paris. ", "paris")
    assert not rewards.answers_match("1001", "1000")
    assert not rewards.answers_match(None, "1000")


# --------------------------------------------------------------------------------------------
# Rewards alone
# --------------------------------------------------------------------------------------------


def test_exact_answer_reward_on_strings_and_conversations():
    completions = [
        "27 + 14 = 41",
        "<think>27 + 14 is 41</think><answer>40</answer>",  # the tag wins over the last number
        [{"role": "assistant", "content": "<answer>1,000</answer>"}],
        "",
    ]
    answer = ["41", "41", "1000", "3"]
    assert rewards.exact_answer_reward(completions, answer=answer, prompts=["p"] * 4) == [
        1.0,
        0.0,
        1.0,
        0.0,
    ]


def test_exact_answer_reward_errors_name_the_column():
    with pytest.raises(ValueError, match="column 'answer'"):
        rewards.exact_answer_reward(["1"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        rewards.exact_answer_reward(["1", "2"], answer=["1"])


def test_format_reward():
    good = "<think>\n27 + 14 = 41\n</think>\n<answer>41</answer>\n"
    completions = [
        good,
        [{"role": "assistant", "content": good}],
        "<answer>41</answer>",  # no reasoning
        "<think>a</think><answer>41</answer> and more",  # trailing text
        "<think>a<think>b</think><answer>41</answer>",  # nested tag
        "<answer>41</answer><think>a</think>",  # wrong order
    ]
    assert rewards.format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert rewards.tag_count_reward(completions) == [1.0, 1.0, 0.5, 1.0, 0.75, 1.0]


def test_length_penalty_equals_trl_soft_overlong_punishment():
    from trl.rewards import get_soft_overlong_punishment

    theirs = get_soft_overlong_punishment(max_completion_len=20, soft_punish_cache=8)
    ours = rewards.length_penalty(max_length=20, cache=8)
    ids = [[0] * n for n in range(0, 30)]
    assert ours(completions=[""] * len(ids), completion_ids=ids) == pytest.approx(
        theirs(completion_ids=ids)
    )
    assert ours.penalty(12) == 0.0 and ours.penalty(16) == -0.5 and ours.penalty(21) == -1.0
    # Without token ids the length is counted in characters.
    assert rewards.length_penalty(4, cache=2)(["ab", "abc", "abcdef"]) == [0.0, -0.5, -1.0]
    with pytest.raises(ValueError, match="cache=9"):
        rewards.length_penalty(max_length=4, cache=9)


def test_weighted_reward_sums_and_skips_none():
    def none_on_first(completions, **kwargs):
        return [None] + [1.0] * (len(completions) - 1)

    combined = rewards.weighted_reward({rewards.exact_answer_reward: 1.0, none_on_first: 0.5})
    completions = ["41", "40"]
    assert combined(completions, answer=["41", "41"]) == [1.0, 0.5]
    assert combined.__name__ == "weighted(exact_answer_reward,none_on_first)"
    only_none = rewards.weighted_reward([(lambda completions, **k: [None, None], 1.0)])
    assert only_none(completions) == [None, None]
    with pytest.raises(TypeError, match="callable, number"):
        rewards.weighted_reward([(rewards.format_reward, "high")])


def test_parametrised_rewards_pickle():
    combined = rewards.weighted_reward(
        [(rewards.format_reward, 0.5), (rewards.length_penalty(8), 1.0)]
    )
    clone = pickle.loads(pickle.dumps(combined))
    assert clone(["<think>a</think><answer>1</answer>"]) == combined(
        ["<think>a</think><answer>1</answer>"]
    )


# --------------------------------------------------------------------------------------------
# Inside trl.GRPOTrainer
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("conversational", [False, True], ids=["text", "chat"])
def test_rewards_run_inside_grpo_trainer(tmp_path, conversational):
    """Two GRPO steps on a random tiny Llama with every reward; TRL logs each under its name."""
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    words = ["<think>", "</think>", "<answer>", "</answer>", "+", "="] + [str(i) for i in range(10)]
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    # A minimal chat template: enough for TRL to render conversational prompts.
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=None,
        )
    )
    problems = [(1, 2), (3, 4), (2, 2), (5, 4)]
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"{a} + {b} ="}]
                if conversational
                else f"{a} + {b} =",
                "answer": str(a + b),
            }
            for a, b in problems
        ]
    )
    seen = {}

    def spy(completions, answer, **kwargs):
        """Records what TRL passes to a reward function."""
        seen.update(kwargs, completions=completions, answer=answer)
        return [0.0] * len(completions)

    funcs = [
        rewards.exact_answer_reward,
        rewards.format_reward,
        rewards.tag_count_reward,
        rewards.length_penalty(max_length=6, cache=3),
        spy,
    ]
    weights = [1.0, 0.5, 0.25, 1.0, 0.0]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        reward_weights=weights,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()

    logged = {k for entry in trainer.state.log_history for k in entry}
    for name in ["exact_answer_reward", "format_reward", "tag_count_reward", "length_penalty"]:
        assert f"rewards/{name}/mean" in logged
    completions, ids = seen["completions"], seen["completion_ids"]
    kind = list if conversational else str
    assert len(completions) == 4 and all(isinstance(c, kind) for c in completions)
    assert len(ids) == 4 and seen["answer"][0] in {"3", "7", "4", "9"}
    expected_penalty = [rewards.length_penalty(6, 3).penalty(len(x)) for x in ids]
    assert rewards.length_penalty(6, 3)(completions, ids) == expected_penalty
    # Our weighted sum over the last step's completions equals the reward TRL logged for that step.
    combined = rewards.weighted_reward(list(zip(funcs, weights)))
    ours = combined(completions, completion_ids=ids, answer=seen["answer"])
    last_reward = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry][-1]
    assert sum(ours) / len(ours) == pytest.approx(last_reward, abs=1e-6)


def test_get_by_name():
    assert rewards.get("exact_answer") is rewards.exact_answer_reward
    assert rewards.get("format_reward") is rewards.format_reward
    assert rewards.get("tag_count") is rewards.tag_count_reward
    penalty = rewards.get("length_penalty:256:64")
    assert (penalty.max_length, penalty.cache) == (256, 64)
    default = rewards.get("length_penalty", max_completion_length=128)
    assert (default.max_length, default.cache) == (128, 32)
    with pytest.raises(ValueError, match="Did you mean 'exact_answer'"):
        rewards.get("exact_anwser")
    with pytest.raises(ValueError, match="needs max_completion_length"):
        rewards.get("length_penalty")
    with pytest.raises(ValueError, match="whole numbers"):
        rewards.get("length_penalty:long")
    for name in rewards.REWARD_NAMES:
        assert callable(rewards.get(name, max_completion_length=64))
