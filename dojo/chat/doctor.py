"""The template doctor: finds the classic chat-template bugs in a tokenizer, each with a fix.

Checks, in order:
- no_template / no_generation_markers: nothing to render, or no way to build assistant masks;
- double_bos: the template writes BOS and tokenizing the rendered text adds a second one;
- eot_not_in_mask: an assistant reply's mask stops before its end-of-turn token, so the model
  never learns to stop;
- pad_equals_eos: collators that mask padding also mask every eos in the labels;
- generation_prompt_mismatch: the prompt a model is served (`add_generation_prompt=True`)
  does not tokenize as a prefix of the same conversation in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dojo.chat.conversations import example_conversation
from dojo.chat.masks import has_generation_markers, mask_spans, tokenize_chat
from dojo.chat.registry import get_family
from dojo.chat.render import render_template
from dojo.chat.tokenizer import detect_family


@dataclass(frozen=True)
class Finding:
    """One problem the doctor found: a short code, what is wrong, and the one-line fix."""

    code: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.problem}\n    fix: {self.fix}"


def _sample_conversation(tokenizer: Any) -> list[dict] | None:
    """The example conversation, without its system message if the template refuses one."""
    full = example_conversation()
    for messages in (full, full[1:]):
        try:
            tokenizer.apply_chat_template(messages, tokenize=False)
            return messages
        except Exception:  # noqa: BLE001, S112 - try the next shape of conversation
            continue
    return None


def _end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokens that may end an assistant turn: the family's, else eos."""
    tokens = {tokenizer.eos_token} if tokenizer.eos_token else set()
    family = detect_family(tokenizer)
    if family:
        tokens |= set(get_family(family).end_of_turn)
    vocab = tokenizer.get_vocab()
    return {vocab[t] for t in tokens if t in vocab}


def _check_double_bos(tokenizer: Any, text: str) -> Finding | None:
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if not bos or bos_id is None or not text.startswith(bos):
        return None
    ids = tokenizer(text)["input_ids"]
    if ids[:2] != [bos_id, bos_id]:
        return None
    return Finding(
        "double_bos",
        f"the template already writes {bos}, and tokenizing the rendered text adds it again "
        f"(ids start {ids[:3]}).",
        "tokenize rendered chats with add_special_tokens=False (or use "
        "tokenizer.apply_chat_template(..., tokenize=True), which does).",
    )


def _check_eot_in_mask(tokenizer: Any, messages: list[dict]) -> Finding | None:
    out = tokenize_chat(tokenizer, messages)
    ids, mask = out["input_ids"], out["assistant_masks"]
    eot_ids = _end_of_turn_ids(tokenizer)
    runs = [ids[start:end] for start, end in mask_spans(mask)]
    n_replies = sum(m["role"] == "assistant" for m in messages)
    if runs and len(runs) == n_replies and all(run[-1] in eot_ids for run in runs):
        return None
    names = sorted(tokenizer.convert_ids_to_tokens(sorted(eot_ids)))
    return Finding(
        "eot_not_in_mask",
        f"assistant masks do not end with an end-of-turn token {names}: the model never "
        "learns to stop.",
        "put the end-of-turn token inside {% generation %}...{% endgeneration %} "
        "(dojo.chat.apply_template(tokenizer, family) does).",
    )


def _check_pad_eos(tokenizer: Any) -> Finding | None:
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id != tokenizer.eos_token_id:
        return None
    return Finding(
        "pad_equals_eos",
        f"pad_token is eos_token ({tokenizer.eos_token}): collators that mask padding in the "
        "labels also mask every real eos, so the model never learns to stop.",
        "give padding its own token, e.g. tokenizer.pad_token = '<|pad|>' (add it if missing) "
        "or an unused reserved token.",
    )


def _check_generation_prompt(tokenizer: Any, messages: list[dict]) -> Finding | None:
    if messages[-1]["role"] != "assistant":
        return None
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    # Where the model starts writing in training: the last {% generation %} block, if marked.
    reply_start = len(prompt)
    if has_generation_markers(tokenizer.chat_template):
        _, spans = render_template(
            tokenizer.chat_template,
            messages,
            special_tokens=tokenizer.special_tokens_map,
            return_spans=True,
        )
        reply_start = spans[-1][0] if spans else reply_start
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if full[:reply_start] == prompt and full_ids[: len(prompt_ids)] == prompt_ids:
        return None
    where = "tokens" if full[:reply_start] == prompt else "text"
    return Finding(
        "generation_prompt_mismatch",
        f"the generation prompt (ending {prompt[-24:]!r}) differs in its {where} from the "
        f"training text before the last reply (ending {full[:reply_start][-24:]!r}): the model "
        "is served a prefix it never saw in training.",
        "make the generation prompt exactly the text that precedes an assistant reply (no "
        "missing newline, no trailing space that merges into the reply's first token).",
    )


def doctor(tokenizer: Any, messages: list[dict] | None = None) -> list[Finding]:
    """Check a tokenizer and its chat template for the classic bugs; [] means healthy."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return [
            Finding(
                "no_template",
                "the tokenizer has no chat template.",
                "dojo.chat.apply_template(tokenizer, family) with a family from "
                "dojo.chat.list_families().",
            )
        ]
    findings = []
    messages = messages or _sample_conversation(tokenizer)
    if not has_generation_markers(template):
        family = detect_family(tokenizer)
        suggestion = f"'{family}'" if family else "its family"
        findings.append(
            Finding(
                "no_generation_markers",
                "the template has no {% generation %} markers, so assistant-only loss masks "
                "cannot be built.",
                f"dojo.chat.apply_template(tokenizer, {suggestion}): same output, with markers.",
            )
        )
    if messages is None:
        return findings
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    findings += [
        f
        for f in (
            _check_double_bos(tokenizer, text),
            _check_eot_in_mask(tokenizer, messages) if has_generation_markers(template) else None,
            _check_pad_eos(tokenizer),
            _check_generation_prompt(tokenizer, messages),
        )
        if f is not None
    ]
    return findings
