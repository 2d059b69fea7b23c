"""Smoke run of notebook 02 with `mmkp-run --profile tiny`; assertions read what it recorded.
The fixture `tiny_run` (conftest) runs each notebook once per session."""
import json
import subprocess
import sys

import pytest

from mmkp_helpers import metrics, results
from mmkp_helpers.data import read_jsonl

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

VARIANTS = ["direct", "think", "text_only", "image_only"]


def test_02_zero_shot(tiny_run):
    out = tiny_run("02")
    folder = out / "02_zero_shot"
    records = results.read_json(folder / "metrics.json")
    m = results.read_json(folder / "measurements.json")
    params = results.read_json(folder / "params.json")
    assert params["profile"] == "tiny" and params["dataset"] == "synthetic"
    for name in ("f1m_by_subset", "generated_tokens"):
        assert (folder / f"{name}.png").stat().st_size > 1000, name

    # one record per prompt, in the project's record format, on the clean test split
    assert [r["variant"] for r in records] == VARIANTS
    test = read_jsonl(m["split_paths"]["test"])
    for r in records:
        assert (r["notebook"], r["method"], r["dataset"], r["split"], r["n"]) == (
            "02_zero_shot", "zero_shot", "synthetic", "clean", len(test))
        assert set(r["metrics"]) >= {"all", "present", "absent", "unseen"}
        for subset, scores in r["metrics"].items():
            assert set(metrics.METRIC_NAMES) <= set(scores), subset
            assert all(0.0 <= scores[k] <= 1.0 for k in metrics.METRIC_NAMES)

    # the base was never taught the task: whatever it scores is measured, with what it cost
    gen = m["generation"]
    assert all(gen[v]["n"] == len(test) and gen[v]["gen_tokens_mean"] > 0 for v in VARIANTS)
    assert all(0 <= gen[v]["hit_limit"] <= len(test) for v in VARIANTS)

    # the predictions file is what mmkp-score reads, and it gives the recorded numbers
    pred = folder / "predictions" / "direct_pred.txt"
    src = m["split_paths"]["test"]
    assert len(pred.read_text(encoding="utf-8").splitlines()) == len(test)
    proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.metrics", "--pred", str(pred), "--src", src, "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout)
    assert scored["all"]["F1@M"] == pytest.approx(records[0]["metrics"]["all"]["F1@M"])
    assert len((folder / "predictions" / "think.jsonl").read_text().splitlines()) == len(test)

    bundles = results.read_notebook_records(out / "02_zero_shot.ipynb")
    assert bundles and bundles[-1]["metrics"] == records
    assert m["notebook_seconds"] < 400
