import pytest

import dojo


def test_cpu_profile_points_at_shipped_files():
    p = dojo.profile("cpu")
    assert p.name == "cpu" and p.device == "cpu"
    assert p.model.endswith("dojo-tiny")


def test_env_var_selects_profile(monkeypatch):
    monkeypatch.setenv("DOJO_PROFILE", "gpu")
    assert dojo.profile().name == "gpu"


def test_unknown_profile_names_the_known_ones(monkeypatch):
    monkeypatch.setenv("DOJO_PROFILE", "cpux")
    with pytest.raises(ValueError, match=r"DOJO_PROFILE='cpux'.*cpu, gpu.*did you mean 'cpu'"):
        dojo.profile()
