"""chat_templates/README.md is generated from the templates and must be fresh."""

from dojo.chat.readme import README_PATH, build_readme, table_row
from dojo.chat.registry import get_family, list_families


def test_readme_is_fresh():
    assert README_PATH.exists(), "run: python tools/make_chat_readme.py"
    assert README_PATH.read_text(encoding="utf-8") == build_readme(), (
        "chat_templates/README.md is stale: run python tools/make_chat_readme.py"
    )


def test_readme_lists_every_family():
    text = README_PATH.read_text(encoding="utf-8")
    for name in list_families():
        assert f"\n## {name}\n" in text


def test_table_measures_behaviour():
    assert "no (raises)" in table_row(get_family("gemma"))
    assert "You are Qwen" in table_row(get_family("qwen2.5"))
    assert "enable_thinking" in table_row(get_family("qwen3"))
    row = table_row(get_family("llama-2")).split(" | ")
    assert row[3].startswith("(none")  # the prompt already ends with [/INST]
    assert table_row(get_family("llama-3.1")).split(" | ")[5] == "yes"
    # GLM-4 ignores the tools argument but reads a tools key on a message.
    assert "key on a message" in table_row(get_family("glm-4")).split(" | ")[5]
    assert table_row(get_family("gemma")).split(" | ")[5] == "no"


def test_closing_note_lists_aliases_and_left_out_behaviour():
    from dojo.chat.registry import ALIASES

    note = README_PATH.read_text(encoding="utf-8").split("## Aliases and what is left out")[1]
    for alias in ALIASES:
        assert f"`{alias}`" in note
    with_notes = [name for name in list_families() if get_family(name).left_out]
    assert with_notes, "no family declares left_out"
    for name in with_notes:
        assert f"**{name}**" in note
