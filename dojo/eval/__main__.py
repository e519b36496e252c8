"""`python -m dojo.eval --runs runs/ ...`: evaluate every run and the base model, write a report."""

from __future__ import annotations

import argparse
import sys

from dojo.eval.report import evaluate_runs
from dojo.eval.suite import EvalSuite


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dojo.eval",
        description="Evaluate the base model and every run folder on the same eval sets; "
        "write evaluation_results.json, evaluation_results.md and comparison.png.",
    )
    p.add_argument("--runs", required=True, help="folder holding dojo.train run folders")
    p.add_argument("--base", help="base model (default: the profile's model, e.g. dojo-tiny)")
    p.add_argument("--out", help="where to write the report (default: RUNS/evaluation)")
    p.add_argument("--max-samples", type=int, default=50, help="records per eval set")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens per generated reply")
    p.add_argument("--perplexity", help="conversations for assistant-token perplexity")
    p.add_argument("--problems", help="prompts with an `answer` column for exact match")
    p.add_argument("--preference", help="prompt / chosen / rejected pairs")
    p.add_argument(
        "--generation", help="conversations whose last reply is the BLEU/ROUGE reference"
    )
    p.add_argument(
        "--judge",
        action="store_true",
        help="grade the generations with an LLM judge configured by DOJO_JUDGE_BASE_URL, "
        "DOJO_JUDGE_MODEL and DOJO_JUDGE_API_KEY (adds judge_score)",
    )
    p.add_argument("--judge-base-url", help="the judge's endpoint (overrides DOJO_JUDGE_BASE_URL)")
    p.add_argument("--judge-model", help="the judge's model (overrides DOJO_JUDGE_MODEL)")
    return p


def make_judge(a: argparse.Namespace):
    """The Judge the flags ask for, or None; the API key only ever comes from the environment."""
    if not (a.judge or a.judge_base_url or a.judge_model):
        return None
    from dojo.eval.judge import Judge

    overrides = {"base_url": a.judge_base_url, "model": a.judge_model}
    return Judge.from_env(**{k: v for k, v in overrides.items() if v})


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    sets = dict(
        perplexity=a.perplexity,
        problems=a.problems,
        preference=a.preference,
        generation=a.generation,
    )
    from dojo.eval.judge import JudgeError

    try:
        judge = make_judge(a)
    except JudgeError as e:
        print(f"dojo.eval: {e}", file=sys.stderr)
        return 2
    settings = {"max_new_tokens": a.max_new_tokens, "judge": judge}
    if any(sets.values()):
        suite = EvalSuite.from_files(**sets, max_samples=a.max_samples, **settings)
    else:
        suite = EvalSuite.default(max_samples=a.max_samples, **settings)
    try:
        results = evaluate_runs(a.runs, a.base, suite, a.out)
    except FileNotFoundError as e:
        print(f"dojo.eval: {e}", file=sys.stderr)
        return 2
    from dojo.eval.report import markdown_table

    print(markdown_table(results))
    failed = [r["name"] for r in results["models"] if r["errors"]]
    if failed:
        print(f"with errors: {', '.join(failed)} (see the table's last column)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
