"""dojo.chat: registry, sandboxed rendering, tokenizer attachment, detection, masks, doctor."""

import os

import jinja2
import pytest

from dojo import chat, paths
from dojo.chat import byte_tokenizer

# The families issue 3 asks for (aliases included: llama-3.3, mistral-v0.2, gemma-2).
ISSUE_FAMILIES = [
    "qwen2.5", "qwen3", "qwq", "deepseek-r1", "llama-2", "llama-3", "llama-3.1", "llama-3.2",
    "llama-3.3", "mistral-v0.1", "mistral-v0.2", "mistral-v0.3", "mixtral", "gemma", "gemma-2",
    "gemma-3", "phi-3", "phi-4", "deepseek-llm", "deepseek-v3", "yi", "chatglm3", "glm-4",
    "baichuan2", "internlm2", "zephyr", "vicuna", "alpaca", "olmo-2", "smollm2", "chatml",
]  # fmt: skip
HELLO = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]


def _trl_template(name: str) -> str:
    import trl

    path = os.path.join(os.path.dirname(trl.__file__), "chat_templates", f"{name}.jinja")
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_families_are_listed_with_headers():
    families = chat.list_families()
    assert len(families) >= 25
    for name in ISSUE_FAMILIES:
        assert chat.get_family(name).name in families
    for name in families:
        fam = chat.get_family(name)
        assert chat.parse_header(fam.template).get("end_of_turn"), f"{name}: no end_of_turn"
        assert fam.models and fam.quirks, f"{name}: header lacks models or quirks"
        assert chat.has_generation_markers(fam.template), f"{name}: no {{% generation %}}"


def test_unknown_family_names_the_closest_and_lists_known():
    with pytest.raises(chat.UnknownFamilyError) as info:
        chat.render("qwen-2.5", HELLO)
    message = str(info.value)
    assert "'qwen2.5'" in message and "llama-3.1" in message


def test_aliases_resolve_to_the_same_file():
    assert chat.render("llama-3.3", HELLO) == chat.render("llama-3.1", HELLO)
    assert chat.get_family("gemma-2").name == "gemma"
    assert "gemma-2" not in chat.list_families()


def test_render_chatml():
    text = chat.render("chatml", HELLO, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_refusal_names_the_turn():
    bad = [HELLO[0], {"role": "user", "content": "again"}]
    with pytest.raises(chat.ChatTemplateError, match=r"gemma: .*alternate.*message 1.*user"):
        chat.render("gemma", bad)
    with pytest.raises(chat.ChatTemplateError, match="System role not supported"):
        chat.render("gemma", [{"role": "system", "content": "x"}, *HELLO])
    # After a system message, the turn is still counted in the caller's list.
    with pytest.raises(chat.ChatTemplateError, match=r'message 2 has role "user"'):
        chat.render("llama-2", [{"role": "system", "content": "x"}, *bad])
    with pytest.raises(chat.ChatTemplateError, match=r'message 2 has role "narrator"'):
        chat.render("mistral-v0.1", [HELLO[0], HELLO[1], {"role": "narrator", "content": "x"}])


def test_user_templates_are_sandboxed():
    with pytest.raises(jinja2.exceptions.SecurityError):
        chat.render_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", HELLO)


def test_frozen_clock_pins_llama_3_2_date():
    with chat.frozen_clock("2025-03-14T09:00:00"):
        text = chat.render("llama-3.2", HELLO)
    assert "Today Date: 14 Mar 2025\n" in text
    assert "Today Date: 01 Feb 2025" in chat.render("llama-3.2", HELLO, date_string="01 Feb 2025")


def test_render_with_spans_marks_each_reply():
    text, spans = chat.render_with_spans("llama-3", HELLO)
    assert [text[a:b] for a, b in spans] == ["Hello.<|eot_id|>"]


def test_apply_template_adds_tokens_and_masks_replies():
    tok = byte_tokenizer()
    added = chat.apply_template(tok, "qwen2.5")
    assert "<|im_start|>" in added and tok.eos_token == "<|im_end|>"
    assert chat.apply_template(tok, "qwen2.5") == []  # idempotent
    ids = tok.apply_chat_template(HELLO, tokenize=True, return_dict=False)
    mask = chat.assistant_mask(tok, HELLO)
    assert len(mask) == len(ids)
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "Hello.<|im_end|>"


def test_assistant_mask_needs_markers():
    tok = byte_tokenizer(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = _trl_template("qwen2_5")
    with pytest.raises(ValueError, match="apply_template"):
        chat.assistant_mask(tok, HELLO)


@pytest.mark.parametrize(
    "official, family",
    [
        ("qwen2_5", "qwen2.5"),
        ("qwen3", "qwen3"),
        ("deepseek_r1_distill", "deepseek-r1"),
        ("llama3", "llama-3"),
        ("llama3_1", "llama-3.1"),
        ("llama3_2", "llama-3.2"),
        ("gemma", "gemma"),
        ("gemma3", "gemma-3"),
        ("phi3", "phi-3"),
        ("phi3_5", "phi-3.5"),
    ],
)
def test_detect_family_recognises_vendor_templates(official, family):
    assert chat.detect_family(_trl_template(official)) == family


def test_detect_family_on_our_templates_and_tokenizers():
    for name in chat.list_families():
        assert chat.detect_family(chat.load_template(name)) == name
    tok = byte_tokenizer()
    chat.apply_template(tok, "mistral-v0.3")
    assert chat.detect_family(tok) == "mistral-v0.3"
    assert chat.detect_family("{{ 'not a chat format' }}") is None


def _codes(tok) -> set[str]:
    return {f.code for f in chat.doctor(tok)}


def _healthy_chatml():
    tok = byte_tokenizer(eos_token="<|im_end|>", pad_token="<|pad|>")
    chat.apply_template(tok, "chatml")
    return tok


def test_doctor_passes_a_healthy_tokenizer():
    assert chat.doctor(_healthy_chatml()) == []


def test_doctor_finds_double_bos():
    tok = byte_tokenizer(bos_token="<|begin_of_text|>", pad_token="<pad>", add_bos=True)
    chat.apply_template(tok, "llama-3")
    assert _codes(tok) == {"double_bos"}
    finding = chat.doctor(tok)[0]
    assert "add_special_tokens=False" in finding.fix


def test_doctor_finds_pad_equal_eos():
    tok = _healthy_chatml()
    tok.pad_token = tok.eos_token
    assert _codes(tok) == {"pad_equals_eos"}


def test_doctor_finds_eos_outside_the_mask():
    tok = _healthy_chatml()
    tok.chat_template = tok.chat_template.replace(
        "{{- message['content'] + '<|im_end|>' }}\n        {%- endgeneration %}",
        "{{- message['content'] }}\n        {%- endgeneration %}\n        {{- '<|im_end|>' }}",
    )
    assert chat.render_template(tok.chat_template, HELLO) == chat.render("chatml", HELLO)
    assert _codes(tok) == {"eot_not_in_mask"}


def test_doctor_finds_generation_prompt_mismatch():
    tok = _healthy_chatml()
    tok.chat_template = tok.chat_template.replace(
        "{{- '<|im_start|>assistant\\n' }}\n{%- endif %}",
        "{{- '<|im_start|>assistant' }}\n{%- endif %}",
    )
    assert tok.chat_template != chat.load_template("chatml")
    assert _codes(tok) == {"generation_prompt_mismatch"}


def test_doctor_finds_missing_markers_and_names_the_family():
    tok = byte_tokenizer(["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<p>")
    tok.chat_template = _trl_template("qwen2_5")
    findings = chat.doctor(tok)
    assert [f.code for f in findings] == ["no_generation_markers"]
    assert "'qwen2.5'" in findings[0].fix
    tok.chat_template = None
    assert _codes(tok) == {"no_template"}


@pytest.mark.parametrize(
    "bug, code",
    [
        ("with_double_bos", "double_bos"),
        ("with_eos_outside_mask", "eot_not_in_mask"),
        ("with_pad_as_eos", "pad_equals_eos"),
        ("with_prompt_without_newline", "generation_prompt_mismatch"),
    ],
)
def test_reproduced_bugs_are_each_found(bug, code):
    from dojo.chat import bugs

    healthy = _healthy_chatml()
    sick = getattr(bugs, bug)(healthy)
    assert _codes(sick) == {code}
    assert chat.doctor(healthy) == []  # the original is untouched


def test_display_colours_the_mask():
    from dojo.chat.display import family_tokenizer, mask_html, side_by_side_html

    html = mask_html(family_tokenizer("chatml"), HELLO)
    assert "in the loss" in html and "c8f7c5" in html
    grid = side_by_side_html(["chatml", "gemma"], [{"role": "system", "content": "x"}, *HELLO])
    assert "raises: gemma: System role not supported" in grid


def test_explorer_rerenders_on_family_change():
    from dojo.chat.display import template_explorer

    box = template_explorer(HELLO)
    (family, prompt), editor, view = box.children[0].children, box.children[1], box.children[2]
    assert "im_start" in view.value
    family.value = "gemma"
    assert "start_of_turn" in view.value and "in the loss" in view.value
    editor.value = '[{"role": "system", "content": "x"}]'
    assert "System role not supported" in view.value  # the refusal is shown, not raised
    prompt.value = True
    editor.value = '[{"role": "user", "content": "Hi"}]'
    assert view.value.split("<hr>")[0].count("start_of_turn") == 2  # user turn + prompt


def test_shipped_tiny_model_uses_chatml_byte_for_byte():
    copies = sorted(paths.MODELS_DIR.glob("dojo-tiny*/chat_template.jinja"))
    if not copies:
        pytest.skip("dojo-tiny is not built yet")
    ours = (paths.CHAT_TEMPLATES_DIR / "chatml.jinja").read_bytes()
    for copy in copies:
        assert copy.read_bytes() == ours, f"{copy} differs from chat_templates/chatml.jinja"


def test_tiny_tokenizer_masks_replies_and_is_healthy():
    if not (paths.TINY_MODEL / "tokenizer.json").exists():
        pytest.skip("dojo-tiny is not built yet")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(paths.TINY_MODEL)
    assert chat.detect_family(tok) == "chatml"
    assert chat.doctor(tok) == []
    out = chat.tokenize_chat(tok, HELLO)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "Hello.<|im_end|>"


_JINJA_ERRORS = {"TemplateError", "UndefinedError", "SecurityError", "TemplateRuntimeError"}


@pytest.mark.parametrize("family", chat.list_families())
def test_refusals_raise_the_same_kind_of_error(family):
    """Beyond the shared contract (message substring): where the official raised a Jinja
    TemplateError ours does too, and a Python TypeError stays a TypeError."""
    import json

    fixture = json.loads((paths.REPO_ROOT / "tests/fixtures/chat" / f"{family}.json").read_text())
    for case in fixture["cases"]:
        if "raises" not in case:
            continue
        clock = chat.frozen_clock(fixture["frozen_now"])
        with clock, pytest.raises(Exception) as info:  # noqa: B017 - the type is checked below
            chat.render(
                family,
                case["messages"],
                case["add_generation_prompt"],
                case.get("tools"),
                **case.get("kwargs", {}),
            )
        official = case["raises_type"]
        official = "TemplateError" if official in _JINJA_ERRORS else official
        kinds = [cls.__name__ for cls in type(info.value).__mro__]
        assert official in kinds, f"{case['name']}: official {case['raises_type']}, ours {kinds[0]}"
