"""The self-consistency of a rationale's colour chain (mmkp_helpers.bench.chain_coherence) and what
its committed figures support."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkp_helpers.bench.chain_coherence import chain
from mmkp_helpers.synthetic import generate
from mmkp_helpers.teacher.oracle import STYLES, OracleTeacher

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench" / "chain_coherence_cpu2.json"


def test_the_committed_self_contradiction_is_caught():
    """notebook 04's syn-test-0063: reads red and red, mixes a yellow it never read, calls the car
    purple, concludes orange; its answer copies that list, so it counts as well-formed."""
    text = ("the text names a car and a birthday: car, birthday. the picture shows a red square on the left and a "
            "red square on the right; red and yellow make orange, so the car is purple: orange car. the background "
            "is dark green, which shows forest: forest.")
    assert chain(text, "car") is False
    assert chain(text.replace("red and yellow make orange, so the car is purple: orange car",
                              "both are red, so the car is red: red car"), "car") is True
    assert chain(text.replace("so the car is purple", "so the car is orange"), "car") is False  # yellow unread
    assert chain("the text names a boat: boat. the picture is plain grey and adds nothing.", "boat") is None


@pytest.mark.parametrize("style", STYLES)
def test_every_teacher_rationale_is_coherent(style):
    posts = generate(seed=5, n_train=60, n_valid=0, n_test=0)["train"]
    teacher = OracleTeacher(style=style)
    for ex in posts:
        truth = ex.meta["truth"]
        if truth["needs"] == "text":
            continue
        assert chain(teacher.answer(ex).rationale, truth["topic"]) is True, (style, teacher.answer(ex).rationale)


def test_what_the_coherence_bench_supports():
    """docs/measured_figures.md: of the recipe's well-formed rationales on composition posts, at least
    a quarter contradict themselves at every seed (more than half on notebook 04's seed 0); on the
    facts base with 800 steps at most 30%, at every seed and in both styles, and more coherent ones."""
    runs = json.loads(RESULTS.read_text())["runs"]
    for seed in range(4):
        recipe = runs[f"fine_tune_cot default {seed}"]["composition"]
        assert recipe["posts"] == 146 and recipe["incoherent"] >= 0.25 * recipe["well_formed"]
        for tag in ("facts_verbose_steps800", "facts_running_steps800"):
            facts = runs[f"fine_tune_cot {tag} {seed}"]["composition"]
            assert facts["incoherent"] <= 0.3 * facts["well_formed"] and facts["coherent"] > recipe["coherent"]
    seed0 = runs["fine_tune_cot default 0"]["composition"]
    assert seed0["incoherent"] > seed0["coherent"]
