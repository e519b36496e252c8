"""Streamed generation, sampling options, the chat loop and the `python -m dojo.infer` CLI."""

import io
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from dojo import paths
from dojo.infer.__main__ import main
from dojo.infer.chat import chat_loop, fit_context, set_option
from dojo.infer.generate import ReplyStream, SamplingOptions, generate_replies
from dojo.infer.load import adapter_base, load_for_inference, resolve_model

HELLO = [{"role": "user", "content": "What is 12 + 7?"}]


@pytest.fixture(scope="module")
def loaded():
    return load_for_inference(paths.TINY_MODEL)


@pytest.fixture(scope="module")
def rambler():
    """dojo-tiny that never ends its turn, so every reply runs to max_new_tokens."""
    model, tokenizer = load_for_inference(paths.TINY_MODEL)
    model.generation_config.eos_token_id = None
    return model, tokenizer


def test_stream_pieces_join_to_the_batched_greedy_reply(loaded):
    model, tokenizer = loaded
    reply = ReplyStream(model, tokenizer, HELLO, SamplingOptions(max_new_tokens=20))
    pieces = list(reply)
    assert "".join(pieces) == reply.text
    assert reply.text.strip() == generate_replies(model, tokenizer, [HELLO], max_new_tokens=20)[0]
    assert reply.finish_reason in ("stop", "length") and 1 <= reply.completion_tokens <= 20


def test_length_finish_and_token_count(rambler):
    model, tokenizer = rambler
    reply = ReplyStream(model, tokenizer, HELLO, SamplingOptions(max_new_tokens=9))
    reply.read()
    assert reply.finish_reason == "length" and reply.completion_tokens == 9


def test_stop_string_cuts_the_reply_and_is_never_emitted(rambler):
    model, tokenizer = rambler
    options = SamplingOptions(max_new_tokens=40)
    full = ReplyStream(model, tokenizer, HELLO, options).read()
    stop = full[12:15]
    assert len(stop) == 3 and stop in full
    reply = ReplyStream(model, tokenizer, HELLO, options, stop=[stop, "never-appears"])
    streamed = "".join(reply)
    assert streamed == reply.text == full[: full.find(stop)]
    assert reply.finish_reason == "stop"
    assert reply.completion_tokens < 40  # generation stopped, not just the text


def test_abandoning_a_stream_stops_generation(rambler):
    model, tokenizer = rambler
    reply = ReplyStream(model, tokenizer, HELLO, SamplingOptions(max_new_tokens=400))
    for i, _ in enumerate(reply):
        if i == 1:
            break
    reply._thread.join(timeout=10)
    assert not reply._thread.is_alive()
    assert reply.finish_reason == "cancelled" and reply.completion_tokens < 400


def test_seeded_sampling_repeats_and_greedy_ignores_the_seed(loaded):
    model, tokenizer = loaded
    hot = SamplingOptions(max_new_tokens=16, temperature=1.5, top_k=50, seed=3)
    assert ReplyStream(model, tokenizer, HELLO, hot).read() == (
        ReplyStream(model, tokenizer, HELLO, hot).read()
    )
    kwargs = hot.generate_kwargs()
    assert kwargs["do_sample"] and kwargs["temperature"] == 1.5 and kwargs["top_k"] == 50
    assert SamplingOptions(temperature=0).generate_kwargs()["do_sample"] is False


@pytest.mark.parametrize(
    "field, value",
    [("temperature", -1), ("top_p", 0), ("top_p", 1.5), ("max_new_tokens", 0), ("top_k", -2)],
)
def test_bad_sampling_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**{field: value})


def test_chat_loop_keeps_history_and_obeys_commands(loaded):
    model, tokenizer = loaded
    lines = iter(
        ["hi", "/set temperature 0.7", "/set nope 1", "/system Be brief.", "2 + 2?", "/exit"]
    )
    out = io.StringIO()
    messages = chat_loop(
        model, tokenizer, SamplingOptions(max_new_tokens=6), read=lambda _: next(lines), out=out
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "Be brief." and messages[3]["content"] == "2 + 2?"
    assert "no sampling option 'nope'" in out.getvalue()
    assert out.getvalue().count("assistant> ") == 2


def test_chat_loop_ends_on_end_of_input(loaded):
    model, tokenizer = loaded

    def read(_):
        raise EOFError

    assert chat_loop(model, tokenizer, read=read, out=io.StringIO()) == []


def test_fit_context_drops_the_oldest_turns_but_keeps_the_system_prompt(loaded):
    _, tokenizer = loaded
    messages = [{"role": "system", "content": "S"}]
    for i in range(20):
        messages += [
            {"role": "user", "content": f"question {i} " * 5},
            {"role": "assistant", "content": f"answer {i} " * 5},
        ]
    messages.append({"role": "user", "content": "last"})
    fitted = fit_context(messages, tokenizer, budget=120)
    assert fitted[0]["role"] == "system" and fitted[-1]["content"] == "last"
    assert fitted[1]["role"] == "user" and len(fitted) < len(messages)
    rendered = tokenizer.apply_chat_template(fitted, tokenize=False, add_generation_prompt=True)
    assert len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) <= 120


def test_set_option_parses_and_validates():
    options = set_option(SamplingOptions(), "top_k", "40")
    assert options.top_k == 40
    with pytest.raises(ValueError, match="top_p"):
        set_option(options, "top_p", "2")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter.*full model"):
        adapter_base(paths.TINY_MODEL)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_for_inference(tmp_path)
    with pytest.raises(ValueError, match="model .*adapter"):
        load_for_inference()
    # a folder that does not exist is named as such, not taken for a malformed hub id
    missing = tmp_path / "work" / "data" / "models" / "dojo-tiny"
    for name in (missing, str(missing), "data/models/no-such-model", "./no-such-model"):
        with pytest.raises(
            FileNotFoundError, match=f"model folder {re.escape(str(name))} not found"
        ):
            load_for_inference(name)
    with pytest.raises(FileNotFoundError, match="adapter folder .* not found"):
        load_for_inference(adapter=tmp_path / "runs" / "sft" / "model")
    # an adapter whose recorded base was moved away: the error says where the name came from
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(missing), "peft_type": "LORA"})
    )
    with pytest.raises(FileNotFoundError, match=r"not found \(named by .*adapter_config.json\)"):
        load_for_inference(adapter=adapter)
    with pytest.raises(FileNotFoundError, match="looks like a PEFT adapter"):
        load_for_inference(adapter)


def test_repo_relative_model_paths_resolve_from_any_folder(monkeypatch, tmp_path):
    """Recipes and run folders say `data/models/dojo-tiny`; notebooks run in `notebooks/`."""
    monkeypatch.chdir(tmp_path)
    assert resolve_model("data/models/dojo-tiny") == paths.TINY_MODEL
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # hub id
    with pytest.raises(FileNotFoundError, match="model folder data/models/nope not found"):
        resolve_model("data/models/nope")


def test_cli_generate_streams_one_and_batches_several(capsys, loaded):
    model, tokenizer = loaded
    main(["generate", "--model", str(paths.TINY_MODEL), "--prompt", "What is 12 + 7?",
          "--max-new-tokens", "8"])  # fmt: skip
    one = capsys.readouterr().out
    expected = generate_replies(model, tokenizer, [HELLO], max_new_tokens=8)[0]
    assert one.strip() == expected
    main(["generate", "--model", str(paths.TINY_MODEL), "--prompt", "a", "--prompt", "b",
          "--max-new-tokens", "4"])  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["a", "b"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_serve_answers_the_official_client():
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dojo.infer", "serve", "--model", str(paths.TINY_MODEL),
           "--port", str(port), "--model-name", "tiny"]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # a cold start imports torch
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        plain = client.chat.completions.create(
            model="tiny", messages=HELLO, max_tokens=8, temperature=0
        )
        streamed = client.chat.completions.create(
            model="tiny", messages=HELLO, max_tokens=8, temperature=0, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == plain.choices[0].message.content
    finally:
        server.terminate()
        server.wait(timeout=30)
