"""Notebook 06 reads every record of a run and writes the paper-style summary; checked after the
whole pipeline (00-05) ran in one results folder."""
import math

import pytest

from mmkp_helpers import results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def test_06_results(tiny_run):
    for number in ("01", "02", "03", "04", "05"):
        tiny_run(number)
    out = tiny_run("06")
    records = results.read_metrics(out)
    assert {r["notebook"] for r in records} == {"02_zero_shot", "03_sft_qlora", "04_fine_tune_cot", "05_dynamic_cot"}
    assert {r["method"] for r in records} == set(results.METHODS)
    for r in records:  # every metrics file of the pipeline is well formed
        assert set(results.RECORD_KEYS) <= set(r)
        for subset, scores in r["metrics"].items():
            for name in ("F1@1", "F1@3", "F1@5", "F1@M", "MAP@5"):
                assert 0.0 <= scores[name] <= 1.0 and math.isfinite(scores[name]), (r["variant"], subset, name)
            assert scores["n"] <= r["n"]
    summary = (out / "summary.md").read_text()
    # a record that repeats another run's model (notebook 04's SFT row is notebook 03's) says so
    repeated = [r for r in records if r.get("same_as")]
    assert all(any(o is not r and o["method"] == r["method"] and not o.get("same_as") for o in records) for r in repeated)
    clean = [r for r in records if r["split"] == "clean" and not r.get("same_as")]
    table_lines = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table_lines) == len(clean)
    for r in clean:  # every clean record is a row, with its F1@M as recorded
        row = next(line for line in table_lines if f"| {r['method']} | {r['variant']} | {r['notebook']} |" in line)
        assert f"{r['metrics']['all']['F1@M']:.3f}" in row
    assert (out / "06_results" / "methods.png").stat().st_size > 1000
    m = results.read_json(out / "06_results" / "measurements.json")
    assert m["rows"] == len(clean) and m["summary"].endswith("summary.md")
