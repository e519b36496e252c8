"""The LLM judge over real HTTP on loopback. No HTTP mocks.

- A scripted judge served by `http.server`, whose verdicts are rules we control (a fair judge,
  one that always prefers the first answer, one that fails before answering, one that never
  gives a verdict): parsing, retries, back-off and errors.
- The dojo.infer server with dojo-tiny as the judge (whatever it says is a verdict or a
  recorded parse error), and with `ScriptedModel` judges (fair, and biased to the first
  position) so that the pairwise flip and the bias correction are checked on known verdicts
  through the whole real path: chat template, `model.generate`, HTTP, the `openai` client.
"""

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dojo import paths
from dojo.eval.judge import (
    Judge,
    JudgeError,
    JudgeParseError,
    JudgeUnavailable,
    compare_many,
    grade_many,
    parse_rating,
    parse_verdict,
)

SECRET = "sk-test-DO-NOT-LEAK-1234"
QUESTION = "Add 26 and 87."
RIGHT, WRONG = "26 + 87 = 113", "26 + 87 = 103"


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "reply, score",
    [
        ("Good answer. Rating: [[8]]", 8),
        ("First [[3]] then, on reflection, [[7]]", 7),
        ("Rating: 6", 6),
        ("I'd give it 9/10.", 9),
        ("**Score:** 4", 4),
        ("Rating: [[7.5]]", 7.5),
        ("[[42]] is not a rating; Rating: 5", 5),
    ],
)
def test_parse_rating(reply, score):
    assert parse_rating(reply) == score


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("A is clearer. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both are equally good. [[C]]", "tie"),
        ("Verdict: B", "B"),
        ("Assistant A is better overall.", "A"),
        ("It's a tie.", "tie"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_unparseable_reply_is_quoted_in_the_error():
    with pytest.raises(JudgeParseError, match=r"no rating found.*'I like both'"):
        parse_rating("I like both")
    with pytest.raises(JudgeParseError, match=r"\[\[A\]\], \[\[B\]\] or \[\[C\]\]"):
        parse_verdict("hmm")
    with pytest.raises(JudgeParseError):
        parse_rating("Rating: [[11]]")  # out of 1..10


# ------------------------------------------------------------------ a scripted judge server


class ScriptedJudge(BaseHTTPRequestHandler):
    """An OpenAI-style endpoint whose reply depends on the requested model name."""

    calls: list[dict] = []
    failures_left = {"flaky": 2}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        models = ["fair", "first", "flaky", "chatty"]
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedJudge.calls.append({"body": body, "auth": self.headers.get("Authorization")})
        model, prompt = body["model"], body["messages"][-1]["content"]
        if model == "flaky" and self.failures_left["flaky"] > 0:
            self.failures_left["flaky"] -= 1
            return self._send(500, {"error": {"message": "overloaded", "type": "server_error"}})
        if body["max_tokens"] > 1000:
            return self._send(
                400, {"error": {"message": "max_tokens too large", "param": "max_tokens"}}
            )
        self._send(200, self._completion(model, self._reply(model, prompt)))

    @staticmethod
    def _reply(model, prompt):
        if model == "chatty":
            return "Both answers have their charm."
        if "[Answer A]" not in prompt:  # single-answer grading
            return "Correct sum. Rating: [[9]]" if "113" in prompt else "Wrong. Rating: [[2]]"
        if model == "first":
            return "The first one reads better. [[A]]"
        a = re.search(r"\[Answer A\]\n(.*)\n\[Answer B\]", prompt).group(1)
        return "A is correct. [[A]]" if "113" in a else "B is correct. [[B]]"

    @staticmethod
    def _completion(model, text):
        return {
            "id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
        }  # fmt: skip


@pytest.fixture(scope="module")
def scripted_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def judge(url, model, **kw):
    kw = {"backoff": 0.01, "timeout": 10, **kw}
    return Judge(base_url=url, model=model, api_key=SECRET, **kw)


def test_single_answer_grades(scripted_url):
    j = judge(scripted_url, "fair")
    assert j.grade(QUESTION, RIGHT).score == 9
    assert j.grade(QUESTION, WRONG, reference=RIGHT).score == 9  # the reference holds 113
    assert j.grade(QUESTION, WRONG).score == 2
    assert ScriptedJudge.calls[-1]["auth"] == f"Bearer {SECRET}"  # sent, but see below


def test_pairwise_verdict_flips_with_the_order_and_the_winner_does_not(scripted_url):
    j = judge(scripted_url, "fair")
    p = j.compare(QUESTION, RIGHT, WRONG)
    assert (p.first, p.swapped, p.winner, p.consistent) == ("A", "B", "1", True)
    q = j.compare(QUESTION, WRONG, RIGHT)
    assert (q.first, q.swapped, q.winner, q.consistent) == ("B", "A", "2", True)


def test_position_bias_is_caught_and_corrected_to_a_tie(scripted_url):
    j = judge(scripted_url, "first")
    p = j.compare(QUESTION, RIGHT, WRONG)
    assert (p.first, p.swapped, p.winner, p.consistent) == ("A", "A", "tie", False)
    report = compare_many(j, [QUESTION] * 3, [RIGHT] * 3, [WRONG] * 3)
    assert report["first_position_rate"] == 1.0 and report["inconsistent"] == 3
    assert report["win_rate_1"] == 0.5  # all ties: the bias earns neither answer a win
    fair = compare_many(judge(scripted_url, "fair"), [QUESTION] * 2, [RIGHT, WRONG], [WRONG, RIGHT])
    assert (fair["wins_1"], fair["wins_2"], fair["win_rate_1"]) == (1, 1, 0.5)
    assert fair["first_position_rate"] == 0.5


def test_server_errors_are_retried_with_backoff(scripted_url):
    ScriptedJudge.failures_left["flaky"] = 2
    before = len(ScriptedJudge.calls)
    j = judge(scripted_url, "flaky", max_retries=3, backoff=0.05)
    start = time.monotonic()
    assert j.grade(QUESTION, RIGHT).score == 9
    assert len(ScriptedJudge.calls) - before == 3  # two 500s, then the answer
    assert time.monotonic() - start >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s


def test_retries_run_out_with_a_clear_error(scripted_url):
    ScriptedJudge.failures_left["flaky"] = 5
    with pytest.raises(
        JudgeUnavailable, match=r"after 2 attempts \(InternalServerError HTTP 500\)"
    ):
        judge(scripted_url, "flaky", max_retries=1).grade(QUESTION, RIGHT)


def test_a_bad_request_is_not_retried(scripted_url):
    before = len(ScriptedJudge.calls)
    with pytest.raises(JudgeError, match=r"refused the request \(HTTP 400\): max_tokens too large"):
        judge(scripted_url, "fair", max_tokens=5000).grade(QUESTION, RIGHT)
    assert len(ScriptedJudge.calls) - before == 1


def test_unparseable_verdicts_are_recorded_and_the_batch_goes_on(scripted_url):
    out = grade_many(judge(scripted_url, "chatty"), [QUESTION], [RIGHT])
    assert out["failed"] == 1 and out["mean_score"] is None
    assert "Both answers have their charm" in out["items"][0]["error"]
    mixed = grade_many(judge(scripted_url, "fair"), [QUESTION] * 2, [RIGHT, WRONG])
    assert mixed["mean_score"] == 5.5 and mixed["failed"] == 0


def test_model_defaults_to_the_first_listed(scripted_url):
    j = Judge(base_url=scripted_url)
    assert j.resolve_model() == "fair"


def test_unreachable_server_fails_fast_and_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    j = judge(url, "m", max_retries=2)
    start = time.monotonic()
    with pytest.raises(JudgeUnavailable) as info:
        j.grade(QUESTION, RIGHT)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert url in message and "after 3 attempts" in message and "dojo.infer serve" in message
    assert SECRET not in message


def test_the_key_comes_from_the_environment_and_never_shows(monkeypatch, scripted_url):
    monkeypatch.setenv("DOJO_JUDGE_BASE_URL", scripted_url)
    monkeypatch.setenv("DOJO_JUDGE_MODEL", "fair")
    monkeypatch.setenv("DOJO_JUDGE_API_KEY", SECRET)
    j = Judge.from_env(backoff=0.01)
    assert (j.base_url, j.model, j.api_key) == (scripted_url, "fair", SECRET)
    assert SECRET not in repr(j) and SECRET not in str(j)
    out = compare_many(j, [QUESTION], [RIGHT], [WRONG])
    assert SECRET not in json.dumps(out)
    monkeypatch.delenv("DOJO_JUDGE_BASE_URL")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeError, match="set DOJO_JUDGE_BASE_URL"):
        Judge.from_env()


# ------------------------------------------------------------------ the dojo.infer server


@pytest.fixture(scope="module")
def tiny_server():
    from dojo.infer.serve import running

    with running(paths.TINY_MODEL, model_name="tiny", api_key=SECRET) as url:
        yield url


def test_judge_against_the_dojo_infer_server(tiny_server):
    j = Judge(base_url=tiny_server, api_key=SECRET, max_tokens=16, backoff=0.01)
    assert j.resolve_model() == "tiny"
    reply = j.ask("What is 2 + 2?")
    assert isinstance(reply, str)
    # dojo-tiny is no judge: whatever it says is either a verdict or a recorded parse error.
    out = grade_many(j, [QUESTION, "What is 6 * 11?"], [RIGHT, "66"])
    assert out["graded"] + out["failed"] == 2
    for item in out["items"]:
        assert (item["score"] is not None and 1 <= item["score"] <= 10) or "no rating" in item[
            "error"
        ]


def test_dojo_infer_server_refusals_surface_as_judge_errors(tiny_server):
    with pytest.raises(JudgeError, match=r"HTTP 400.*model") as info:
        Judge(base_url=tiny_server, model="nope", api_key=SECRET).ask("hi")
    assert SECRET not in str(info.value)
    with pytest.raises(JudgeError, match="HTTP 401") as info:
        Judge(base_url=tiny_server, api_key="wrong-key", model="tiny").ask("hi")
    assert SECRET not in str(info.value)


# ---------------------------------------------- scripted judges served by the dojo.infer server


def fair_rules(prompt: str) -> str:
    """A judge that checks the sum: the answer (or answer A) holding 113 is the better one."""
    if "[Answer A]" not in prompt:
        answer = prompt.split("[Answer]")[-1]
        return "The sum is right. Rating: [[9]]" if "113" in answer else "Wrong. Rating: [[2]]"
    a = prompt.split("[Answer A]")[-1].split("[Answer B]")[0]
    return "A has the right sum. [[A]]" if "113" in a else "B has the right sum. [[B]]"


def first_rules(prompt: str) -> str:
    """A judge with total position bias: whatever is shown first wins."""
    return "The first answer reads better. [[A]]"


@pytest.fixture(scope="module")
def scripted_server():
    """Two scripted judges behind two real dojo.infer servers (chat template, generate, SSE)."""
    from transformers import AutoTokenizer

    from dojo.eval.scripted import ScriptedModel
    from dojo.infer.serve import running

    tokenizer = AutoTokenizer.from_pretrained(paths.TINY_MODEL)
    fair = ScriptedModel(tokenizer, fair_rules)
    first = ScriptedModel(tokenizer, first_rules)
    with (
        running(fair, tokenizer=tokenizer, model_name="fair-rules") as fair_url,
        running(first, tokenizer=tokenizer, model_name="first-rules") as first_url,
    ):
        yield {"fair": fair_url, "first": first_url}


def test_pairwise_flips_with_the_order_on_the_dojo_infer_server(scripted_server):
    j = Judge(base_url=scripted_server["fair"], max_tokens=32, backoff=0.01)
    assert j.resolve_model() == "fair-rules"
    assert j.grade(QUESTION, RIGHT).score == 9 and j.grade(QUESTION, WRONG).score == 2
    p = j.compare(QUESTION, RIGHT, WRONG)
    # the raw verdict follows the right answer from A to B when the order is swapped ...
    assert (p.first, p.swapped) == ("A", "B")
    assert p.replies == ("A has the right sum. [[A]]", "B has the right sum. [[B]]")
    # ... and the winner, named by answer rather than position, stays the same
    assert (p.winner, p.consistent) == ("1", True)
    q = j.compare(QUESTION, WRONG, RIGHT)
    assert (q.first, q.swapped, q.winner, q.consistent) == ("B", "A", "2", True)


def test_position_bias_is_corrected_on_the_dojo_infer_server(scripted_server):
    biased = Judge(base_url=scripted_server["first"], max_tokens=32, backoff=0.01)
    p = biased.compare(QUESTION, RIGHT, WRONG)
    assert (p.first, p.swapped, p.winner, p.consistent) == ("A", "A", "tie", False)
    report = compare_many(biased, [QUESTION] * 2, [RIGHT, WRONG], [WRONG, RIGHT])
    assert report["first_position_rate"] == 1.0 and report["inconsistent"] == 2
    assert (report["wins_1"], report["wins_2"], report["ties"]) == (0, 0, 2)
    fair = compare_many(
        Judge(base_url=scripted_server["fair"], max_tokens=32), [QUESTION] * 2,
        [RIGHT, WRONG], [WRONG, RIGHT],
    )  # fmt: skip
    assert (fair["wins_1"], fair["wins_2"], fair["inconsistent"]) == (1, 1, 0)
    assert fair["first_position_rate"] == 0.5
