"""Rationale quality: conclusions, loops, consistency, failure kinds and their counts."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from mmkp_helpers.rationale import (FAILURE_KINDS, KINDS, check, compact, conclusions, consistent, order_agrees,
                                    quality_stats, repeated_ngram, split_cot)

TEACHER = ("the text names a bike and a trip: bike, trip. the circle in the picture is green, so the bike is "
           "green: green bike. the background is dark blue: night.")
WELL_FORMED = f"<think>{TEACHER}</think>\nKeyphrases: bike; trip; green bike; night"
# Failure texts seen on this project.
LOOPING = ("<think>the text names a bike and a trip. the circle in the picture is green, so the bike is green: "
           "green bike. snow; green bike; snow; green bike; snow; green bike</think>\nKeyphrases: bike")
STOPPED_UNCLOSED = "<think>the text names a bike. the circle in the picture is"  # ended on its own (16-91 tokens)
CUT_OFF = "<think>the text names a bike and a trip: bike, trip. the circle in the picture is green, so the"


@dataclass
class G:
    """The two attributes the checks read, plus an id (as an inference.Generation has)."""
    id: str
    raw: str
    hit_limit: bool | None = False


def test_conclusions_in_order():
    assert conclusions(TEACHER) == ["bike", "trip", "green bike", "night"]
    assert conclusions("The background is Dark blue:  Night .") == ["night"]
    assert conclusions("it is about a bike: bike. again: bike, trip") == ["bike", "trip"]  # repeats dropped
    assert conclusions("the text names a bike. the sky is blue") is None  # no marker: another style
    assert conclusions("") is None


def test_split_cot():
    assert split_cot(WELL_FORMED) == (TEACHER, "\nKeyphrases: bike; trip; green bike; night")
    assert split_cot("<think" + ">a b</think>x") == ("a b", "x")
    assert split_cot(STOPPED_UNCLOSED) == (STOPPED_UNCLOSED[len("<think>"):], None)


def test_loop_definition():
    looping_rationale = split_cot(LOOPING)[0]
    assert repeated_ngram(looping_rationale) == "green bike snow"
    assert repeated_ngram(TEACHER) is None
    # punctuation is ignored, case too; overlapping occurrences count ("a a a a a": "a a a" 3 times)
    assert repeated_ngram("Red car. red, car! RED car?") is None  # a bigram, n = 3 needed
    assert repeated_ngram("red car now. red car now; red car now") == "red car now"
    assert repeated_ngram("a a a a a") == "a a a" and repeated_ngram("a a a a") is None
    # thresholds are parameters
    assert repeated_ngram("red car now. red car now", repeats=2) == "red car now"
    assert repeated_ngram("red car. red car. red car", n=2) == "red car"


def test_consistency_with_markers_ignores_order_and_records_it():
    assert consistent(TEACHER, ["bike", "trip", "green bike", "night"])
    assert consistent(TEACHER, ["night", "Green Bike", "trip", "bike"])  # order and case ignored
    assert order_agrees(TEACHER, ["bike", "trip", "green bike", "night"]) is True
    assert order_agrees(TEACHER, ["night", "green bike", "trip", "bike"]) is False
    assert not consistent(TEACHER, ["bike", "trip", "green bike"])  # a conclusion left out
    assert not consistent(TEACHER, ["bike", "trip", "green bike", "night", "snow"])  # one not concluded
    assert order_agrees(TEACHER, ["bike"]) is None
    assert not consistent(TEACHER, [])  # an empty answer is inconsistent


def test_consistency_fallback_without_markers():
    plain = "The post is about a bike trip at night, with a green bike in the picture."
    assert conclusions(plain) is None
    assert consistent(plain, ["bike", "green bike", "night"])
    assert not consistent(plain, ["bike", "snow"])  # snow never occurs
    assert not consistent(plain, ["bik"])  # whole words only
    assert not consistent(plain, [])
    assert order_agrees(plain, ["bike"]) is None


def test_failure_kinds_of_crafted_generations():
    looping = check(LOOPING, hit_limit=False)
    assert looping.kind == "loop" and not looping.loop_free and not looping.consistent and looping.closed
    # the loop check reads the reasoning without its conclusion lists (the first step's "green bike."
    # is a conclusion), so the first thrice-repeated trigram it meets is "snow green bike"
    assert looping.loop_ngram == "snow green bike" and looping.answer == ["bike"]

    unclosed = check(STOPPED_UNCLOSED, hit_limit=False)  # stopped on its own: not cut off
    assert unclosed.kind == "unclosed" and not unclosed.closed and not unclosed.has_answer

    cut = check(CUT_OFF, hit_limit=True)
    assert cut.kind == "cut_off" and not cut.closed
    # the budget comes first, even when the rationale had closed
    assert check(WELL_FORMED, hit_limit=True).kind == "cut_off"

    no_answer = check(f"<think>{TEACHER}</think>\n", hit_limit=False)
    assert no_answer.kind == "no_answer" and no_answer.closed and not no_answer.consistent

    inconsistent = check(f"<think>{TEACHER}</think>\nKeyphrases: bike; snow", hit_limit=False)
    assert inconsistent.kind == "inconsistent" and inconsistent.loop_free

    good = check(WELL_FORMED, hit_limit=False)
    assert good.kind == "well_formed" and good.well_formed and good.order_agrees
    assert good.closed and good.loop_free and good.consistent and good.answer == ["bike", "trip", "green bike", "night"]
    # another teacher's style: the fallback rule
    assert check("<think>a green bike on a night trip</think>\nKeyphrases: green bike; night").kind == "well_formed"
    # a prefilled "<think" the model completed with ">"; leading white space is fine
    assert check("  " + WELL_FORMED).kind == "well_formed"


def test_unknown_limit_is_never_cut_off_and_direct_outputs_have_no_kind():
    assert check(CUT_OFF, hit_limit=None).kind == "unclosed"
    direct = check("Keyphrases: bike; trip", hit_limit=True)
    assert not direct.opened and direct.kind is None


def test_quality_stats_counts_every_kind():
    gens = [G("loop", LOOPING), G("unclosed", STOPPED_UNCLOSED), G("cut", CUT_OFF, True), G("good", WELL_FORMED),
            G("good2", WELL_FORMED.replace("bike; trip", "trip; bike")),
            G("none", f"<think>{TEACHER}</think>"), G("bad", f"<think>{TEACHER}</think>\nKeyphrases: snow"),
            G("direct", "Keyphrases: bike", True), G("old", WELL_FORMED, None)]
    stats = quality_stats(gens)
    assert stats["n_cot"] == 8  # the direct output is not counted
    assert {k: stats[k] for k in KINDS} == {"cut_off": 1, "unclosed": 1, "no_answer": 1, "loop": 1,
                                            "inconsistent": 1, "well_formed": 3}
    assert sum(stats[k] for k in KINDS) == stats["n_cot"]
    assert stats["closed"] == 6 and stats["loop_free"] == 7 and stats["consistent"] == 3
    assert stats["order_agrees"] == 2 and stats["limit_unknown"] == 1
    assert stats["well_formed_share"] == pytest.approx(3 / 8)
    assert stats["examples"]["well_formed"] == ["good", "good2", "old"]
    assert stats["examples"]["loop"] == ["loop"] and stats["examples"]["cut_off"] == ["cut"]
    assert set(stats["examples"]) == set(FAILURE_KINDS) | {"well_formed"}
    assert "examples" not in compact(stats) and compact(stats)["n_cot"] == 8


def test_quality_stats_without_cot():
    stats = quality_stats([G("d", "Keyphrases: bike")])
    assert stats["n_cot"] == 0 and stats["well_formed_share"] is None
    assert quality_stats([])["well_formed_share"] is None


def test_generations_from_inference_are_checked(tmp_path):
    """An inference.Generation (and one read back from a file without hit_limit) works as is."""
    import json

    from mmkp_helpers.inference import Generation, read_generations_jsonl

    g = Generation(id="x", raw=CUT_OFF, keyphrases=[], reasoning=None, parse_ok=False, n_tokens=48, seconds=0.1,
                   hit_limit=True)
    assert quality_stats([g])["cut_off"] == 1
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"id": "x", "prediction": [], "raw": CUT_OFF, "n_tokens": 48, "seconds": 0.1}) + "\n")
    (back,) = read_generations_jsonl(old)
    assert back.hit_limit is None
    assert quality_stats([back])["unclosed"] == 1 and quality_stats([back])["limit_unknown"] == 1
