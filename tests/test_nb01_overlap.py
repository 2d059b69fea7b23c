"""Smoke run of notebook 01 with `mmkp-run --profile tiny`; assertions read what it recorded.
The fixture `tiny_run` (conftest) runs each notebook once per session."""
from pathlib import Path

import nbformat
import pytest

from mmkp_helpers import claims, overlap, results
from mmkp_helpers.data import read_jsonl

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

FIGURES = ("synthetic_examples", "cmkp_keyphrase_kinds", "lsh_s_curve", "cmkp_valid_test_jaccard", "lsh_recall",
           "split_overlap", "synthetic_jaccard_original_vs_clean", "near_duplicate_pairs")


def test_01_benchmark_overlap(tiny_run):
    out = tiny_run("01")
    folder = out / "01_benchmark_overlap"
    m = results.read_json(folder / "measurements.json")
    assert (out / "01_benchmark_overlap.ipynb").exists()
    for name in FIGURES:
        assert (folder / f"{name}.png").stat().st_size > 1000, name

    # the published CMKP figures, as the notebook measured them
    assert m["cmkp_train_keyphrases"] == 4261 and m["cmkp_test_posts"] == 5372
    assert round(100 * m["cmkp_test_occurrence_seen_share"], 2) == 98.95
    assert round(100 * m["cmkp_test_posts_all_seen_share"], 2) == 98.62
    assert round(100 * m["cmkp_keyphrase_overlap"]["stemmed"]["occurrence_share"], 2) == 98.95
    # validation against test: LSH finds what the exhaustive search finds
    vt = m["cmkp_valid_vs_test"]
    assert vt["exact"]["near_duplicates"] > 0 and vt["exact"]["exact_duplicates"] > 0
    assert vt["lsh"]["near_duplicates"] >= 0.95 * vt["exact"]["near_duplicates"]
    # candidates (before the exact check) and confirmed pairs are kept apart; the exhaustive search has no candidates
    assert vt["exact"]["lsh_candidate_pairs"] is None and vt["lsh"]["lsh_candidate_pairs"] >= vt["lsh"]["confirmed_pairs"]
    assert vt["lsh"]["confirmed_pairs"] <= vt["exact"]["confirmed_pairs"]
    lr = m["lsh_recall"]
    assert lr["lsh_candidate_pairs_distinct_texts"] >= lr["lsh_confirmed_pairs_distinct_texts"]
    assert m["lsh_recall"]["recall"] >= 0.95 and m["lsh_recall"]["truth_pairs"] > 500
    assert (m["lsh_bands"], m["lsh_rows"]) == (26, 3)

    # the splits: clean has no near-duplicates across train/test and the asked unseen share
    for dataset in ("synthetic", "cmkp"):
        s = m["splits"][dataset]
        assert s["original"]["counts"] == s["clean"]["counts"]
        assert s["original"]["test_near_duplicate_share"] > 0
        assert s["clean"]["test_near_duplicate_share"] == 0 and s["clean"]["valid_near_duplicate_share"] == 0
        if dataset == "cmkp":  # steered to the asked share
            assert abs(s["clean"]["test_unseen_share"] - 0.1) <= 0.02
        else:  # not steered: the test accounts' tags and the held-out colour x object pairs
            assert s["clean"]["test_unseen_share"] > 0.2
    assert m["splits"]["synthetic"]["original"]["test_near_duplicate_share"] > 0.2

    # the files later notebooks read, and prepare_splits finds them ready
    paths = m["split_paths"]["synthetic"]
    test = read_jsonl(paths["clean"]["test"])
    assert len(test) == m["splits"]["synthetic"]["clean"]["counts"]["test"]
    assert all(Path(e.image).is_file() for e in test)
    again = overlap.prepare_splits("synthetic", out, seed=0, verbose=False)
    assert {v: {k: str(p) for k, p in d.items()} for v, d in again.items()} == paths

    params = results.read_json(folder / "params.json")
    assert params["profile"] == "tiny" and params["threshold"] == 0.5
    bundles = results.read_notebook_records(out / "01_benchmark_overlap.ipynb")
    assert bundles and bundles[-1]["measurements"]["cmkp_test_posts_all_seen_share"] == m["cmkp_test_posts_all_seen_share"]
    assert m["notebook_seconds"] < 120
    assert m["summary_claims"] and claims.check(m["summary_claims"], [], m) == []


def test_01_generator_sets_named_apart_from_the_clean_split(root):
    nb = nbformat.read(str(root / "notebooks" / "01_benchmark_overlap.ipynb"), as_version=4)
    # the generator's test_clean set is never shown under the clean split's name
    text = "\n".join(c.source for c in nb.cells)
    assert "generator's held-out test set" in text
