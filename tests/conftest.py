"""Shared fixtures: every test runs offline, in the cpu profile, on the shipped tiny model."""

import os

os.environ.setdefault("DOJO_PROFILE", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from dojo import paths  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Skip GPU-only tests cleanly on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_path():
    """The shipped dojo-tiny base model folder."""
    return paths.TINY_MODEL


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths.TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(paths.TINY_MODEL).eval()
