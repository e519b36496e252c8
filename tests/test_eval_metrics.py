"""dojo.eval metrics against library or hand-computed values, on the shipped dojo-tiny."""

import math

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from dojo import paths
from dojo.eval import (
    bleu,
    chrf,
    exact_match,
    perplexity,
    preference_accuracy,
    rouge,
    task_accuracy,
    ter,
    text_scores,
)
from dojo.eval.perplexity import windows
from dojo.eval.preference import completion_ids, reply_logps

TEXT = (paths.DATA_DIR / "pretrain" / "space.txt").read_text()[:1500]
CHAT = [
    {"role": "user", "content": "Add 26 and 87."},
    {"role": "assistant", "content": "26 + 87 = 113"},
]


# ------------------------------------------------------------------ perplexity


def test_perplexity_of_one_window_is_exp_of_the_mean_token_loss(tiny_model, tiny_tokenizer):
    text = TEXT[:300]
    ids = tiny_tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = tiny_model(ids, labels=ids).loss.item()
    result = perplexity(tiny_model, tiny_tokenizer, [text])
    assert result.tokens == ids.shape[1] - 1
    assert result.perplexity == pytest.approx(math.exp(loss), rel=1e-5)


def _docs_sliding_window(model, ids, max_length, stride):
    """The loop of the transformers docs, counting exactly the tokens each window scores."""
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + max_length, ids.shape[1])
        window = ids[:, begin:end]
        target = window.clone()
        target[:, : -(end - prev_end)] = -100
        n = int((target[:, 1:] != -100).sum())
        with torch.no_grad():
            nll += model(window, labels=target).loss.item() * n
        count += n
        prev_end = end
        if end == ids.shape[1]:
            break
    return math.exp(nll / count), count


@pytest.mark.parametrize("stride", [16, 48, 64])
def test_sliding_window_matches_the_transformers_docs_loop(tiny_model, tiny_tokenizer, stride):
    ids = tiny_tokenizer(TEXT, return_tensors="pt").input_ids
    assert ids.shape[1] > 200  # several windows
    expected, count = _docs_sliding_window(tiny_model, ids, 64, stride)
    result = perplexity(tiny_model, tiny_tokenizer, [TEXT], stride=stride, max_length=64)
    assert result.tokens == count
    assert result.perplexity == pytest.approx(expected, rel=1e-4)


def test_more_context_lowers_perplexity(tiny_model, tiny_tokenizer):
    short = perplexity(tiny_model, tiny_tokenizer, [TEXT], stride=64, max_length=64)
    overlapping = perplexity(tiny_model, tiny_tokenizer, [TEXT], stride=16, max_length=64)
    assert overlapping.perplexity < short.perplexity
    assert overlapping.windows > short.windows


def test_windows_score_every_token_but_the_first_exactly_once():
    ids, score = list(range(100)), [1] * 100
    rows = windows(ids, score, max_length=30, stride=10)
    scored = [t for _, labels in rows for t in labels[1:] if t != -100]
    assert sorted(scored) == list(range(1, 100))
    assert all(len(w) <= 30 for w, _ in rows)


def test_assistant_only_perplexity_scores_only_the_reply(tiny_model, tiny_tokenizer):
    out = tiny_tokenizer.apply_chat_template(
        CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = torch.tensor([out["input_ids"]])
    labels = ids.clone()
    labels[0, torch.tensor(out["assistant_masks"]) == 0] = -100
    with torch.no_grad():
        loss = tiny_model(ids, labels=labels).loss.item()
    result = perplexity(tiny_model, tiny_tokenizer, [CHAT], assistant_only=True)
    assert result.tokens == sum(out["assistant_masks"])
    assert result.perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    whole = perplexity(tiny_model, tiny_tokenizer, [CHAT])
    assert whole.tokens == len(out["input_ids"]) - 1


def test_perplexity_bad_input_says_what_is_wrong(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="assistant_only=True needs conversations"):
        perplexity(tiny_model, tiny_tokenizer, ["plain text"], assistant_only=True)
    with pytest.raises(ValueError, match="stride=100 must be in 1..max_length=64"):
        perplexity(tiny_model, tiny_tokenizer, [TEXT], stride=100, max_length=64)
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a string or a list of messages"):
        perplexity(tiny_model, tiny_tokenizer, ["ok", 3])


# ------------------------------------------------------------------ BLEU, chrF, TER, ROUGE

PREDS = ["the cat sat on the mat", "a quick brown fox jumps", "hello there world"]
REFS = ["the cat is on the mat", "the quick brown fox jumps over", "hello world"]
ZH_PREDS = ["今天天气很好。", "我喜欢学习机器学习。"]
ZH_REFS = ["今天的天气很好。", "我喜欢学习深度学习。"]


def test_bleu_chrf_ter_equal_sacrebleu_corpus_scores():
    assert bleu(PREDS, REFS) == sacrebleu.corpus_bleu(PREDS, [REFS]).score
    assert chrf(PREDS, REFS) == sacrebleu.corpus_chrf(PREDS, [REFS]).score
    assert ter(PREDS, REFS) == sacrebleu.corpus_ter(PREDS, [REFS]).score
    assert bleu(REFS, REFS) == pytest.approx(100.0)


def test_bleu_uses_the_zh_tokenizer_for_chinese():
    zh = sacrebleu.corpus_bleu(ZH_PREDS, [ZH_REFS], tokenize="zh").score
    assert bleu(ZH_PREDS, ZH_REFS) == zh
    # With the default tokenizer a Chinese sentence is one "word": the score collapses.
    assert bleu(ZH_PREDS, ZH_REFS, tokenize="13a") < zh / 2
    assert (
        ter(ZH_PREDS, ZH_REFS)
        == sacrebleu.corpus_ter(ZH_PREDS, [ZH_REFS], asian_support=True).score
    )


def test_several_references_per_prediction():
    refs = [[r, "something else entirely"] for r in REFS]
    streams = [REFS, ["something else entirely"] * 3]
    assert bleu(PREDS, refs) == sacrebleu.corpus_bleu(PREDS, streams).score
    assert rouge(PREDS, refs)["rouge1"] >= rouge(PREDS, REFS)["rouge1"] - 1e-9


def test_rouge_english_equals_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    ours = rouge(PREDS, REFS)
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = sum(scorer.score(r, p)[kind].fmeasure for p, r in zip(PREDS, REFS)) / 3
        assert ours[kind] == pytest.approx(100 * expected)


def test_rouge_chinese_by_hand():
    # 今天天气很好 vs 今天的天气很好: 6 and 7 characters, all 6 of the prediction's in order.
    scores = rouge(["今天天气很好"], ["今天的天气很好"])
    p, r = 6 / 6, 6 / 7
    assert scores["rouge1"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert scores["rougeL"] == pytest.approx(100 * 2 * p * r / (p + r))
    # bigrams: 今天 天天 天气 气很 很好 (5) vs 今天 天的 的天 天气 气很 很好 (6); 4 shared
    p2, r2 = 4 / 5, 4 / 6
    assert scores["rouge2"] == pytest.approx(100 * 2 * p2 * r2 / (p2 + r2))
    # rouge_score's own tokenizer drops Chinese; ours does not.
    assert rouge(ZH_PREDS, ZH_REFS, language="en")["rouge1"] == 0.0
    assert rouge(ZH_PREDS, ZH_REFS)["rouge1"] > 50


def test_text_metric_errors():
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        bleu(PREDS, REFS[:2])
    with pytest.raises(TypeError, match="not a single string"):
        bleu("a b", "a b")
    with pytest.raises(TypeError, match="item 1"):
        text_scores(["a", None], ["a", "b"])


# ------------------------------------------------------------------ preference accuracy

PAIRS = [
    {
        "prompt": [{"role": "user", "content": "Add 26 and 87."}],
        "chosen": [{"role": "assistant", "content": "26 + 87 = 113"}],
        "rejected": [{"role": "assistant", "content": "26 + 87 = 103 and more words here"}],
    },
    {
        "prompt": [{"role": "user", "content": "What is 6 * 11?"}],
        "chosen": [{"role": "assistant", "content": "6 * 11 = 66"}],
        "rejected": [{"role": "assistant", "content": "6 * 11 = 65"}],
    },
]


def test_reply_log_prob_equals_minus_the_library_loss_times_tokens(tiny_model, tiny_tokenizer):
    ids, labels = completion_ids(tiny_tokenizer, PAIRS[0]["prompt"], PAIRS[0]["chosen"])
    reply = tiny_tokenizer.decode([t for t in labels if t != -100])
    assert reply == "26 + 87 = 113<|im_end|>"
    ids_t, labels_t = torch.tensor([ids]), torch.tensor([labels])
    with torch.no_grad():
        loss = tiny_model(ids_t, labels=labels_t).loss.item()
    n = sum(t != -100 for t in labels[1:])
    sums, means = reply_logps(
        tiny_model, tiny_tokenizer, [p["prompt"] for p in PAIRS], [p["chosen"] for p in PAIRS]
    )
    assert sums[0] == pytest.approx(-loss * n, rel=1e-5)
    assert means[0] == pytest.approx(-loss, rel=1e-5)


def test_preference_accuracy_counts_pairs_and_dpo_terms(tiny_model, tiny_tokenizer):
    result = preference_accuracy(tiny_model, tiny_tokenizer, PAIRS)
    wins = [c > r for c, r in zip(result.chosen_logps, result.rejected_logps)]
    assert result.logp_accuracy == sum(wins) / 2
    assert result.reward_accuracy is None
    # Against itself as reference every implicit reward is 0: no pair is "won", loss is log 2.
    same = preference_accuracy(tiny_model, tiny_tokenizer, PAIRS, ref_model=tiny_model)
    assert same.reward_accuracy == 0.0 and same.reward_margin == pytest.approx(0.0, abs=1e-6)
    assert same.dpo_loss == pytest.approx(math.log(2), rel=1e-5)


def test_dpo_reward_accuracy_against_a_different_reference(tiny_model, tiny_tokenizer):
    import copy

    ref = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.01, alpha=1.0)
    r = preference_accuracy(tiny_model, tiny_tokenizer, PAIRS, ref_model=ref, beta=0.5)
    ref_scores = preference_accuracy(ref, tiny_tokenizer, PAIRS)
    margins = [
        0.5 * ((c - rc) - (j - rj))
        for c, j, rc, rj in zip(
            r.chosen_logps, r.rejected_logps, ref_scores.chosen_logps, ref_scores.rejected_logps
        )
    ]
    assert r.reward_margin == pytest.approx(sum(margins) / 2, rel=1e-4, abs=1e-6)
    assert r.reward_accuracy == sum(m > 0 for m in margins) / 2
    expected_loss = sum(-torch.nn.functional.logsigmoid(torch.tensor(m)).item() for m in margins)
    assert r.dpo_loss == pytest.approx(expected_loss / 2, rel=1e-4)


def test_preference_set_with_missing_columns_is_named(tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="record 0: missing column.*rejected"):
        preference_accuracy(tiny_model, tiny_tokenizer, [{"prompt": "hi", "chosen": "yo"}])


def test_preference_accuracy_reads_a_shipped_file(tiny_model, tiny_tokenizer):
    path = paths.DATA_DIR / "preference" / "arithmetic_eval.jsonl"
    result = preference_accuracy(tiny_model, tiny_tokenizer, path, max_samples=8)
    assert result.pairs == 8
    assert 0.0 <= result.logp_accuracy <= 1.0


# ------------------------------------------------------------------ exact match


def test_exact_match_by_hand():
    replies = [
        "26 + 87 = 113",  # last number: 113, right
        "<answer>66</answer> (I first thought 65)",  # the tag wins over later numbers
        "It is 103.",  # wrong number
        "The larger one is 38, not 19",  # last number is 19: wrong by the extraction rule
        "",  # nothing to extract
    ]
    answers = ["113", 66, "112", "38", "7"]
    result = exact_match(replies, answers)
    assert [e["extracted"] for e in result.examples] == ["113", "66", "103", "19", None]
    assert [e["correct"] for e in result.examples] == [True, True, False, False, False]
    assert (result.correct, result.total, result.accuracy) == (2, 5, 0.4)
    with pytest.raises(ValueError, match="2 replies but 1 answers"):
        exact_match(["1", "2"], ["1"])


def test_task_accuracy_scores_the_greedy_replies(tiny_model, tiny_tokenizer):
    from dojo.infer.generate import generate_replies

    prompts = [[{"role": "user", "content": q}] for q in ("Add 26 and 87.", "What is 6 * 11?")]
    replies = generate_replies(tiny_model, tiny_tokenizer, prompts, max_new_tokens=16)
    # the first answer is whatever the model says (right by construction), the second cannot be
    answers = [exact_match(replies[:1], ["x"]).examples[0]["extracted"], "not a number"]
    result = task_accuracy(tiny_model, tiny_tokenizer, prompts, answers, max_new_tokens=16)
    assert [e["reply"] for e in result.examples] == replies
    assert [e["prompt"] for e in result.examples] == ["Add 26 and 87.", "What is 6 * 11?"]
    assert result.accuracy == (0.5 if answers[0] is not None else 0.0)
