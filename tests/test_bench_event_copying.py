"""The occasion-word bench (mmkp_helpers.bench.event_copying) and what its committed figures support."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkp_helpers.bench import event_copying as ec
from mmkp_helpers.synthetic import EVENTS, generate

ROOT = Path(__file__).resolve().parents[1]
EVENT_FILE = ROOT / "results" / "bench" / "event_copying_cpu2.json"
BASES = ROOT / "results" / "bench" / "cot_base_study_cpu2.jsonl"
UNORDERED = ROOT / "results" / "bench" / "cot_unordered_study_cpu2.jsonl"
SWEEP = ROOT / "results" / "bench" / "former_recipe_400" / "cot_seeds_cpu2.jsonl"  # the former recipe


@pytest.fixture(scope="module")
def posts():
    return generate(seed=4, n_train=80, n_valid=0, n_test=0)["train"]


def test_event_counts_on_constructed_answers(posts):
    with_event = [ex for ex in posts if any(k in EVENTS for k in ex.keyphrases)]
    without = [ex for ex in posts if not any(k in EVENTS for k in ex.keyphrases)]
    assert with_event and without
    right, wrong, none = with_event[0], with_event[1], with_event[2]
    gold = {ex.id: next(k for k in ex.keyphrases if k in EVENTS) for ex in with_event}
    other = next(e for e in EVENTS if e != gold[wrong.id])
    gens = [{"id": right.id, "prediction": [gold[right.id]]},
            {"id": wrong.id, "prediction": [other]},
            {"id": none.id, "prediction": ["car"]},
            {"id": without[0].id, "prediction": ["party"]},
            {"id": without[1].id, "prediction": []}]
    counts = ec.event_counts(gens, {ex.id: ex for ex in posts})
    assert counts == {"posts": 3, "right": 1, "other_event": 1, "missing": 1, "posts_without": 2,
                      "predicted_without": 1}


def test_failure_classes_on_constructed_generations():
    cot = "<think>the text names a lamp and a holiday: lamp, {}.</think>\nKeyphrases: lamp; {}"
    gens = [{"raw": cot.format("holiday", "holiday")},                       # well-formed
            {"raw": cot.format("holiday", "party")},                         # only the occasion differs
            {"raw": cot.format("holiday", "party; red lamp")},               # the occasion and more
            {"raw": cot.format("holiday", "holiday; red lamp")},             # another keyphrase
            {"raw": "<think>the text names a lamp: lamp; lamp; lamp; lamp; lamp; lamp", "hit_limit": True},
            {"raw": "Keyphrases: lamp"}]                                     # no rationale
    assert ec.failure_classes(gens) == {"cot": 5, "not_well_formed": 4, "unclosed_or_loop": 1, "event_only": 1,
                                        "event_and_other": 1, "other": 1}


def _runs():
    return json.loads(EVENT_FILE.read_text())["runs"]


def test_what_the_event_bench_supports():
    """docs/measured_figures.md: on the default base the students often name another occasion than the
    post's (SFT on 2 of 4 seeds, Fine-tune-CoT on every seed, on over 10% of the posts that have one),
    and answers that depart from their rationale only in the occasion are a large class of the
    rationales that are not well-formed; on the base pretrained with the facts task SFT names the
    right occasion on at least 97% at every seed, Fine-tune-CoT names another on at most 3 posts."""
    runs = _runs()
    for seed in range(4):
        sft, cot = runs[f"sft default {seed}"], runs[f"fine_tune_cot default {seed}"]
        assert sft["posts"] == cot["posts"] > 100
        assert cot["other_event"] > 0.1 * cot["posts"]
        assert cot["failures"]["event_only"] >= 0.2 * cot["failures"]["not_well_formed"]
        facts_sft = runs[f"sft facts_unordered {seed}"]
        assert facts_sft["right"] >= 0.97 * facts_sft["posts"] and facts_sft["other_event"] == 0
        for tag in ("facts_unordered", "facts_verbose"):
            assert runs[f"fine_tune_cot {tag} {seed}"]["other_event"] <= 3
    assert sum(runs[f"sft default {s}"]["other_event"] > 0.1 * runs[f"sft default {s}"]["posts"] for s in range(4)) >= 2


def test_what_the_base_study_supports():
    """docs/measured_figures.md: the verbose recipe on the facts base is well-formed on more of its
    rationales than on the default base at every seed (at least 89%), yet below 95% on some seed;
    SFT on that base is at the ceiling on the composition posts and above Fine-tune-CoT there at
    every seed, in every style."""
    rows = [json.loads(line) for line in BASES.read_text().splitlines() if line.strip()]
    facts_sft = {r["seed"]: r for r in map(json.loads, UNORDERED.read_text().splitlines())
                 if r["method"] == "sft" and r["tag"] == "facts_unordered"}
    recipe = {r["seed"]: r for r in map(json.loads, SWEEP.read_text().splitlines())
              if r["method"] == "fine_tune_cot" and r["decoding"] == "free"}
    facts_verbose = {r["seed"]: r for r in rows if r["tag"] == "facts_verbose"}
    assert sorted(facts_verbose) == [0, 1, 2, 3]
    for seed, r in facts_verbose.items():
        assert r["overrides"] == {"model_name": "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts",
                                  "rationale_style": "verbose"}
        assert 0.89 <= r["well_formed_share"] and r["well_formed_share"] > recipe[seed]["well_formed_share"]
    assert min(r["well_formed_share"] for r in facts_verbose.values()) < 0.95
    for r in rows:
        if r["method"] == "fine_tune_cot" and r["tag"] in ("facts_verbose", "facts_described"):
            sft = facts_sft[r["seed"]]["F1@M"]["needs:composition"]
            assert sft >= 0.98 and r["F1@M"]["needs:composition"] < sft
    # 800 steps on that base: well-formed on at least 95% of the posts of no unseen account at every
    # seed, but not of all posts; the running style reaches 95% of all on 3 seeds of 4, not 4
    steps800 = {(r["tag"], r["method"], r["seed"]): r for r in rows if r["tag"].endswith("_steps800")}
    assert sorted(steps800) == sorted([(t, "fine_tune_cot", s) for t in ("facts_verbose_steps800", "facts_running_steps800")
                                       for s in range(4)] + [("facts_verbose_steps800", "sft", s) for s in range(4)])
    for seed in range(4):
        verbose = steps800[("facts_verbose_steps800", "fine_tune_cot", seed)]
        assert verbose["steps"] == 800 and verbose["rationale_reading"]["unsigned"]["well_formed"] >= 0.95
        assert verbose["rationale_reading"]["unsigned"]["posts"] == 423
    shares = [steps800[("facts_running_steps800", "fine_tune_cot", s)]["well_formed_share"] for s in range(4)]
    assert sum(w >= 0.95 for w in shares) == 3
    assert min(steps800[("facts_verbose_steps800", "fine_tune_cot", s)]["well_formed_share"] for s in range(4)) < 0.95
    # 1,200 steps with the running style: still 95% of all posts on 3 seeds of 4
    steps1200 = [r for r in rows if r["tag"] == "facts_running_steps1200"]
    assert sorted(r["seed"] for r in steps1200) == [0, 1, 2, 3] and all(r["steps"] == 1200 for r in steps1200)
    assert sum(r["well_formed_share"] >= 0.95 for r in steps1200) == 3
