"""Executed notebooks a reader can trust: no machine paths, no tracebacks, no unexplained warnings,
no walls of progress-bar redraws (``mmkp_helpers.nbcheck``); and the pieces that keep them so
(``mmkp_helpers.quiet``, ``mmkp_helpers.progress``, ``mmkp-run``'s kernel environment and report)."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mmkp_helpers import nbcheck, progress, quiet, runner
from mmkp_helpers.nbcheck import problems

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = sorted((ROOT / "results" / "tiny").glob("*.ipynb"))


@pytest.mark.parametrize("path", EXECUTED, ids=[p.name for p in EXECUTED])
def test_committed_executed_copy_is_clean(path):
    found = problems(path)
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


def test_there_are_executed_copies():
    assert len(EXECUTED) >= 7, EXECUTED


# ------------------------------------------------------------------------------------------------
# The scanner on crafted notebooks: each detector fires, and clean output passes
# ------------------------------------------------------------------------------------------------

def _notebook(tmp_path, *outputs, metadata=None, name="nb.ipynb") -> Path:
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# title, with /home/someone in markdown (not an output)"),
                new_code_cell("x = 1", outputs=list(outputs))]
    if metadata:
        nb.metadata.update(metadata)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


CLEAN = [
    _stream("versions: python 3.11.7, torch 2.13.0\nmodel: .cache/models/tiny-qwen2_vl\n"),
    _stream("generate[direct]:   0%|          | 0/150 [00:00<?, ?ex/s]", name="stderr"),
    _stream("\rgenerate[direct]: 100%|##########| 150/150 [00:03<00:00, 45.37ex/s]", name="stderr"),
    _stream("\rgenerate[direct]: 100%|##########| 150/150 [00:03<00:00, 45.37ex/s]\n", name="stderr"),
    new_output("display_data", data={"text/plain": "<Figure>", "image/png": "iVBORw0KGgo/tmp/work/AAAA"}),
    new_output("execute_result", data={"text/plain": "results/tiny/03_sft_qlora/record.json"}, execution_count=1),
]


def test_clean_notebook_has_no_problems(tmp_path):
    path = _notebook(tmp_path, *CLEAN, metadata={"papermill": {"input_path": "notebooks/00.ipynb",
                                                               "output_path": "results/tiny/00.ipynb"}})
    assert problems(path) == []


@pytest.mark.parametrize("output, expected", [
    (_stream("model: /work/main/.cache/models/tiny\n"), "absolute path '/work/main/.cache/models/tiny'"),
    (_stream("saved to /tmp/run/adapter\n"), "absolute path '/tmp/run/adapter'"),
    (new_output("display_data", data={"text/html": "<td>/home/ana/results</td>"}), "absolute path '/home/ana/results"),
    (new_output("execute_result", data={"text/plain": "'/root/.cache/x'"}, execution_count=1), "absolute path '/root/.cache/x"),
    (_stream(".venv/lib/python3.11/site-packages/peft/x.py:3: note\n", "stderr"), "path into installed packages"),
    (new_output("error", ename="ValueError", evalue="bad", traceback=["\x1b[31mValueError\x1b[0m: bad"]),
     "error output ValueError: bad"),
    (_stream("Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 1\n", "stderr"), "a traceback"),
    (_stream("x.py:3: UserWarning: something odd\n  warnings.warn(\n", "stderr"), "warning 'x.py:3: UserWarning: something odd'"),
    (_stream("FutureWarning: `old` is deprecated\n", "stderr"), "warning 'FutureWarning: `old` is deprecated'"),
    (_stream("  warnings.warn(\n", "stderr"), "warning 'warnings.warn('"),
    (_stream("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'\n", "stderr"),
     "warning \"Failed to load CPU gemm_4bit_forward"),
    (_stream("{'loss': 2.31, 'grad_norm': 1.2, 'learning_rate': 0.0002, 'epoch': 0.5}\n"), "Trainer log dict printed"),
    (_stream("".join(f"\rgenerate[think]: {p:3d}%|#         | {p}/100 [00:03<00:01, 20ex/s]" for p in range(0, 101, 10)),
             "stderr"), "progress bar 'generate[think]' drew 11 lines in 3 s"),
])
def test_each_detector_fires(tmp_path, output, expected):
    found = problems(_notebook(tmp_path, *CLEAN, output))
    assert any(expected in line for line in found), found
    assert all(line.startswith("cell 1: ") for line in found), found


def test_metadata_paths_are_checked(tmp_path):
    path = _notebook(tmp_path, metadata={"papermill": {"input_path": "/work/main/notebooks/00.ipynb"}})
    assert problems(path) == ["metadata: absolute path '/work/main/notebooks/00.ipynb'"]


def test_a_long_plain_bar_may_draw_a_line_per_interval(tmp_path):
    # 10 minutes at one line per PLAIN_MININTERVAL (30 s): 20 lines plus the first and last
    lines = "".join(f"\rtrain: {p:3d}%|#  | {p}/100 [{p * 6 // 60:02d}:{p * 6 % 60:02d}<00:01, 1it/s]"
                    for p in range(0, 101, 5))
    assert problems(_notebook(tmp_path, _stream(lines, "stderr"))) == []


def test_allow_list_entries_have_reasons_and_allow_only_their_warning(tmp_path):
    assert nbcheck.ALLOW and all(pattern and len(reason) > 20 for pattern, reason in nbcheck.ALLOW)
    allowed = _stream("prepare.py:108: UserWarning: clean split: unseen test keyphrase share 0.388, target 0.35\n",
                      "stderr")
    assert problems(_notebook(tmp_path, allowed)) == []
    other = _stream("prepare.py:120: UserWarning: clean split has no test posts\n", "stderr")
    assert problems(_notebook(tmp_path, allowed, other)) == [
        "cell 1: warning 'prepare.py:120: UserWarning: clean split has no test posts'"]
    assert problems(_notebook(tmp_path, allowed), allow=[]) != []


# ------------------------------------------------------------------------------------------------
# quiet: the known-harmless messages are dropped, anything else still shows
# ------------------------------------------------------------------------------------------------

def test_quiet_drops_the_known_future_warning_only():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.apply()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("`something_else` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated (but as a UserWarning)", UserWarning)
    assert [str(w.message) for w in seen] == ["`something_else` is deprecated and will be removed in v6.",
                                              "`is_gradient_checkpointing` is deprecated (but as a UserWarning)"]


def test_quiet_drops_the_bitsandbytes_kernel_message_only(caplog):
    quiet.apply()
    quiet.apply()  # idempotent: one filter
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert sum(isinstance(f, quiet._DropMessages) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "No module")
        logger.warning("CPU kernel produced NaN")
    assert [r.getMessage() for r in caplog.records] == ["CPU kernel produced NaN"]


def test_quiet_entries_say_why():
    assert all(len(why) > 40 for *_, why in quiet.WARNINGS + quiet.LOG_MESSAGES)


# ------------------------------------------------------------------------------------------------
# progress: widgets in a live notebook, rare plain lines in mmkp-run's headless kernels
# ------------------------------------------------------------------------------------------------

def test_progress_plain_in_headless_runs(monkeypatch, capsys):
    import tqdm.auto
    import tqdm.std

    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    assert not progress.plain() and progress.tqdm_class() is tqdm.auto.tqdm
    monkeypatch.setenv(progress.ENV_VAR, "plain")
    assert progress.plain() and progress.tqdm_class() is tqdm.std.tqdm
    bar = progress.tqdm(total=1000, desc="demo")
    assert type(bar) is tqdm.std.tqdm and bar.mininterval == progress.PLAIN_MININTERVAL
    for _ in range(1000):
        bar.update(1)
    bar.close()
    drawn = capsys.readouterr().err
    assert 2 <= drawn.count("demo:") <= 3, drawn  # the first line and the last, not one per update


def test_runner_gives_kernels_plain_progress_and_reports_problems(tmp_path, monkeypatch, capsys):
    import papermill

    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = new_notebook()
    nb.cells = [new_code_cell("seed = 0", metadata={"tags": ["parameters"]})]
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "00_demo.ipynb")
    profile = tmp_path / "demo.yaml"
    profile.write_text("description: demo\nenv: {DEMO_VAR: '1'}\n")
    seen = {}

    def fake_execute(input_path, output_path, **kwargs):
        seen.update({k: os.environ.get(k) for k in ("MMKP_PROGRESS", "DEMO_VAR")})
        done = nbformat.read(input_path, as_version=4)
        done.cells[0].outputs = [new_output("stream", name="stderr", text="x.py:1: UserWarning: odd\n")]
        nbformat.write(done, output_path)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.delenv("MMKP_PROGRESS", raising=False)
    assert runner.run(str(profile), out=str(tmp_path / "out"), folder=folder) == 0
    assert seen == {"MMKP_PROGRESS": "plain", "DEMO_VAR": "1"}
    assert "MMKP_PROGRESS" not in os.environ  # restored after the run
    err = capsys.readouterr().err
    assert "UserWarning: odd" in err and "1 executed copy shows" in err, err


def test_committed_records_hold_no_absolute_path():
    """The records beside the executed copies (metrics, measurements, params, environment) are read
    on other machines too: record_run writes paths inside the project relative to its root."""
    import subprocess

    from mmkp_helpers import nbcheck

    root = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(["git", "ls-files", "results/tiny"], cwd=root, capture_output=True, text=True).stdout
    files = [root / f for f in tracked.split() if f.endswith((".json", ".md"))]
    assert files
    found = {str(f.relative_to(root)): nbcheck.ABSOLUTE_PATH.findall(f.read_text()) for f in files}
    assert not {k: v[:3] for k, v in found.items() if v}


def test_record_run_writes_project_relative_paths(tmp_path):
    import json

    from mmkp_helpers import paths, results

    inside = paths.project_root() / "results" / "x" / "train.jsonl"
    folder = results.record_run(tmp_path, "nb", params={"p": str(inside)}, measurements={"m": [inside]},
                                display=False)
    assert json.loads((folder / "params.json").read_text())["p"] == "results/x/train.jsonl"
    assert json.loads((folder / "measurements.json").read_text())["m"] == ["results/x/train.jsonl"]
    assert str(paths.project_root()) not in (folder / "environment.json").read_text()
