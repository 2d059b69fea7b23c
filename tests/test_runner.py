"""mmkp-run: profiles are checked against the notebooks' parameters, notebooks run in order with
overrides, a failing cell stops the run with its name."""
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from mmkp_helpers import runner


def _notebook(path: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(textwrap.dedent(params))
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), p, nbformat.v4.new_code_cell(textwrap.dedent(body))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def playground(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_first.ipynb", 'profile = "x"  # profile\nresults_dir = "r"  # out\nsteps = 1  # steps\n',
              'from pathlib import Path\nPath(results_dir).mkdir(parents=True, exist_ok=True)\n'
              '(Path(results_dir) / "steps.txt").write_text(f"{profile}:{steps * 2}")\n')
    _notebook(folder / "01_second.ipynb", 'results_dir = "r"  # out\nfail = False  # raise on purpose\n',
              'x = 1\nif fail:\n    raise RuntimeError("boom on purpose")\n')
    return folder


def _profile(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _mmkp_run(*args):
    return subprocess.run([sys.executable, "-m", "mmkp_helpers.runner", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_runs_in_order_with_overridden_parameters(tmp_path, playground):
    out = tmp_path / "out"
    profile = _profile(tmp_path, "defaults: {steps: 21}\nnotebooks: {01_second: {fail: false}}\n")
    proc = _mmkp_run("--profile", profile, "--notebooks", str(playground), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (out / "steps.txt").read_text() == "p:42"  # profile name injected, steps overridden and parsed as int
    executed = nbformat.read(str(out / "00_first.ipynb"), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert (out / "01_second.ipynb").exists()
    assert proc.stdout.index("00_first") < proc.stdout.index("01_second")


@pytest.mark.slow
def test_failing_cell_stops_the_run_naming_notebook_and_cell(tmp_path, playground):
    out = tmp_path / "out"
    profile = _profile(tmp_path, "notebooks: {01_second: {fail: true}}\n")
    proc = _mmkp_run("--profile", profile, "--notebooks", str(playground), "--out", str(out), "--no-progress")
    assert proc.returncode == 1
    assert "FAILED: 01_second.ipynb" in proc.stderr
    assert "cell #2 (execution count" in proc.stderr  # title, parameters, then the failing cell
    assert "RuntimeError: boom on purpose" in proc.stderr
    assert str(out / "01_second.ipynb") in proc.stderr


def test_unknown_parameter_is_rejected_listing_valid_ones(tmp_path, playground):
    profile = runner.load_profile(_profile(tmp_path, "notebooks: {00_first: {stepz: 3}}\n"))
    with pytest.raises(runner.ProfileError) as err:
        runner.plan(profile, folder=playground)
    assert "unknown parameter 'stepz'" in str(err.value) and "['steps']" in str(err.value)
    proc = _mmkp_run("--profile", profile_path := _profile(tmp_path, "defaults: {nope: 1}\n"), "--notebooks", str(playground))
    assert proc.returncode == 2 and "unknown parameter 'nope'" in proc.stderr, profile_path


def test_unknown_top_level_key_and_missing_notebook_are_rejected(tmp_path, playground):
    with pytest.raises(runner.ProfileError, match="unknown key"):
        runner.load_profile(_profile(tmp_path, "parameters: {steps: 2}\n"))
    profile = runner.load_profile(_profile(tmp_path, "notebooks: {07_missing: {steps: 2}}\n"))
    with pytest.raises(runner.ProfileError, match="notebook '07_missing' does not exist; valid notebooks"):
        runner.plan(profile, folder=playground)
    with pytest.raises(runner.ProfileError, match="no profile 'nonexistent'"):
        runner.load_profile("nonexistent")
    with pytest.raises(runner.ProfileError, match="--only"):
        runner.plan(runner.load_profile(_profile(tmp_path, "{}\n")), only=["09"], folder=playground)


def test_only_selects_by_number(tmp_path, playground):
    runs = runner.plan(runner.load_profile(_profile(tmp_path, "{}\n")), only=["01"], folder=playground)
    assert [nb.name for nb, _ in runs] == ["01_second.ipynb"]


@pytest.mark.parametrize("name", runner.list_profiles())
def test_project_profiles_are_valid(name):
    runs = runner.plan(runner.load_profile(name))
    assert [nb.name for nb, _ in runs] == [p.name for p in runner.list_notebooks()]
    for _, params in runs:
        assert params["profile"] == name and params["results_dir"] == f"results/{name}"


def test_relative_paths_in_executed_notebooks(tmp_path):
    """The project root's absolute path becomes relative in an executed copy; other paths stay."""
    import json

    import nbformat

    from mmkp_helpers.runner import relative_paths

    root = tmp_path / "proj"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                           text=f"{root}/.venv/lib/x.py:3: FutureWarning\nmodel: {root}/results/a\n/other/b\n"
                                                                f"{tmp_path}/shared/data\n")]
    nb.cells = [cell]
    nb.metadata["papermill"] = {"input_path": f"{root}/notebooks/00.ipynb", "cwd": str(root)}
    path = tmp_path / "out.ipynb"
    nbformat.write(nb, str(path))
    assert relative_paths(path, root) == 5
    data = json.loads(path.read_text())
    assert str(root) not in path.read_text()
    assert "".join(data["cells"][0]["outputs"][0]["text"]) == ".venv/lib/x.py:3: FutureWarning\nmodel: results/a\n/other/b\n../shared/data\n"
    assert data["metadata"]["papermill"] == {"input_path": "notebooks/00.ipynb", "cwd": "."}
    nbformat.validate(nbformat.read(str(path), as_version=4))
    assert relative_paths(path, root) == 0
