"""Every notebook in notebooks/ runs top to bottom, headless, on small settings."""

from pathlib import Path

import nbformat
import pytest
from conftest import _shared_data
from nbclient import NotebookClient

# Each notebook trains a model in a fresh kernel (about two minutes for all four).
pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
# Small settings for the suite: the first code cell of each notebook holds its parameters.
SMALL = {"EPOCHS": "1"}


def shrink(notebook, small):
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    lines = []
    for line in cell.source.splitlines():
        name = line.split("=")[0].strip()
        lines.append(f"{name} = {small[name]}" if name in small else line)
    cell.source = "\n".join(lines)


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_and_is_stored_without_outputs(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    assert not any(
        line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines()
    ), "notebooks import tfvae, define nothing"
    small = dict(SMALL)
    shared = _shared_data()
    if shared is None:
        small["DATASET"] = repr("digits")  # no MNIST files here: the bundled digits instead
    else:  # MNIST prepared offline from ../shared/data, as a user with the files would
        monkeypatch.setenv("TFVAE_MANUAL_DIR", str(shared))
        monkeypatch.setenv("TFVAE_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    shrink(notebook, small)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors
    pictures = list(tmp_path.glob("*.png"))
    assert pictures and all(p.stat().st_size > 1000 for p in pictures)
