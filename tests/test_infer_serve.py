"""The OpenAI-compatible server, for real: uvicorn on loopback, the official `openai` client.

Replies are checked against `generate_replies` (transformers' own `generate`), streamed text
against the non-streamed reply, and the robustness rules of the spec: malformed requests get a
4xx with an OpenAI-style body and the server keeps serving; concurrent clients are all
answered; a client that disconnects mid-stream frees the model.
"""

import json
import threading
import time

import httpx
import openai
import pytest

from dojo import paths
from dojo.infer.generate import generate_replies
from dojo.infer.load import load_for_inference
from dojo.infer.serve import ServerLimits, running

NAME = "tiny"
HELLO = [{"role": "user", "content": "What is 12 + 7?"}]


@pytest.fixture(scope="module")
def loaded():
    model, tokenizer = load_for_inference(paths.TINY_MODEL)
    return model, tokenizer


@pytest.fixture(scope="module")
def base_url(loaded):
    model, tokenizer = loaded
    limits = ServerLimits(max_tokens=64, default_max_tokens=16, max_body_bytes=20_000)
    with running(model, tokenizer=tokenizer, model_name=NAME, limits=limits) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)


def ask(client, messages=HELLO, **kwargs):
    kwargs = {"max_tokens": 12, "temperature": 0, **kwargs}
    return client.chat.completions.create(model=NAME, messages=messages, **kwargs)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == [NAME]


def test_greedy_reply_matches_transformers_generate(client, loaded):
    model, tokenizer = loaded
    reply = ask(client)
    expected = generate_replies(model, tokenizer, [HELLO], max_new_tokens=12)[0]
    assert reply.choices[0].message.content.strip() == expected
    assert reply.choices[0].message.role == "assistant"
    assert reply.model == NAME and reply.object == "chat.completion"
    prompt = tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert reply.usage.prompt_tokens == n_prompt
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("stop", "length")
    if reply.choices[0].finish_reason == "length":
        assert reply.usage.completion_tokens == 12


def test_streaming_yields_the_same_text_in_pieces(client):
    whole = ask(client, max_tokens=24).choices[0].message.content
    stream = ask(client, max_tokens=24, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert len({c.id for c in chunks}) == 1


def test_sse_wire_format_ends_with_done(base_url):
    body = {"model": NAME, "messages": HELLO, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_seeded_sampling_is_reproducible(client):
    a = ask(client, temperature=1.5, seed=7, max_tokens=16).choices[0].message.content
    b = ask(client, temperature=1.5, seed=7, max_tokens=16).choices[0].message.content
    assert a == b


BAD_REQUESTS = [
    ("{not json", "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    ('{"model": "tiny"}', "invalid_value", "messages"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "invalid_value", "model"),
    ('{"model": "tiny", "messages": []}', "invalid_value", "messages"),
    ('{"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}', None, "messages.0.role"),
    ('{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', "model_not_found", "model"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', None, "max_tokens"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 65}', None, "max_tokens"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": 3}', None, "temperature"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 2}', None, "n"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}', None, "stop"),
]  # fmt: skip


@pytest.mark.parametrize("body, code, param", BAD_REQUESTS)
def test_malformed_requests_get_a_400_with_an_openai_error_body(base_url, body, code, param):
    r = httpx.post(
        f"{base_url}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    if code:
        assert error["code"] == code
    assert httpx.get(f"{base_url}/models", timeout=30).status_code == 200  # still serving


def test_the_official_client_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="not served here"):
        client.chat.completions.create(model="gpt-9", messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="out of range"):
        ask(client, max_tokens=10_000)
    assert ask(client).choices[0].message.content is not None


def test_a_prompt_longer_than_the_context_is_refused(client, loaded):
    context = loaded[0].config.max_position_embeddings
    long = [{"role": "user", "content": "1 " * context}]
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, messages=long)
    assert e.value.body["code"] == "context_length_exceeded"


def test_an_oversized_body_gets_a_413(base_url):
    huge = {"model": NAME, "messages": [{"role": "user", "content": "x" * 50_000}]}
    r = httpx.post(f"{base_url}/chat/completions", json=huge, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_unknown_routes_answer_in_the_same_error_shape(base_url):
    r = httpx.get(f"{base_url}/completions", timeout=30)
    assert r.status_code in (404, 405) and "error" in r.json()


@pytest.mark.slow
def test_concurrent_clients_are_all_answered(client):
    expected = ask(client).choices[0].message.content
    results, errors = [], []

    def one(i):
        try:
            if i % 2:
                pieces = ask(client, stream=True)
                results.append("".join(c.choices[0].delta.content or "" for c in pieces))
            else:
                results.append(ask(client).choices[0].message.content)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results == [expected] * 6


@pytest.fixture(scope="module")
def endless(loaded):
    """A slow model that never ends its turn: a 400-token reply takes >= 8 s unless cut."""
    model, tokenizer = load_for_inference(paths.TINY_MODEL)
    model.generation_config.eos_token_id = None
    model.register_forward_pre_hook(lambda *_: time.sleep(0.02))
    limits = ServerLimits(max_tokens=400, max_pending=1)
    with running(model, tokenizer=tokenizer, model_name=NAME, limits=limits) as url:
        yield url


def wait_idle(base_url, seconds=30.0) -> float:
    start = time.perf_counter()
    while httpx.get(f"{base_url.removesuffix('/v1')}/health", timeout=10).json()["active"]:
        assert time.perf_counter() - start < seconds, "generation was never released"
        time.sleep(0.05)
    return time.perf_counter() - start


@pytest.mark.slow
def test_a_client_leaving_mid_stream_frees_the_model(endless):
    body = {"model": NAME, "messages": HELLO, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{endless}/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    # the stream is closed after one event; the 8-second generation must stop at once
    assert wait_idle(endless) < 4
    quick = openai.OpenAI(base_url=endless, api_key="x", max_retries=0)
    reply = quick.chat.completions.create(model=NAME, messages=HELLO, max_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"


@pytest.mark.slow
def test_more_requests_than_max_pending_get_a_429(endless):
    body = {"model": NAME, "messages": HELLO, "max_tokens": 400, "stream": True}
    wait_idle(endless)
    with httpx.stream("POST", f"{endless}/chat/completions", json=body, timeout=60) as r:
        next(r.iter_lines())
        second = httpx.post(f"{endless}/chat/completions", json=body, timeout=30)
        assert second.status_code == 429 and second.json()["error"]["code"] == "server_busy"
    wait_idle(endless)


def test_api_key_is_enforced_when_set(loaded):
    model, tokenizer = loaded
    with running(model, tokenizer=tokenizer, model_name=NAME, api_key="sesame") as url:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=url, api_key="sesame", max_retries=0)
        assert [m.id for m in good.models.list()] == [NAME]


def test_serving_from_paths_names_the_model_after_the_folder():
    with running(paths.TINY_MODEL) as url:
        ids = [m.id for m in openai.OpenAI(base_url=url, api_key="x").models.list()]
    assert ids == [paths.TINY_MODEL.name]
