"""The CMKP-compatible evaluator: published figures, the rules one by one, subsets, CLI, bad input."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmkp_helpers.data import DataError, Example
from mmkp_helpers.metrics import (METRIC_NAMES, filter_predictions, main, parse_prediction_line, read_predictions,
                                  score, score_examples)


# ------------------------------------------------------------------ the published numbers
def _run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_published_cmkp_figures(cmkp_dir, capsys):
    """mmkp-score on the released CMKP model's predictions gives the upstream evaluator's numbers."""
    code, out, _ = _run_cli(capsys, "--pred", str(cmkp_dir / "sample_pred" / "best_pred.txt"),
                            "--src", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 5372
    # upstream README (4 decimals)
    assert round(result["all"]["F1@1"], 4) == 0.4713
    assert round(result["all"]["F1@3"], 4) == 0.3322
    assert round(result["all"]["MAP@5"], 4) == 0.5226
    # the upstream evaluator's present/absent output (5 decimals)
    assert round(result["present"]["F1@1"], 5) == 0.83297
    assert round(result["present"]["F1@3"], 5) == 0.80530
    assert round(result["absent"]["F1@1"], 5) == 0.28220
    assert round(result["absent"]["F1@3"], 5) == 0.22604
    # F1@M: all predictions (5 a post here, so it equals F1@5)
    assert result["all"]["F1@M"] == pytest.approx(result["all"]["F1@5"])
    # counts: every post scored in "all"; present/absent only where such targets exist
    assert result["all"]["n"] == 5372
    assert result["present"]["n"] + result["absent"]["n"] > 5372 > result["present"]["n"]
    assert set(result) == {"n", "all", "present", "absent"}


def test_unseen_subset_on_cmkp(cmkp_dir, capsys):
    """With the training keyphrase list, 1.38% of test posts (74) have an unseen keyphrase."""
    code, out, _ = _run_cli(capsys, "--pred", str(cmkp_dir / "sample_pred" / "best_pred.txt"),
                            "--src", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"),
                            "--train-keyphrases", str(cmkp_dir / "train_keyphrases.txt"), "--json")
    assert code == 0
    unseen = json.loads(out)["unseen"]
    assert unseen["n"] == 74
    assert unseen["n_targets"] == 75
    assert all(0.0 <= unseen[m] <= 1.0 for m in METRIC_NAMES)


def test_table_output(cmkp_dir, capsys):
    code, out, _ = _run_cli(capsys, "--pred", str(cmkp_dir / "sample_pred" / "best_pred.txt"),
                            "--src", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"))
    assert code == 0
    lines = out.splitlines()
    assert "F1@1" in lines[1] and "MAP@5" in lines[1]
    row = next(line for line in lines if line.startswith("all"))
    assert "0.4713" in row and "0.5226" in row


# ------------------------------------------------------------------ the rules, one by one
def test_precision_divides_by_min_k_and_predictions():
    # one correct prediction out of one: P@3 = 1/min(3, 1) = 1, R@3 = 1/2
    r = score([["a"]], [["a", "b"]], ["a b c"])["all"]
    assert r["P@3"] == 1.0 and r["R@3"] == 0.5
    assert r["F1@3"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert r["F1@M"] == pytest.approx(r["F1@3"])


def test_f1_is_f1_of_macro_averages():
    # per post (P@1, R@1): (1, 1), (0, 0), (1, 1/4); F1 is taken of the averaged P and R,
    # which differs from the mean of the per-post F1s
    r = score([["a"], ["x"], ["a"]], [["a"], ["b"], ["a", "b", "c", "d"]], ["", "", ""])["all"]
    p = (1 + 0 + 1) / 3
    rec = (1 + 0 + 0.25) / 3
    assert r["F1@1"] == pytest.approx(2 * p * rec / (p + rec))
    mean_of_f1s = (1 + 0 + 2 * 0.25 / 1.25) / 3
    assert r["F1@1"] != pytest.approx(mean_of_f1s)


def test_map_at_5():
    # hits at ranks 2 and 4 of 6 predictions, 3 targets: (1/2 + 2/4) / 3; rank 6 is beyond 5
    r = score([["x", "a", "y", "b", "z", "c"]], [["a", "b", "c"]], [""])["all"]
    assert r["MAP@5"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert r["F1@M"] == pytest.approx(1.0 / 2 * 2 * 1.0 / (0.5 + 1.0))  # P@M = 3/6, R@M = 1


def test_stemming_lowercase_and_duplicates():
    # "Flowers" and "flower" stem alike: the duplicate is dropped and does not take a rank
    preds = filter_predictions(["Flowers", "flower", "", "  ", "a , b", "<unk> x", "Running Shoes"])
    assert preds == [("flower",), ("run", "shoe")]
    r = score([["Flowers", "flower", "garden"]], [["flower", "gardens"]], ["the flowers"])["all"]
    assert r["P@3"] == 1.0 and r["R@3"] == 1.0


def test_present_absent_split_and_averaging():
    texts = ["i love my dog", "nothing here"]
    targets = [["dog", "pet"], ["cat"]]
    preds = [["pet", "dog"], ["cat"]]
    r = score(preds, targets, texts)
    # present: only post 1 has a present target; its present predictions are ["dog"] -> P@1 = 1
    assert r["present"]["n"] == 1 and r["present"]["F1@1"] == 1.0
    # absent: both posts; absent predictions ["pet"] and ["cat"], both right
    assert r["absent"]["n"] == 2 and r["absent"]["F1@1"] == 1.0
    # all: post 1's first prediction "pet" is right, so is post 2's
    assert r["all"]["P@1"] == 1.0 and r["all"]["R@1"] == pytest.approx((0.5 + 1) / 2)


def test_present_is_contiguous_stem_match():
    r = score([[]], [["new york", "york new"]], ["I moved to New Yorks today"])
    assert r["present"]["n_targets"] == 1 and r["absent"]["n_targets"] == 1


def test_no_predictions_and_no_targets():
    r = score([[], ["a"]], [["a"], []], ["a", "a"])
    assert r["n"] == 2
    assert r["all"]["n"] == 1  # the post without targets is not scored
    assert all(r["all"][m] == 0.0 for m in METRIC_NAMES)
    empty = score([], [], [])
    assert empty["all"]["n"] == 0 and all(empty[s][m] == 0.0 for s in ("all", "present", "absent")
                                          for m in METRIC_NAMES)


def test_unseen_splits_predictions_by_the_same_predicate():
    train = ["dogs", "cat"]
    r = score([["dog", "puppy"]], [["dog", "puppy"]], [""], train_keyphrases=train)
    # unseen targets {puppy}; unseen predictions [puppy] ("dog" is a seen keyphrase): P@1 = 1
    assert r["unseen"]["n"] == 1 and r["unseen"]["n_targets"] == 1 and r["unseen"]["F1@1"] == 1.0
    r = score([["dog"]], [["dog"]], [""], train_keyphrases=train)
    assert r["unseen"]["n"] == 0


def test_extra_subsets_ignore_hits_on_other_targets():
    # subset "image" = ["night"]; "car" is another target of the post, so predicting it first
    # neither helps nor hurts: the image subset sees ["night", "blue"]
    r = score([["car", "night", "blue"]], [["car", "night"]], ["my car"], extra_subsets={"image": [["night"]]})
    img = r["image"]
    assert img["n"] == 1 and img["P@1"] == 1.0 and img["n_predictions"] == 2
    assert img["P@3"] == 0.5  # the wrong "blue" still counts against precision
    # a post without targets in the subset is skipped
    r = score([["a"], ["b"]], [["a"], ["b"]], ["", ""], extra_subsets={"image": [["a"], []]})
    assert r["image"]["n"] == 1
    with pytest.raises(ValueError, match="clashes"):
        score([["a"]], [["a"]], [""], extra_subsets={"present": [["a"]]})
    with pytest.raises(ValueError, match="entries"):
        score([["a"]], [["a"]], [""], extra_subsets={"image": []})


def test_score_examples_uses_kinds():
    examples = [Example("1", "new car for the party", ["car", "party", "red car", "night"],
                        meta={"kinds": {"car": "present", "party": "present", "red car": "text+image",
                                        "night": "image"}})]
    r = score_examples([["car", "red car", "night", "party"]], examples, train_keyphrases=["car", "party", "night"])
    assert {"all", "present", "absent", "unseen", "kind:present", "text+image", "image"} <= set(r)
    assert r["image"]["F1@M"] == 1.0 and r["text+image"]["F1@M"] == 1.0 and r["kind:present"]["F1@M"] == 1.0
    assert r["unseen"]["n_targets"] == 1  # "red car"
    assert r["all"]["MAP@5"] == 1.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one of each per post"):
        score([["a"]], [["a"], ["b"]], ["", ""])


# ------------------------------------------------------------------ predictions files
def test_prediction_line_parsing():
    assert parse_prediction_line(" a b ; c;;  ;d ") == ["a b", "c", "d"]
    assert parse_prediction_line("") == []


def test_predictions_line_count_mismatch(tmp_path, cmkp_dir, capsys):
    pred = tmp_path / "pred.txt"
    pred.write_text("a;b\nc\n")
    assert read_predictions(pred, expected_lines=2) == [["a", "b"], ["c"]]
    with pytest.raises(DataError, match=r"pred\.txt:3: predictions end after 2 lines but the source has 3"):
        read_predictions(pred, expected_lines=3)
    with pytest.raises(DataError, match=r"pred\.txt:2: extra line"):
        read_predictions(pred, expected_lines=1)
    # the CLI says so too, and exits with 2
    code, _, err = _run_cli(capsys, "--pred", str(pred), "--src", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"))
    assert code == 2 and "pred.txt:3:" in err and "5372 posts" in err


def test_predictions_invalid_utf8(tmp_path):
    pred = tmp_path / "pred.txt"
    pred.write_bytes(b"fine;ok\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"pred\.txt:2: invalid UTF-8"):
        read_predictions(pred)


def test_cli_accepts_jsonl_source(tmp_path, capsys):
    from mmkp_helpers.data import write_jsonl

    src = write_jsonl([Example("a", "my dog", ["dog", "pet"], meta={"kinds": {"dog": "present", "pet": "image"}}),
                       Example("b", "a cat", ["cat"])], tmp_path / "test.jsonl")
    pred = tmp_path / "pred.txt"
    pred.write_text("dog;pet\ncat\n")
    (tmp_path / "train.txt").write_text("dog\ncat\n")
    code, out, _ = _run_cli(capsys, "--pred", str(pred), "--src", str(src), "--train-keyphrases",
                            str(tmp_path / "train.txt"), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["all"]["F1@M"] == 1.0 and result["unseen"]["n"] == 1 and result["image"]["n"] == 1


# ------------------------------------------------------------------ property test
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
_phrases = st.lists(_text, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_text, _phrases, _phrases), max_size=6), st.one_of(st.none(), _phrases))
def test_property_scores_in_unit_interval(posts, train):
    texts = [t for t, _, _ in posts]
    targets = [g for _, g, _ in posts]
    predictions = [parse_prediction_line(";".join(p)) for _, _, p in posts]
    result = score(predictions, targets, texts, train_keyphrases=train,
                   extra_subsets={"first": [g[:1] for g in targets]})
    assert result["n"] == len(posts)
    for name, scores in result.items():
        if name == "n":
            continue
        for metric in METRIC_NAMES:
            assert 0.0 <= scores[metric] <= 1.0, (name, metric, scores[metric])
        assert scores["n"] <= len(posts)


def test_unseen_kind_subsets():
    """unseen:<kind> scores the unseen targets of a kind, other targets' hits removed; absent when empty."""
    from mmkp_helpers.metrics import score

    targets = [["car", "green car", "travel"], ["bike", "red bike"]]
    preds = [["car", "green car", "blue car"], ["bike", "red bike"]]
    kinds = {"text+image": [["green car"], ["red bike"]], "tag": [["travel"], []], "kind:present": [["car"], ["bike"]]}
    out = score(preds, targets, ["a car", "a bike"], train_keyphrases=["car", "bike", "red bike", "travel"],
                extra_subsets=kinds)
    assert set(k for k in out if k.startswith("unseen:")) == {"unseen:text+image"}
    sub = out["unseen:text+image"]
    assert sub["n"] == 1 and sub["n_targets"] == 1
    # "car" matches another target of the post and is dropped; "green car" hits, "blue car" misses
    assert sub["n_predictions"] == 2 and sub["F1@1"] == 1.0
