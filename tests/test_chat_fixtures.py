"""Every family renders byte-identical to its vendor's official template, and masks its replies.

Parametrized over `tests/fixtures/chat/*.json` (written by `tools/make_chat_fixtures.py` from the
official templates, which are not needed here).
"""

import copy
import json
from pathlib import Path

import pytest

from dojo import chat, paths
from dojo.chat.masks import mask_spans
from dojo.chat.render import frozen_clock
from dojo.chat.toy_tokenizer import byte_tokenizer

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "chat").glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _cases():
    for path in FIXTURES:
        fixture = _load(path)
        for case in fixture["cases"]:
            yield pytest.param(fixture, case, id=f"{fixture['family']}:{case['name']}")


def _render(fixture: dict, case: dict, **extra):
    with frozen_clock(fixture["frozen_now"]):
        return chat.render(
            fixture["family"],
            case["messages"],
            add_generation_prompt=case["add_generation_prompt"],
            tools=case.get("tools"),
            **case.get("kwargs", {}),
            **extra,
        )


def test_there_are_fixtures():
    assert FIXTURES, "no fixtures in tests/fixtures/chat"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_matches_a_family(path):
    fixture = _load(path)
    assert fixture["family"] == path.stem
    assert path.stem in chat.list_families(), f"no chat_templates/{path.stem}.jinja"
    for key in ("repo", "path", "commit", "sha256"):
        assert fixture["source"].get(key), f"{path.name}: source.{key} is missing"
    family = chat.get_family(path.stem)
    # The tokens the official template was rendered with are the ones our header declares.
    assert family.render_tokens == fixture["special_tokens"]


@pytest.mark.parametrize("fixture, case", list(_cases()))
def test_render_matches_official(fixture, case):
    if "raises" in case:
        with pytest.raises(Exception) as info:  # noqa: B017 - the official may raise any type
            _render(fixture, case)
        assert case["raises"] in str(info.value)
    else:
        assert _render(fixture, case) == case["expected"]


def _mask_cases():
    for path in FIXTURES:
        fixture = _load(path)
        for case in fixture["cases"]:
            if "expected" in case and any(m["role"] == "assistant" for m in case["messages"]):
                yield pytest.param(fixture, case, id=f"{fixture['family']}:{case['name']}")


@pytest.mark.parametrize("fixture, case", list(_mask_cases()))
def test_assistant_mask_covers_replies_and_end_of_turn(fixture, case):
    family = chat.get_family(fixture["family"])
    declared = chat.parse_header(family.template).get("end_of_turn")
    assert declared, f"{family.name}: header has no end_of_turn (write 'none' if it has none)"
    tokens = dict(family.render_tokens)
    tok = byte_tokenizer(family.special_tokens, tokens.get("bos_token"), tokens.get("eos_token"))
    tok.chat_template = family.template
    with frozen_clock(fixture["frozen_now"]):
        text, spans = chat.render_with_spans(
            family.name,
            case["messages"],
            case["add_generation_prompt"],
            case.get("tools"),
            **case.get("kwargs", {}),
        )
        mask = chat.assistant_mask(
            tok,
            case["messages"],
            add_generation_prompt=case["add_generation_prompt"],
            tools=case.get("tools"),
            **case.get("kwargs", {}),
        )
    assert text == case["expected"]
    # One generation block per assistant turn, each ending with an end-of-turn token.
    n_assistant = sum(m["role"] == "assistant" for m in case["messages"])
    assert len(spans) == n_assistant, f"{len(spans)} generation blocks for {n_assistant} replies"
    pieces = [text[a:b] for a, b in spans]
    for piece, message in zip(pieces, [m for m in case["messages"] if m["role"] == "assistant"]):
        if piece == "" and message.get("content") == "":
            continue  # vicuna writes an empty reply as its bare tag, as FastChat does
        if family.end_of_turn:
            assert piece.endswith(family.end_of_turn), (
                f"block {piece!r} lacks its end-of-turn token"
            )
        content = message.get("content")
        reply = content.split("</think>")[-1].strip() if isinstance(content, str) else ""
        if reply and reply in text:  # some templates drop it (a tool call replaces the text)
            assert reply in piece, f"reply {reply!r} is outside its generation block"
    # The token mask selects exactly those characters.
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(mask) == len(ids)
    groups = [ids[start:end] for start, end in mask_spans(mask)]
    decoded = [tok.decode(g) for g in groups]
    pieces = [p for p in pieces if p]
    if not family.end_of_turn:
        # transformers maps a block's last character to its first token, so a reply that ends
        # in a multi-byte character (no end-of-turn token after it) loses its last bytes.
        decoded = [d.rstrip("\ufffd") for d in decoded]
        pieces = [p[: len(d)] if p.startswith(d) else p for p, d in zip(pieces, decoded)]
    assert decoded == pieces


@pytest.fixture(scope="module")
def tiny_tokenizer():
    if not (paths.TINY_MODEL / "tokenizer.json").exists():
        pytest.skip("dojo-tiny is not built yet")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths.TINY_MODEL)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_masks_on_tiny_tokenizer_cover_exactly_the_replies(path, tiny_tokenizer):
    """Issue 3's check on dojo-tiny's real BPE tokenizer, with the family's special tokens
    added: over every fixture conversation with replies, the masked tokens decode to exactly
    the text of the generation blocks (each reply and its end-of-turn token)."""
    fixture = _load(path)
    family = chat.get_family(fixture["family"])
    tok = copy.deepcopy(tiny_tokenizer)
    chat.apply_template(tok, family.name)
    checked = 0
    for case in fixture["cases"]:
        if "expected" not in case or not any(m["role"] == "assistant" for m in case["messages"]):
            continue
        kwargs = {"tools": case.get("tools"), **case.get("kwargs", {})}
        gen = case["add_generation_prompt"]
        with frozen_clock(fixture["frozen_now"]):
            text, spans = chat.render_with_spans(family.name, case["messages"], gen, **kwargs)
            out = chat.tokenize_chat(tok, case["messages"], add_generation_prompt=gen, **kwargs)
        ids = out["input_ids"]
        decoded = [tok.decode(ids[a:b]) for a, b in mask_spans(out["assistant_masks"])]
        blocks = [text[a:b] for a, b in spans if b > a]
        if not family.end_of_turn:
            # No end-of-turn token: transformers maps a block's last character to its first
            # token, so a final multi-byte character split over tokens loses its last bytes.
            decoded = [d.rstrip("\ufffd") for d in decoded]
            blocks = [b[: len(d)] if b.startswith(d) else b for b, d in zip(blocks, decoded)]
        assert decoded == blocks, case["name"]
        checked += 1
    assert checked, f"{family.name}: no fixture conversation with a reply"
