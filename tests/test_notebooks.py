"""Execute every notebook in the cpu profile; fail on any error and report each run time."""

import os
import time

import nbformat
import pytest
from nbclient import NotebookClient

from dojo import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, record_property, capsys):
    nb = nbformat.read(path, as_version=4)
    os.environ["DOJO_PROFILE"] = "cpu"
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    with capsys.disabled():
        print(f"\n[notebook] {path.name}: {seconds:.1f} s")


def test_notebooks_have_no_stored_errors():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                assert out.get("output_type") != "error", f"{path.name} holds a stale error output"
