"""Evaluation during training (a real TRL SFT run on dojo-tiny) and the report over run folders."""

import json
import shutil

import pytest
import yaml

from dojo import paths
from dojo.eval.callback import EvalCallback
from dojo.eval.report import evaluate_runs, find_runs, run_model, training_figures
from dojo.eval.suite import EvalSuite

DATA = paths.DATA_DIR


@pytest.fixture(scope="module")
def small_suite():
    return EvalSuite.from_files(
        perplexity=DATA / "sft" / "arithmetic_eval.jsonl",
        problems=DATA / "prompts" / "arithmetic_eval.jsonl",
        preference=DATA / "preference" / "arithmetic_eval.jsonl",
        generation=DATA / "sft" / "arithmetic_eval.jsonl",
        max_samples=6,
        max_new_tokens=12,
    )


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, small_suite):
    """A 4-step SFT run of dojo-tiny with the callback every 2 steps, saved as a run folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from dojo.data import load

    runs = tmp_path_factory.mktemp("runs")
    run_dir = runs / "sft-full-dojo-tiny"
    tokenizer = AutoTokenizer.from_pretrained(paths.TINY_MODEL)
    model = AutoModelForCausalLM.from_pretrained(paths.TINY_MODEL)
    args = SFTConfig(
        output_dir=str(run_dir), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=2, save_steps=4, report_to="none", use_cpu=True, bf16=False,
        max_length=64, assistant_only_loss=True, activation_checkpointing=False,
    )  # fmt: skip
    train = load(str(DATA / "sft" / "arithmetic_train.jsonl"), "sft", max_samples=32)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train.select_columns(["messages"]),
        processing_class=tokenizer,
    )  # fmt: skip
    callback = EvalCallback.attach(trainer, small_suite, every_n_steps=2)
    trainer.train()
    trainer.save_model(str(run_dir / "model"))
    trainer.save_state()  # trainer_state.json with the whole log history, runtime included
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({"method": "sft", "model_name_or_path": str(paths.TINY_MODEL)})
    )
    return runs, run_dir, trainer, callback


def test_callback_logs_metrics_with_the_training_loss(sft_run):
    _, run_dir, trainer, callback = sft_run
    assert [h["step"] for h in callback.history] == [0, 2, 4]
    assert all(not h["errors"] for h in callback.history)
    logged = {r["step"]: r for r in trainer.state.log_history if "eval_accuracy" in r}
    assert sorted(logged) == [0, 2, 4]
    for step, record in logged.items():
        for key in ("eval_perplexity", "eval_pref_logp_accuracy", "eval_bleu", "eval_rougeL"):
            assert key in record, (step, key)
    # the saved trainer state (what the report reads) has them next to the loss
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert any("loss" in r for r in state["log_history"]), state["log_history"]
    assert any("eval_perplexity" in r and r["step"] == 2 for r in state["log_history"])
    # training moved the assistant perplexity
    first, last = callback.history[0], callback.history[-1]
    assert last["eval_perplexity"] != first["eval_perplexity"]


def test_callback_rejects_a_bad_interval(small_suite):
    with pytest.raises(ValueError, match="every_n_steps=0"):
        EvalCallback(None, small_suite, every_n_steps=0)


def test_training_figures_come_from_the_trainer_state(sft_run):
    _, run_dir, trainer, _ = sft_run
    figures = training_figures(run_dir)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert figures["steps"] == 4
    assert figures["initial_loss"] == losses[0] and figures["final_loss"] == losses[-1]
    assert figures["source"] == "trainer_state.json"
    assert figures["train_runtime_s"] > 0
    (run_dir / "trainer_state.json").rename(run_dir / "saved_state.json")
    try:  # without it, the newest checkpoint's state (saved before the runtime was logged)
        older = training_figures(run_dir)
    finally:
        (run_dir / "saved_state.json").rename(run_dir / "trainer_state.json")
    assert older["source"] == "checkpoint-4/trainer_state.json"
    assert older["final_loss"] == losses[-1] and older["train_runtime_s"] is None


def test_report_over_runs_with_a_broken_run_and_a_broken_set(sft_run, tmp_path):
    runs, run_dir, _, _ = sft_run
    runs_copy = tmp_path / "runs"
    shutil.copytree(runs, runs_copy)
    broken = runs_copy / "dpo-full-unfinished"
    broken.mkdir()
    (broken / "config.yaml").write_text("method: dpo\n")
    (runs_copy / "notes").mkdir()  # not a run folder: ignored
    assert [p.name for p in find_runs(runs_copy)] == ["dpo-full-unfinished", "sft-full-dojo-tiny"]
    with pytest.raises(FileNotFoundError, match="no trained model.*did the run finish"):
        run_model(broken)

    bad_set = tmp_path / "pairs.jsonl"
    bad_set.write_text(json.dumps({"prompt": "hi", "chosen": "yo"}) + "\n")
    suite = EvalSuite.from_files(
        problems=DATA / "prompts" / "arithmetic_eval.jsonl",
        preference=bad_set,
        generation=DATA / "sft" / "arithmetic_eval.jsonl",
        max_samples=4,
        max_new_tokens=12,
    )
    out = tmp_path / "report"
    results = evaluate_runs(runs_copy, paths.TINY_MODEL, suite, out)
    rows = {r["name"]: r for r in results["models"]}
    assert list(rows) == ["base", "dpo-full-unfinished", "sft-full-dojo-tiny"]
    assert "no trained model" in rows["dpo-full-unfinished"]["errors"]["model"]
    assert "pairs.jsonl" in rows["base"]["errors"]["preference"]
    for name in ("base", "sft-full-dojo-tiny"):
        assert set(rows[name]["metrics"]) >= {"accuracy", "bleu", "chrf", "ter", "rouge1"}
        assert rows[name]["samples"]
    assert rows["sft-full-dojo-tiny"]["training"]["steps"] == 4
    saved = json.loads((out / "evaluation_results.json").read_text())
    assert [r["name"] for r in saved["models"]] == list(rows)
    table = (out / "evaluation_results.md").read_text()
    assert "| sft-full-dojo-tiny |" in table and "no trained model" in table
    assert "| run | method | steps |" in table
    assert (out / "comparison.png").stat().st_size > 1000


@pytest.mark.slow
def test_cli_writes_the_report(sft_run, tmp_path, capsys):
    from dojo.eval.__main__ import main

    runs, _, _, _ = sft_run
    out = tmp_path / "cli"
    code = main(
        ["--runs", str(runs), "--out", str(out), "--max-samples", "4", "--max-new-tokens", "8"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| base |" in printed and "| sft-full-dojo-tiny |" in printed
    results = json.loads((out / "evaluation_results.json").read_text())
    sft = results["models"][1]
    # DPO's implicit reward is measured against the run's starting model (config.yaml)
    assert sft["reference"] == str(paths.TINY_MODEL)
    assert (
        "pref_reward_accuracy" in sft["metrics"]
        and "pref_reward_accuracy" not in results["models"][0]["metrics"]
    )
    assert main(["--runs", str(tmp_path / "missing")]) == 2


def judge_rules(prompt: str) -> str:
    """A scripted judge: no verdict for "Add ..." questions, a 6 for every other answer."""
    question = prompt.split("[Question]")[-1].split("[Answer]")[0].strip()
    return "Hmm, hard to say." if question.startswith("Add") else "Fine. Rating: [[6]]"


def test_report_with_a_judge_that_cannot_always_be_parsed_or_reached(sft_run, tmp_path):
    import socket

    from transformers import AutoTokenizer

    from dojo.eval.judge import Judge
    from dojo.eval.scripted import ScriptedModel
    from dojo.infer.serve import running

    runs, _, _, _ = sft_run
    tokenizer = AutoTokenizer.from_pretrained(paths.TINY_MODEL)
    generation = DATA / "sft" / "arithmetic_eval.jsonl"  # 4 records: Add, What is, Add, Compute
    with running(ScriptedModel(tokenizer, judge_rules), tokenizer=tokenizer) as url:
        judge = Judge(base_url=url, max_tokens=16, backoff=0.01)
        suite = EvalSuite.from_files(
            generation=generation, max_samples=4, max_new_tokens=8, judge=judge
        )
        results = evaluate_runs(runs, paths.TINY_MODEL, suite, tmp_path / "judged")
    for row in results["models"]:
        assert row["metrics"]["judge_score"] == 6.0  # the two parsed grades
        assert {"bleu", "chrf", "rouge1"} <= set(row["metrics"])  # text metrics stand
        assert row["errors"]["judge"].startswith("2 of 4 judge replies had no verdict")
        assert "Hmm, hard to say." in row["errors"]["judge"]
        assert [s["judge_score"] for s in row["samples"]] == [None, 6.0, None]
    table = (tmp_path / "judged" / "evaluation_results.md").read_text()
    assert "judge_score" in table.splitlines()[0] and "had no verdict" in table

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens there
    gone = Judge(base_url=closed, model="m", max_retries=0, timeout=5)
    suite = EvalSuite.from_files(generation=generation, max_samples=2, max_new_tokens=8)
    suite.judge = gone
    results = evaluate_runs(runs, paths.TINY_MODEL, suite, tmp_path / "unreachable")
    for row in results["models"]:
        assert "judge_score" not in row["metrics"] and "bleu" in row["metrics"]
        assert closed in row["errors"]["judge"] and "dojo.infer serve" in row["errors"]["judge"]
    assert (tmp_path / "unreachable" / "comparison.png").exists()


def test_cli_judge_flags_need_an_endpoint(monkeypatch, tmp_path, capsys):
    from dojo.eval.__main__ import main

    for name in ("DOJO_JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--runs", str(tmp_path), "--judge"]) == 2
    assert "set DOJO_JUDGE_BASE_URL" in capsys.readouterr().err
