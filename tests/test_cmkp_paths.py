"""CMKP paths as printed: under an MMKP_CMKP_DIR outside the project, ``$MMKP_CMKP_DIR/...``, never
the machine's own path, so that executed notebooks pass the project's scanner (``nbcheck``)."""
import io
import os
import sys
from pathlib import Path

import pytest

from mmkp_helpers import cmkp, nbcheck
from mmkp_helpers.paths import project_root


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cmkp data"
    (folder / "tw_mm_s1").mkdir(parents=True)
    monkeypatch.setenv(cmkp.CMKP_ENV, str(folder))
    return folder


def test_display_path_outside_the_project(outside):
    assert cmkp.display_path(outside / "tw_mm_s1" / "test_src.txt") == "$MMKP_CMKP_DIR/tw_mm_s1/test_src.txt"
    assert cmkp.display_path(outside) == "$MMKP_CMKP_DIR"
    assert cmkp.display_path(project_root() / "results" / "tiny") == "results/tiny"  # the project's own: relative


def test_display_text_and_printing(outside, monkeypatch):
    line = f"{outside}/tw_mm_s1/valid_src.txt: 5370 posts; train: {outside.resolve()}/train_keyphrases.txt"
    shown = cmkp.display_text(line)
    assert shown == "$MMKP_CMKP_DIR/tw_mm_s1/valid_src.txt: 5370 posts; train: $MMKP_CMKP_DIR/train_keyphrases.txt"
    assert not nbcheck.ABSOLUTE_PATH.search(shown) and nbcheck.ABSOLUTE_PATH.search(line)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with cmkp.paths_as_variable():
        print(outside / "tw_mm_s1" / "test_src.txt", "read")
        print(f"warning about {outside}/x", file=sys.stderr)
    assert out.getvalue() == "$MMKP_CMKP_DIR/tw_mm_s1/test_src.txt read\n" and err.getvalue() == "warning about $MMKP_CMKP_DIR/x\n"
    print("after", outside)
    assert str(outside) in out.getvalue().splitlines()[-1]  # only within the block


def test_inside_the_project_or_unset_nothing_changes(monkeypatch):
    monkeypatch.setenv(cmkp.CMKP_ENV, str(project_root() / ".cache" / "data" / "cmkp"))
    path = project_root() / ".cache" / "data" / "cmkp" / "tw_mm_s1" / "test_src.txt"
    assert cmkp.display_path(path) == ".cache/data/cmkp/tw_mm_s1/test_src.txt"
    assert cmkp.display_text(str(path)) == str(path)
    monkeypatch.delenv(cmkp.CMKP_ENV)
    assert cmkp.display_text("/somewhere/else") == "/somewhere/else"


@pytest.mark.notebooks
@pytest.mark.slow
def test_01_prints_cmkp_paths_relative_to_the_variable(tiny_run):
    """Notebook 01 run with MMKP_CMKP_DIR set to an absolute folder outside the project (as the
    tests' conftest sets it, and as CI and most users have it): no absolute path in its outputs."""
    folder = Path(os.environ[cmkp.CMKP_ENV]).resolve()
    root = project_root().resolve()
    if folder == root or root in folder.parents:
        pytest.skip("MMKP_CMKP_DIR lies inside the project here")
    out = tiny_run("01")
    executed = out / "01_benchmark_overlap.ipynb"
    text = executed.read_text()
    assert "$MMKP_CMKP_DIR/tw_mm_s1/test_src.txt" in text and str(folder) not in text
    # (the test's results folder lies under /tmp, so the scanner sees those paths; none is CMKP's)
    assert not [p for p in nbcheck.problems(executed) if "absolute path" in p and str(folder) in p]
