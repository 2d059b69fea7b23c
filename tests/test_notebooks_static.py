"""Every committed notebook: valid, clean, one flat `parameters` cell, the house shape."""
import ast
import json

import nbformat
import pytest

from mmkp_helpers import runner

NOTEBOOKS = runner.list_notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_vlm_primer.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_valid_clean_and_parsable(path):
    raw = json.loads(path.read_text())  # valid JSON
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "papermill" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} is committed with outputs"
            ast.parse(cell.source)  # every code cell parses
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_flat_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged parameters"
    names = []
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: only `name = literal` lines"
        ast.literal_eval(node.value)  # literals only, no derived values
        names.append(node.targets[0].id)
    for line in tagged[0].source.splitlines():
        if line.strip():
            assert "#" in line, f"{path.name}: parameter without a comment: {line}"
    # papermill sees every parameter (a comment it cannot parse would hide one)
    assert list(runner.notebook_parameters(path)) == names
    assert {"profile", "results_dir", "seed"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_house_shape(path):
    nb = nbformat.read(str(path), as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "starts with an H1 title"
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert any(c.cell_type == "code" for c in nb.cells[1:index]), "a versions/device cell before the parameters"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in text and "## Exercises" in text
    assert "record_run(" in nb.cells[-1].source, "the last cell records the run"
    assert nb.cells[-1].cell_type == "code"



@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_jupytext_round_trip_is_lossless(path, tmp_path):
    """Authoring is jupytext's percent format (`make nb-text NB=...` / `make nb-sync NB=...`, the
    same two commands as here): exporting a committed notebook and syncing the text back changes
    no byte, so the .ipynb stays the source of truth."""
    import shutil
    import subprocess
    import sys

    jupytext = [sys.executable, "-m", "jupytext", "--quiet"]
    text, copy = tmp_path / f"{path.stem}.py", tmp_path / path.name
    shutil.copy(path, copy)
    subprocess.run(jupytext + ["--to", "py:percent", str(path), "-o", str(text)], check=True)
    assert text.read_text().count("# %%") == len(nbformat.read(path, as_version=4).cells)
    subprocess.run(jupytext + ["--update", "--to", "ipynb", str(text), "-o", str(copy)], check=True)
    assert copy.read_bytes() == path.read_bytes()
