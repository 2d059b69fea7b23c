"""Shared test set-up: no network, the real CMKP files from ../shared, one tiny model per session."""
from __future__ import annotations

import os
from pathlib import Path

# Before anything imports huggingface_hub/transformers: no test may touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (`make test` runs two workers): each worker, and what it starts (notebook kernels,
# the notebooks' training workers), uses one torch thread, so the two share the two cores without
# oversubscribing them; a run's numbers do not depend on its thread count on the tiny profile
# (results/bench/cot_seeds_seed0_threads1_cpu2.jsonl). Set before anything imports torch.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


def pytest_xdist_make_scheduler(config, log):
    """Under ``pytest -n N --dist loadscope`` (``make test``): the notebook tests, which share one
    results folder (``tiny_run``: 04 reuses what 03 trained, 05 what 04 trained), go to one worker
    in their order; every other test is a unit of its own. (xdist's ``loadgroup`` marks do not take
    with pytest 9, whose node ids xdist can no longer suffix.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    together = {f"tests/{p.name}" for p in Path(__file__).parent.glob("test_*.py") if "tiny_run" in p.read_text()}

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "notebooks" if nodeid.split("::")[0] in together else nodeid

    return NotebooksTogether(config, log)


ROOT = Path(__file__).resolve().parents[1]
# The public CMKP files; CI has ../shared beside the clone. MMKP_CMKP_DIR overrides.
os.environ.setdefault("MMKP_CMKP_DIR", str((ROOT.parent / "shared" / "data" / "cmkp").resolve()))


_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


@pytest.fixture(scope="session", autouse=True)
def no_network():
    """Refuse every non-loopback connection made in the test process: a test that reaches for
    the network (the hub, a download) fails at once instead of passing on a connected machine.
    Loopback stays open (Jupyter kernels talk over it)."""
    import socket

    original = socket.socket.connect

    def guarded(sock, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and not host.startswith(_LOOPBACK) and sock.family != socket.AF_UNIX:
            raise OSError(f"tests may not use the network (tried to connect to {address})")
        return original(sock, address, *args, **kwargs)

    socket.socket.connect = guarded
    yield
    socket.socket.connect = original


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def cmkp_dir() -> Path:
    path = Path(os.environ["MMKP_CMKP_DIR"])
    if not (path / "tw_mm_s1" / "test_src.txt").exists():
        pytest.fail(f"CMKP files not found in {path}: set MMKP_CMKP_DIR to the folder of the public CMKP files")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2-VL folder (real tokenizer), built once per test session."""
    from mmkp_helpers.modeling import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny-qwen2_vl", family="qwen2_vl", seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``tiny_run("01")`` runs notebook 01 once per test session with ``mmkp-run --profile tiny``
    into one temporary results folder (notebooks run in the order asked, later ones can read what
    earlier ones wrote) and returns that folder (``.../tiny``)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("results") / "tiny"
    done = set()

    def run(number: str):
        if number not in done:
            proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.runner", "--profile", "tiny", "--only", number,
                                   "--out", str(out), "--no-progress"], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
            done.add(number)
        return out

    return run


def read_run(out: Path, notebook: str, figures=()) -> tuple[Path, list[dict], dict]:
    """A notebook's folder in a run, its metric records and measurements; each named figure must
    exist and not be empty. Shared by the notebook smoke tests."""
    from mmkp_helpers import results

    folder = out / notebook
    for name in figures:
        assert (folder / f"{name}.png").stat().st_size > 1000, name
    records, measurements = results.read_json(folder / "metrics.json"), results.read_json(folder / "measurements.json")
    from mmkp_helpers import claims

    problems = claims.check(measurements.get("summary_claims", []), records + reused_records(out, measurements),
                            measurements)
    assert not problems, f"{notebook}: Summary claims that disagree with the run's records: {problems}"
    return folder, records, measurements


def reused_records(run: Path, measurements: dict) -> list[dict]:
    """The records a notebook reused from an earlier one of the same run, which its claims may
    compare against: notebook 05 reuses notebook 04's baselines (and does not record them twice)."""
    from mmkp_helpers import results

    if measurements.get("baselines_reused_from_04"):
        return results.read_json(run / "04_fine_tune_cot" / "metrics.json")
    return []


