"""Render a vendor's official chat template over the shared conversation set into a fixture.

    python tools/make_chat_fixtures.py --family llama-2 --official /tmp/official/llama-2.jinja \
        --source-repo OWNER/REPO --source-path tokenizer_config.json --source-commit SHA \
        --bos-token '<s>' --eos-token '</s>'

`--official` may be a `.jinja` file, a `tokenizer_config.json` (its `chat_template` is used;
a list of named templates picks `default`), or `python:NAME` for the three families whose vendor
formats prompts in Python rather than in a chat template (`python:alpaca`, `python:vicuna`,
`python:baichuan2`): `PYTHON_REFERENCES` below transcribes that code, line for line. The template is rendered with transformers' own
`render_jinja_template` (the sandbox `apply_chat_template` uses), with `strftime_now` frozen at
FROZEN_NOW, over `dojo.chat.conversations.conversation_cases(family)` (the shared set plus
the family's own cases). The result is written to
`tests/fixtures/chat/<family>.json`:

    {"family", "frozen_now", "source": {"repo", "path", "commit", "sha256"},
     "special_tokens": {"bos_token": ...}, "skipped": {case: reason},
     "cases": [{"name", "messages", "tools"?, "add_generation_prompt", "kwargs"?,
                "expected": str} | {..., "raises": str, "raises_type": str}]}

If `chat_templates/<family>.jinja` exists, the script also reports which cases ours reproduces.
The official template is not committed; only its source and sha256 are recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

from dojo import paths
from dojo.chat.conversations import FROZEN_NOW, conversation_cases
from dojo.chat.render import frozen_clock, render_template

FIXTURE_DIR = paths.REPO_ROOT / "tests" / "fixtures" / "chat"

# tatsu-lab/stanford_alpaca train.py @ c8ea92b1c360269f787036fb3746b9e2dea120e5, PROMPT_DICT.
ALPACA_PROMPTS = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
    ),
}


class Refusal(Exception):  # noqa: N818 - it is the vendor's refusal, not our error
    """The vendor's Python rejects a conversation (an assert, a KeyError, a ValueError); a
    template says the same with raise_exception, so the fixture records a TemplateError."""


VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions."
)


def alpaca_reference(messages: list[dict], add_generation_prompt: bool, eos: str = "</s>") -> str:
    """train.py: source = PROMPT_DICT[...].format_map(example); target = output + eos_token.
    Single turn; without a generation prompt the trailing '### Response:' is left out."""
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["user", "assistant"]):
        raise Refusal("Alpaca is single-turn: one user message, then at most one assistant reply")
    user = messages[0]
    if not all(isinstance(m["content"], str) for m in messages):
        raise TypeError('can only concatenate str (not "list") to str')  # strings only
    key = "prompt_input" if user.get("input", "") != "" else "prompt_no_input"
    source = ALPACA_PROMPTS[key].format_map(
        {"instruction": user["content"], "input": user.get("input", "")}
    )
    if len(messages) == 2:
        return source + messages[1]["content"] + eos
    return source if add_generation_prompt else source.removesuffix("### Response:")


def vicuna_reference(messages: list[dict], add_generation_prompt: bool) -> str:
    """FastChat: openai_api_server's message loop, then Conversation.get_prompt() for the
    vicuna_v1.1 template (SeparatorStyle.ADD_COLON_TWO, sep ' ', sep2 '</s>'); training
    asserts that roles alternate."""
    system, turns = VICUNA_SYSTEM, []
    for message in messages:
        role = message["role"]
        if role not in ("system", "user", "assistant"):
            raise Refusal(f"Unknown role: {role}")
        if "content" not in message:  # FastChat: KeyError
            raise Refusal("message has no content")
        content = message["content"]
        if role == "system":
            system = content
            continue
        if (role == "user") != (len(turns) % 2 == 0):
            raise Refusal("roles must alternate user/assistant")
        turns.append(("USER" if role == "user" else "ASSISTANT", content))
    if add_generation_prompt:
        turns.append(("ASSISTANT", None))
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(turns):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return ret


def baichuan2_reference(messages: list[dict], add_generation_prompt: bool) -> str:
    """Baichuan2-*-Chat generation_utils.build_chat_input, with token ids written as their
    tokens (user_token_id 195 = <reserved_106>, assistant_token_id 196 = <reserved_107>) and
    without the length truncation; the assistant token is appended only on request."""
    system, body = "", ""
    for i, message in enumerate(messages):
        if message["role"] == "system":
            if i != 0:
                raise Refusal("system message must be the first message")
            system = message["content"]
            continue
        if "content" not in message:  # the vendor: KeyError
            raise Refusal("message has no content")
        tag = "<reserved_106>" if message["role"] == "user" else "<reserved_107>"
        body += tag + message["content"]
    if add_generation_prompt and messages[-1]["role"] != "assistant":
        body += "<reserved_107>"
    return system + body


PYTHON_REFERENCES = {
    "alpaca": alpaca_reference,
    "vicuna": vicuna_reference,
    "baichuan2": baichuan2_reference,
}


def read_official(official: str) -> str:
    """The template text of a `.jinja` file or a `tokenizer_config.json`, or the source of a
    Python reference (`python:NAME`)."""
    if official.startswith("python:"):
        return inspect.getsource(PYTHON_REFERENCES[official.removeprefix("python:")])
    path = Path(official)
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return text
    template = json.loads(text)["chat_template"]
    if isinstance(template, list):
        template = {t["name"]: t["template"] for t in template}["default"]
    return template


def render_case(official: str, template: str, case: dict, special_tokens: dict[str, str]) -> dict:
    """One fixture entry: the case plus `expected` (or `raises` when the official refuses it)."""
    entry = {
        k: case[k]
        for k in ("name", "messages", "tools", "add_generation_prompt", "kwargs")
        if k in case
    }
    reference = PYTHON_REFERENCES.get(official.removeprefix("python:"))
    try:
        if official.startswith("python:"):
            entry["expected"] = reference(case["messages"], case["add_generation_prompt"])
            return entry
        with frozen_clock(FROZEN_NOW):
            entry["expected"] = render_template(
                template,
                case["messages"],
                add_generation_prompt=case["add_generation_prompt"],
                tools=case.get("tools"),
                special_tokens=special_tokens,
                **case.get("kwargs", {}),
            )
    except Exception as err:  # noqa: BLE001 - any failure of the official template is a fact to record
        entry["raises"] = str(err)
        entry["raises_type"] = "TemplateError" if isinstance(err, Refusal) else type(err).__name__
    return entry


def build_fixture(args: argparse.Namespace) -> dict:
    """The fixture dict for one family."""
    template = read_official(args.official)
    special_tokens = {
        k: v
        for k, v in (("bos_token", args.bos_token), ("eos_token", args.eos_token))
        if v is not None
    }
    for item in args.token or []:
        key, _, value = item.partition("=")
        special_tokens[key] = value
    skipped = dict(item.partition("=")[::2] for item in args.skip or [])
    cases = [
        render_case(args.official, template, c, special_tokens)
        for c in conversation_cases(args.family)
        if c["name"] not in skipped
    ]
    return {
        "family": args.family,
        "frozen_now": FROZEN_NOW,
        "source": {
            "repo": args.source_repo,
            "path": args.source_path,
            "commit": args.source_commit,
            "sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        },
        "special_tokens": special_tokens,
        "skipped": skipped,
        "cases": cases,
    }


def compare_with_ours(fixture: dict) -> int:
    """Print which cases our template reproduces; return the number of mismatches."""
    from dojo.chat import list_families, render

    family = fixture["family"]
    if family not in list_families():
        print(f"no chat_templates/{family}.jinja yet; nothing to compare")
        return 0
    bad = 0
    for case in fixture["cases"]:
        try:
            with frozen_clock(fixture["frozen_now"]):
                got = render(
                    family,
                    case["messages"],
                    case["add_generation_prompt"],
                    case.get("tools"),
                    **case.get("kwargs", {}),
                )
            ok = "expected" in case and got == case["expected"]
        except Exception as err:  # noqa: BLE001
            got = f"<raised {type(err).__name__}: {err}>"
            ok = "raises" in case and case["raises"] in str(err)
        if not ok:
            bad += 1
            want = case.get("expected", f"<raises {case.get('raises')}>")
            print(f"MISMATCH {case['name']}\n  official: {want!r}\n  ours:     {got!r}")
    print(f"{family}: {len(fixture['cases']) - bad}/{len(fixture['cases'])} cases match")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, help="file stem, e.g. llama-3.1")
    parser.add_argument(
        "--official", required=True, help=".jinja, tokenizer_config.json or python:NAME"
    )
    parser.add_argument("--source-repo", required=True, help="OWNER/REPO the official came from")
    parser.add_argument("--source-path", required=True, help="path of the file in that repo")
    parser.add_argument("--source-commit", required=True, help="commit SHA of that file")
    parser.add_argument("--bos-token", help="bos_token the vendor's tokenizer passes")
    parser.add_argument("--eos-token", help="eos_token the vendor's tokenizer passes")
    parser.add_argument("--token", action="append", help="other template variable, NAME=VALUE")
    parser.add_argument("--skip", action="append", help="leave out a case: NAME=REASON")
    parser.add_argument("--out", help="output path (default tests/fixtures/chat/FAMILY.json)")
    args = parser.parse_args(argv)

    fixture = build_fixture(args)
    out = Path(args.out) if args.out else FIXTURE_DIR / f"{args.family}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    raised = sum("raises" in c for c in fixture["cases"])
    print(f"wrote {out}: {len(fixture['cases'])} cases ({raised} raise)")
    return 1 if compare_with_ours(fixture) else 0


if __name__ == "__main__":
    sys.exit(main())
