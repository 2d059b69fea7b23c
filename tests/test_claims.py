"""Summaries state numbers and comparisons only as claims computed from the run's records."""
import json
from pathlib import Path

import pytest

from conftest import reused_records
from mmkp_helpers import claims, runner

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = runner.list_notebooks()
CLAIMED = ["00_vlm_primer", "01_benchmark_overlap", "02_zero_shot", "03_sft_qlora", "04_fine_tune_cot", "05_dynamic_cot"]


def _rec(variant, f1m, n=10):
    return {"method": "sft", "variant": variant, "metrics": {"all": {"F1@M": f1m, "n": n}, "tag": {"F1@M": 0.0, "n": 0}}}


RECORDS = [_rec("original", 0.90), _rec("clean", 0.70)]


def test_compare_states_what_the_records_say():
    c = claims.compare(RECORDS, "original {a:.2f} vs clean {b:.2f}: {relation} ({diff:+.2f})",
                       a={"variant": "original"}, b={"variant": "clean"})
    assert c["text"] == "original 0.90 vs clean 0.70: higher (+0.20)" and c["relation"] == "higher"
    assert claims.check([c], RECORDS, {}) == []
    same = claims.compare(RECORDS, "{relation}", a={"variant": "clean"}, b={"variant": "clean"})
    assert same["text"] == "about the same"


def test_a_claim_that_disagrees_with_the_records_is_caught():
    c = claims.compare(RECORDS, "the splits score {relation}", a={"variant": "original"}, b={"variant": "clean"})
    hand_edited = dict(c, text="the splits score about the same", relation="about the same")
    assert claims.check([hand_edited], RECORDS, {})
    changed = [_rec("original", 0.71), _rec("clean", 0.70)]  # the records moved, the sentence did not
    assert claims.check([c], changed, {})
    assert claims.check([dict(c, a={"variant": "missing"})], RECORDS, {})


def test_empty_subset_is_na_not_zero():
    c = claims.compare(RECORDS, "tags {a:.3f} vs {b:.3f}", a={"variant": "original", "subset": "tag"},
                       b={"variant": "clean", "subset": "tag"})
    assert c["values"] is None and c["text"].startswith("n/a")


def test_value_claims():
    m = {"lsh": {"recall": 0.994}}
    c = claims.value(m, "lsh.recall", "LSH finds {value:.1%}")
    assert c["text"] == "LSH finds 99.4%" and claims.check([c], [], m) == []
    assert claims.check([c], [], {"lsh": {"recall": 0.9}})


def test_prose_detector_fires(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "## Summary\n\n- the keyphrases that follow rules score about the same on both splits\n"
        "- QLoRA keeps the base in 4-bit (notebook 03, `r=16`)\n- 98.6% of posts\n\n## Exercises\n\n1. try 5 seeds")])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    assert claims.prose_claims(path) == ["- the keyphrases that follow rules score about the same on both splits",
                                         "- 98.6% of posts"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_number_or_comparison_in_summary_prose(path):
    assert claims.prose_claims(path) == [], (
        f"{path.name}: state these as computed claims (mmkp_helpers.claims), not in the Summary's prose")


@pytest.mark.parametrize("notebook", CLAIMED)
def test_committed_results_claims_agree_with_their_records(notebook):
    folder = ROOT / "results" / "tiny" / notebook
    measurements = json.loads((folder / "measurements.json").read_text())
    records = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else []
    assert measurements.get("summary_claims"), f"{notebook}: no computed Summary claims recorded"
    records += reused_records(folder.parent, measurements)  # notebook 05's baselines are notebook 04's records
    assert claims.check(measurements["summary_claims"], records, measurements) == []
