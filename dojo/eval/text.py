"""Reference-based text metrics: BLEU, chrF and TER (sacrebleu) and ROUGE-1/2/L (rouge_score).

Notable choices:
- Every score is a corpus score on a 0–100 scale (sacrebleu's convention; ROUGE F1 x 100), so
  the report's table reads the same way across metrics. TER is an error rate: lower is better.
- `tokenize=None` picks the tokenizer from the text: sacrebleu's `zh` when the references hold
  Chinese characters, else its default `13a`. BLEU on Chinese with `13a` would see a whole
  sentence as one "word" and score almost nothing.
- ROUGE comes from `rouge_score`, whose default tokenizer keeps only [a-z0-9] and so drops
  Chinese entirely; for Chinese we split into characters (and latin/number runs), the usual
  choice for Chinese ROUGE, and hand that tokenizer to `rouge_score`.
- References may be one string per prediction or a list of strings (several references).
"""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def has_chinese(texts) -> bool:
    """Whether any text (or nested list of texts) contains a CJK ideograph."""
    return any(has_chinese(t) if isinstance(t, list) else bool(CJK.search(t)) for t in texts)


def _check(predictions, references) -> list[list[str]]:
    """References as one list per prediction; clear errors for mismatched or non-text input."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references are lists of strings, not a single string")
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; give one "
            "reference (or a list of references) per prediction"
        )
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, (p, r) in enumerate(zip(predictions, refs)):
        if not isinstance(p, str) or not r or not all(isinstance(x, str) for x in r):
            raise TypeError(f"item {i}: prediction must be a string and references strings")
    return refs


def _streams(refs: list[list[str]]) -> list[list[str]]:
    """sacrebleu's layout: one stream per reference position (padded for ragged lists)."""
    most = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else r[0] for r in refs] for k in range(most)]


def sacrebleu_tokenizer(references, tokenize: str | None) -> str:
    """The sacrebleu tokenizer to use: the one given, else `zh` for Chinese, else `13a`."""
    return tokenize or ("zh" if has_chinese(references) else "13a")


def bleu(predictions: list[str], references, tokenize: str | None = None) -> float:
    """Corpus BLEU (0–100) with sacrebleu."""
    import sacrebleu

    refs = _check(predictions, references)
    tok = sacrebleu_tokenizer(references, tokenize)
    return sacrebleu.corpus_bleu(list(predictions), _streams(refs), tokenize=tok).score


def chrf(predictions: list[str], references, word_order: int = 0) -> float:
    """Corpus chrF (0–100; `word_order=2` gives chrF++). Character-based, so no tokenizer."""
    import sacrebleu

    refs = _check(predictions, references)
    return sacrebleu.corpus_chrf(list(predictions), _streams(refs), word_order=word_order).score


def ter(predictions: list[str], references, asian_support: bool | None = None) -> float:
    """Corpus TER (edits per reference word x 100; lower is better)."""
    import sacrebleu

    refs = _check(predictions, references)
    asian = has_chinese(references) if asian_support is None else asian_support
    return sacrebleu.corpus_ter(list(predictions), _streams(refs), asian_support=asian).score


class ChineseTokenizer:
    """rouge_score tokenizer for Chinese: one token per ideograph, latin words and numbers whole."""

    TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")

    def tokenize(self, text: str) -> list[str]:
        return self.TOKEN.findall(text.lower())


def rouge(
    predictions: list[str], references, language: str | None = None, use_stemmer: bool = True
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0–100). `language`: 'en' or 'zh' (default: detected)."""
    from rouge_score import rouge_scorer

    refs = _check(predictions, references)
    language = language or ("zh" if has_chinese(references) else "en")
    if language not in ("en", "zh"):
        raise ValueError(f"language={language!r}; expected 'en' or 'zh'")
    kinds = ["rouge1", "rouge2", "rougeL"]
    if language == "zh":
        scorer = rouge_scorer.RougeScorer(kinds, tokenizer=ChineseTokenizer())
    else:
        scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=use_stemmer)
    totals = dict.fromkeys(kinds, 0.0)
    for p, r in zip(predictions, refs):
        # With several references, the best-matching one counts (score_multi's choice).
        scores = scorer.score_multi(r, p)
        for k in kinds:
            totals[k] += scores[k].fmeasure
    return {k: 100 * v / max(1, len(predictions)) for k, v in totals.items()}


def text_scores(predictions: list[str], references, tokenize: str | None = None) -> dict:
    """BLEU, chrF, TER and ROUGE-1/2/L in one dict (0–100 each)."""
    return {
        "bleu": bleu(predictions, references, tokenize),
        "chrf": chrf(predictions, references),
        "ter": ter(predictions, references),
        **rouge(predictions, references),
    }
