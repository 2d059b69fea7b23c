"""Composition-controlled differences (direct standardisation) between two test sets."""
import json

import pytest

from mmkp_helpers import composition
from mmkp_helpers.data import Example, write_jsonl
from mmkp_helpers.metrics import score_examples


def _post(i, tags=False, split="a"):
    kps = ["car", "red car", "night"] + (["travel", "deal"] if tags else [])
    kinds = {"car": "present", "red car": "text+image", "night": "image"} | (
        {"travel": "tag", "deal": "tag"} if tags else {})
    text = f"just got a new car number {i}" + (" via maple" if tags else "")
    return Example(id=f"{split}-{i}", text=text, keyphrases=kps, meta={"kinds": kinds})


# Predictions by kind of post and position: an account post gets only the rule keyphrases
# (no tag), an other post everything, with a wrong guess at a varying rank.
def _predict(ex, i):
    if composition.post_kind(ex) == "account":
        return ["car", "blue car", "night"] if i % 2 else ["car", "night", "sea", "red car"]
    return ["car", "red car", "night"] if i % 3 else ["snow", "car"]


def _split(n_account, n_other, split):
    """Predictions cycle within each kind (period 2 for account posts, 3 for others): with counts
    that are multiples of the periods each kind scores exactly the same in any two sets."""
    exs = [_post(i, tags=True, split=split) for i in range(n_account)]
    exs += [_post(n_account + i, split=split) for i in range(n_other)]
    return exs, [_predict(ex, i if i < n_account else i - n_account) for i, ex in enumerate(exs)]


def test_post_kind_reads_the_tag_kind():
    assert composition.post_kind(_post(0, tags=True)) == "account"
    assert composition.post_kind(_post(0)) == "other"


def test_raw_scores_equal_the_evaluator_exactly():
    exs, preds = _split(7, 11, "a")
    stats = composition.kind_stats(preds, exs)
    assert {k: v["posts"] for k, v in stats.items()} == {"account": 7, "other": 11}
    ref = score_examples(preds, exs)["all"]
    for metric in composition.METRICS:
        assert composition.score_from_stats(stats, metric) == pytest.approx(ref[metric], abs=1e-12)
    # explicit weights equal to the own shares give the raw score back too
    own = {k: v["posts"] / 18 for k, v in stats.items()}
    assert composition.score_from_stats(stats, "F1@M", own) == pytest.approx(ref["F1@M"], abs=1e-12)


def test_same_model_different_composition_raw_differs_controlled_does_not():
    # Same predictor, so each kind scores the same in both sets; only the shares differ
    # (36 of 150 account posts against 78 of 150, about the original and clean splits).
    a_ex, a_pred = _split(36, 114, "a")
    b_ex, b_pred = _split(78, 72, "b")
    d = composition.composition_difference(a_pred, a_ex, b_pred, b_ex)
    assert d["raw_difference"] > 0.05  # the clean-like set is harder only by composition
    assert d["controlled_difference"] == pytest.approx(0.0, abs=1e-12)
    assert d["kinds"]["account"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert d["weights"] == pytest.approx({"account": 114 / 300, "other": 186 / 300})
    assert d["kinds"]["account"]["posts_a"] == 36 and d["kinds"]["account"]["posts_b"] == 78
    assert d["kinds"]["account"]["share_b"] == pytest.approx(78 / 150)
    assert d["raw_a"] == pytest.approx(score_examples(a_pred, a_ex)["all"]["F1@M"], abs=1e-12)
    assert d["raw_b"] == pytest.approx(score_examples(b_pred, b_ex)["all"]["F1@M"], abs=1e-12)
    # standardising on one set's shares leaves that set's score unchanged
    d_a = composition.composition_difference(a_pred, a_ex, b_pred, b_ex, weights="a")
    assert d_a["controlled_a"] == pytest.approx(d_a["raw_a"], abs=1e-12)
    assert "raw" in composition.format_difference(d) and "account: 36 vs 78 posts" in composition.format_difference(d)


def test_a_real_gain_on_one_kind_survives_standardisation():
    a_ex, a_pred = _split(36, 114, "a")
    b_ex, b_pred = _split(78, 72, "b")
    a_pred = [p + (["travel", "deal"] if composition.post_kind(ex) == "account" else [])
              for ex, p in zip(a_ex, a_pred)]  # memorised tags on the original split
    d = composition.composition_difference(a_pred, a_ex, b_pred, b_ex)
    assert d["kinds"]["account"]["difference"] > 0.1
    assert d["kinds"]["other"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert d["controlled_difference"] > 0.05


def test_a_kind_in_one_set_only_is_dropped_from_the_controlled_scores():
    a_ex, a_pred = _split(0, 21, "a")
    b_ex, b_pred = _split(10, 9, "b")
    d = composition.composition_difference(a_pred, a_ex, b_pred, b_ex)
    assert d["dropped_kinds"] == ["account"] and d["weights"] == {"other": 1.0}
    assert d["kinds"]["account"]["a"] is None and d["kinds"]["account"]["difference"] is None
    assert d["controlled_difference"] == pytest.approx(0.0, abs=1e-12)
    assert d["raw_difference"] > 0


def test_bad_weights_are_refused():
    exs, preds = _split(3, 3, "a")
    stats = composition.kind_stats(preds, exs)
    with pytest.raises(ValueError):
        composition.score_from_stats(stats, "F1@M", {"account": 0.5, "other": 0.4})
    with pytest.raises(ValueError):
        composition.score_from_stats(stats, "F1@7")
    with pytest.raises(ValueError):
        composition.standardised_difference(stats, stats, weights="median")


def test_from_saved_generations_matches_in_memory(tmp_path):
    a_ex, a_pred = _split(5, 9, "a")
    b_ex, b_pred = _split(8, 6, "b")
    for name, exs, preds in (("a", a_ex, a_pred), ("b", b_ex, b_pred)):
        write_jsonl(exs, tmp_path / f"{name}.jsonl")
        rows = [{"id": ex.id, "prediction": p, "raw": "", "n_tokens": 1, "seconds": 0.0} for ex, p in zip(exs, preds)]
        (tmp_path / f"{name}_gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    from_files = composition.composition_difference_from_files(tmp_path / "a_gen.jsonl", tmp_path / "a.jsonl",
                                                               tmp_path / "b_gen.jsonl", tmp_path / "b.jsonl")
    in_memory = composition.composition_difference(a_pred, a_ex, b_pred, b_ex)
    assert json.dumps(from_files) == json.dumps(in_memory)
    with pytest.raises(ValueError):
        composition.kind_stats(composition.read_generations(tmp_path / "a_gen.jsonl")[1:], a_ex)
