"""tools/make_chat_fixtures.py: renders an official template into the fixture format."""

import importlib.util
import json

from dojo import paths


def _load_tool():
    path = paths.REPO_ROOT / "tools" / "make_chat_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_chat_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_writes_the_fixture_format(tmp_path, capsys):
    tool = _load_tool()
    official = tmp_path / "tokenizer_config.json"
    gemma = (paths.CHAT_TEMPLATES_DIR / "gemma.jinja").read_text()
    official.write_text(json.dumps({"chat_template": [{"name": "default", "template": gemma}]}))
    out = tmp_path / "gemma.json"
    code = tool.main(
        [
            "--family", "gemma", "--official", str(official), "--source-repo", "a/b",
            "--source-path", "tokenizer_config.json", "--source-commit", "0" * 40,
            "--bos-token", "<bos>", "--eos-token", "<eos>", "--skip", "content_parts=images",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0 and "cases match" in capsys.readouterr().out
    fixture = json.loads(out.read_text())
    assert fixture["special_tokens"] == {"bos_token": "<bos>", "eos_token": "<eos>"}
    assert fixture["skipped"] == {"content_parts": "images"}
    assert len(fixture["source"]["sha256"]) == 64
    cases = {c["name"]: c for c in fixture["cases"]}
    assert "content_parts" not in cases
    assert cases["single_turn"]["expected"].startswith("<bos><start_of_turn>user\n")
    assert "System role not supported" in cases["system_only"]["raises"]
    assert cases["system_only"]["raises_type"] == "TemplateError"


def test_generator_reports_mismatches(tmp_path, capsys):
    tool = _load_tool()
    official = tmp_path / "other.jinja"
    official.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    code = tool.main(
        [
            "--family", "chatml", "--official", str(official), "--source-repo", "a/b",
            "--source-path", "x", "--source-commit", "0", "--out", str(tmp_path / "c.json"),
        ]
    )  # fmt: skip
    assert code == 1 and "MISMATCH single_turn" in capsys.readouterr().out


def test_python_references_reproduce_their_fixtures():
    """alpaca, vicuna and baichuan2 have no vendor chat_template: their fixtures come from
    line-for-line transcriptions of the vendor's Python, which must still produce them."""
    tool = _load_tool()
    for family in tool.PYTHON_REFERENCES:
        fixture = json.loads((tool.FIXTURE_DIR / f"{family}.json").read_text(encoding="utf-8"))
        source = tool.read_official(f"python:{family}").encode("utf-8")
        digest = tool.hashlib.sha256(source).hexdigest()
        assert fixture["source"]["sha256"] == digest, f"{family}: reference changed; regenerate"
        for case in fixture["cases"]:
            entry = tool.render_case(f"python:{family}", "", case, fixture["special_tokens"])
            assert entry.get("expected") == case.get("expected"), (family, case["name"])
            assert entry.get("raises") == case.get("raises"), (family, case["name"])


def test_every_fixture_covers_its_family_cases():
    """Each fixture holds exactly the shared cases plus its family's own (GLM-4's message-level
    tools), less the ones it records as skipped with a reason: a case added to
    `dojo.chat.conversations` without regenerating the fixtures fails here."""
    from dojo.chat import list_families
    from dojo.chat.conversations import FAMILY_CASES, conversation_cases

    assert set(FAMILY_CASES) <= set(list_families())
    tool = _load_tool()
    for path in sorted(tool.FIXTURE_DIR.glob("*.json")):
        fixture = json.loads(path.read_text(encoding="utf-8"))
        wanted = [c["name"] for c in conversation_cases(fixture["family"])]
        got = [c["name"] for c in fixture["cases"]]
        assert all(fixture["skipped"].values()), f"{path.name}: a skip without a reason"
        assert got == [n for n in wanted if n not in fixture["skipped"]], path.name
    glm = {c["name"] for c in conversation_cases("glm-4")} - {
        c["name"] for c in conversation_cases()
    }
    assert glm == {n for n in glm if n.startswith("glm4_")} and len(glm) == 4
