"""environment.yml and pyproject.toml must name the same dependencies, with the same bounds."""

import tomllib
import yaml

from dojo import paths


def _pyproject_deps() -> set[str]:
    data = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())
    return set(data["project"]["dependencies"])


def _environment_deps() -> set[str]:
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {d for d in pip if not d.startswith("-e")}


def test_environment_and_pyproject_agree():
    ours, env = _pyproject_deps(), _environment_deps()
    assert env == ours, f"only in environment.yml: {env - ours}; only in pyproject: {ours - env}"


def test_environment_installs_the_repo_with_dev_extras():
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[dev]" in pip
    assert "python=3.11" in env["dependencies"]
