"""The intervention on the Fine-tune-CoT student's reading (bench.rationale_intervention): what it
prefills, how it counts, and what the committed runs show."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkp_helpers.bench import rationale_intervention as ri
from mmkp_helpers.inference import Generation
from mmkp_helpers.prompts import cot_target

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench" / "rationale_intervention_cpu2.json"


@pytest.fixture(scope="module")
def posts():
    from mmkp_helpers.synthetic import generate

    return generate(seed=5, n_train=40, n_valid=0, n_test=80)["test_clean"]


@pytest.fixture(scope="module")
def teacher():
    from mmkp_helpers.teacher.oracle import OracleTeacher

    return OracleTeacher(style="verbose")


def test_the_plan_prefills_the_true_and_a_changed_reading_of_every_shaped_post(posts, teacher):
    plan = ri.interventions(posts, teacher)
    shaped = [ex for ex in posts if ex.meta["needs"] != "text"]
    assert set(plan["true"]) == set(plan["changed"]) == {ex.id for ex in shaped} and shaped
    for ex in shaped:
        true, changed = plan["true"][ex.id], plan["changed"][ex.id]
        assert true[1] == ri.colour_keyphrase(ex) != changed[1]  # another colour of the same object
        assert changed[1].split()[-1] == ex.meta["truth"]["topic"]
        assert cot_target(teacher.rationale_and_keyphrases(ex)[0], ex.keyphrases).startswith(true[0])
        assert true[0] != changed[0] and true[0].startswith("<think>") and changed[0].startswith("<think>")


def _gen(ex_id: str, reasoning: str, answer: list[str]) -> Generation:
    raw = cot_target(reasoning, answer)
    return Generation(id=ex_id, raw=raw, keyphrases=answer, reasoning=reasoning, parse_ok=True, n_tokens=9,
                      seconds=0.0, prompt="direct", mode=None, hit_limit=False)


def test_tally_counts_what_the_rationale_concluded_and_what_the_answer_holds(posts, teacher):
    plan = ri.interventions(posts, teacher)["changed"]
    shaped = [ex for ex in posts if ex.id in plan]
    follows, ignores = shaped[0], shaped[1]
    gens = [_gen(follows.id, f"it reads so: {plan[follows.id][1]}", [plan[follows.id][1]]),
            _gen(ignores.id, f"it reads so: {plan[ignores.id][1]}", [ri.colour_keyphrase(ignores)])]
    gens += [_gen(ex.id, "nothing concluded", []) for ex in shaped[2:]]
    counts = ri.tally(shaped, gens, plan)
    assert counts["all"] == {"posts": len(shaped), "concludes_reading": 2, "answer_reading": 1, "answer_picture": 1}
    kinds = {f"needs:{ex.meta['needs']}" for ex in shaped}
    assert sum(counts[k]["posts"] for k in kinds) == len(shaped)
    assert counts.get("heldout", {"posts": 0})["posts"] == sum(bool(ex.meta.get("heldout")) for ex in shaped)


def test_a_missing_adapter_names_the_sweep_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench.cot_seeds"):
        ri.run_seed(0, str(tmp_path), "nosuchtag", str(tmp_path))


def test_what_the_committed_interventions_show():
    """The recipe's student (tag default) answers from the picture whatever its rationale read; the
    evidence counterfactuals (tag rr50) make the answer follow the reading more often on every seed."""
    report = json.loads(RESULTS.read_text())
    runs = {tag: {r["seed"]: r for r in rows} for tag, rows in report["runs"].items()}
    assert set(runs) >= {"default", "rr50"} and all(len(v) >= 4 for v in runs.values())
    for tag, rows in runs.items():
        for row in rows.values():
            for cond in ri.CONDITIONS:
                for group, c in row[cond].items():
                    assert 0 <= min(c.values()) and max(c[k] for k in ri.COUNTS[1:]) <= c["posts"], (tag, group)
                    assert c["answer_reading"] == c["answer_picture"] or cond == "changed"
    for seed, row in runs["default"].items():
        comp, image = row["changed"]["needs:composition"], row["changed"]["needs:image"]
        assert comp["answer_reading"] <= 0.1 * comp["posts"] and comp["answer_picture"] >= 0.6 * comp["posts"]
        assert image["answer_reading"] <= 0.05 * image["posts"] and image["concludes_reading"] <= 0.05 * image["posts"]
        other = runs["rr50"][seed]["changed"]["needs:composition"]
        assert other["answer_reading"] > 2 * comp["answer_reading"]



def test_the_stranger_study_student_does_not_use_its_reading():
    """docs/measured_figures.md: the stranger study's Fine-tune-CoT (facts base, 800 steps, running style,
    at least 97% well-formed on every seed) answers from the picture whatever reading is prefilled: after a
    changed reading, on every seed, its rationale concludes that reading's colour on at most 2% of the
    composition posts and its answer holds it on at most 1%, while the answer names the picture's colour on
    over 90%: well-formed, yet the rationale does not make the answer."""
    rows = {r["seed"]: r for r in json.loads(RESULTS.read_text())["runs"]["facts_running_steps800_strangerposts100"]}
    assert sorted(rows) == [0, 1, 2, 3]
    for row in rows.values():
        assert row["rationale_style"] == "running" and row["model_name"].endswith("tasks=caption+continue+repeat+list+facts")
        true, changed = row["true"]["needs:composition"], row["changed"]["needs:composition"]
        assert true["answer_picture"] >= 0.9 * true["posts"]
        assert changed["concludes_reading"] <= 0.02 * changed["posts"] and changed["answer_reading"] <= 0.01 * changed["posts"]
        assert changed["answer_picture"] >= 0.9 * changed["posts"]
        image = row["changed"]["needs:image"]
        assert image["answer_reading"] == 0 and image["answer_picture"] >= 0.95 * image["posts"]

REREAD = ROOT / "results" / "bench" / "cot_reread_study_cpu2.jsonl"
SWEEP = ROOT / "results" / "bench" / "former_recipe_400" / "cot_seeds_cpu2.jsonl"  # the former recipe


def test_what_the_reread_study_supports():
    """docs/measured_figures.md: evidence counterfactuals for half the posts with a shape (rr50) leave
    fewer rationales well-formed and lower scores on the held-out pairs than the recipe, on every
    seed, and a lower F1@M on average."""
    rows = {r["seed"]: r for r in map(json.loads, REREAD.read_text().splitlines())}
    recipe = {r["seed"]: r for r in map(json.loads, SWEEP.read_text().splitlines())
              if r["method"] == "fine_tune_cot" and r["decoding"] == "free"}
    assert sorted(rows) == sorted(recipe) == [0, 1, 2, 3]
    assert all(r["overrides"] == {"reread_share": 0.5} and r["tag"] == "rr50" for r in rows.values())
    for seed, r in rows.items():
        assert r["well_formed_share"] < recipe[seed]["well_formed_share"]
        assert r["F1@M"]["unseen:text+image"] < recipe[seed]["F1@M"]["unseen:text+image"]
    assert sum(r["F1@M"]["all"] - recipe[s]["F1@M"]["all"] for s, r in rows.items()) / 4 < -0.02


MIX_ROWS = ROOT / "results" / "bench" / "heldout_mix_probe_cpu2.jsonl"
MIX_POSTS = ROOT / "results" / "bench" / "heldout_mix_probe_posts_cpu2.json"


def test_count_posts_on_constructed_generations(posts):
    from mmkp_helpers.bench import heldout_mix

    comp = [ex for ex in posts if ex.meta["needs"] == "composition"]
    target = comp[0].meta["truth"]["colour"]
    same = [ex for ex in comp if ex.meta["truth"]["colour"] == target]
    first, t = same[0], same[0].meta["truth"]
    (left, right), colour_kp = t["primaries"], ri.colour_keyphrase(same[0])
    gens = [{"id": first.id, "prediction": [colour_kp],
             "raw": f"<think>a {left} square on the left and a {right} circle on the right; {left} and {right} make "
                    f"{t['colour']}: {colour_kp}</think>"}]
    gens += [{"id": ex.id, "prediction": [], "raw": "red and red make blue"} for ex in comp[1:]]
    counts = heldout_mix.count_posts(gens, {ex.id: ex for ex in posts}, {target})
    assert counts["posts"] == len(same) and counts["other_posts"] == len(comp) - len(same)
    assert counts["colour_named"] == counts["reads_both"] == 1 and counts["other_colour_named"] == 0
    assert counts["rule_right"] == 1  # its own X and Y make its Z; "red and red make blue" does not
    assert counts["answered"] == {colour_kp: 1}


def test_what_the_heldout_mix_probe_supports():
    """docs/measured_figures.md: with a base that states every mix in words, and the composition posts
    of one mix (green) left out of fine-tuning, neither SFT nor Fine-tune-CoT (with or without
    evidence counterfactuals) names that mix on any test post of any seed: the student's written
    reading of the two shapes is rarely right there, and no rule step reaches the mix."""
    rows = [json.loads(line) for line in MIX_ROWS.read_text().splitlines() if line.strip()]
    cot_tags = ("facts_green", "facts_green_rr50", "facts_green_unordered", "facts_green_unordered_rr50")
    assert sorted((r["method"], r["tag"], r["seed"]) for r in rows) == sorted(
        [("sft", "facts_green", s) for s in range(4)] + [("fine_tune_cot", t, s) for t in cot_tags for s in range(4)])
    assert all(r["overrides"]["heldout_mixes"] == ["green"] and "facts" in r["model_name"] for r in rows)
    report = json.loads(MIX_POSTS.read_text())
    assert report["mixes"] == ["green"] and len(report["runs"]) == 20
    for name, c in report["runs"].items():
        assert c["posts"] == 22 and c["colour_named"] == 0 and c["rule_right"] <= 1, name
        assert c["other_colour_named"] >= 0.4 * c["other_posts"]  # the other mixes are still named
        assert c["reads_both"] <= 6
    base = report["base"]["continuations"]
    assert len(base) == 12 and base["facts_prompt blue+yellow"] == "blue and yellow make green."
    assert all(text.strip().startswith(("purple", "orange", "green")) for k, text in base.items() if k.startswith("in_answer"))


def test_readings_sort_the_misreadings_of_two_colour_pictures(posts):
    from mmkp_helpers.bench import heldout_mix

    two = [ex for ex in posts if ex.meta["needs"] == "composition" and len(set(ex.meta["truth"]["primaries"])) == 2]
    assert len(two) >= 4
    raws = []
    for i, ex in enumerate(two[:5]):
        left, right = ex.meta["truth"]["primaries"]
        raws.append([f"a {left} square on the left and a {right} circle on the right;",
                     f"a {right} square on the left and a {left} circle on the right;",
                     f"a {left} square on the left and a {left} circle on the right;",
                     "the picture is plain grey",
                     "the picture shows the colours {} and {};".format(*sorted((left, right)))][i])
    gens = [{"id": ex.id, "prediction": [], "raw": raw} for ex, raw in zip(two, raws)]
    out = heldout_mix.readings(gens, {ex.id: ex for ex in posts})
    assert {k: out[k] for k in ("posts", "right", "swapped", "one_colour_twice", "no_reading", "other")} == {
        "posts": 5, "right": 2, "swapped": 1, "one_colour_twice": 1, "no_reading": 1, "other": 0}
    assert sum(n for _, n in out["by_pair"].values()) == 5


READINGS = ROOT / "results" / "bench" / "composition_readings_cpu2.json"
UNORDERED = ROOT / "results" / "bench" / "cot_unordered_study_cpu2.jsonl"


def test_what_the_unordered_reading_supports():
    """docs/measured_figures.md: read with sides ("a red square on the left and a yellow circle on
    the right"), the sweep's student gets both colours of a two-colour picture right on at most a
    third of the posts, mostly writing one colour twice; read as a set ("the colours red and
    yellow", the unordered style) it gets them right on at least 90% at every seed. Its answer still
    ignores a changed reading, and it stays below SFT on the composition posts at every seed, on a
    base that knows the mixes in words too (facts_unordered, where SFT on that base is stronger still)."""
    readings = json.loads(READINGS.read_text())["readings"]
    for seed in range(4):
        sided, as_set = readings[f"fine_tune_cot default {seed}"], readings[f"fine_tune_cot unordered {seed}"]
        assert sided["posts"] == as_set["posts"] > 50
        assert sided["right"] <= sided["posts"] / 3 and sided["one_colour_twice"] > sided["right"]
        assert sided["one_colour_twice"] == max(sided[k] for k in ("right", "swapped", "one_colour_twice", "other"))
        assert as_set["right"] >= 0.9 * as_set["posts"]
        assert sum(n for _, n in sided["by_pair"].values()) == sided["posts"]
    runs = {tag: {r["seed"]: r for r in rows} for tag, rows in json.loads(RESULTS.read_text())["runs"].items()}
    for seed, row in runs["unordered"].items():
        comp = row["changed"]["needs:composition"]
        assert row["rationale_style"] == "unordered" and comp["answer_reading"] <= 0.12 * comp["posts"]
    rows = [json.loads(line) for line in UNORDERED.read_text().splitlines() if line.strip()]
    sft = {r["seed"]: r for r in map(json.loads, SWEEP.read_text().splitlines()) if r["method"] == "sft"}
    cot_tags = ("unordered", "unordered_rr50", "facts_unordered", "facts_unordered_rr50")
    assert sorted((r["method"], r["tag"], r["seed"]) for r in rows) == sorted(
        [("fine_tune_cot", t, s) for t in cot_tags for s in range(4)] + [("sft", "facts_unordered", s) for s in range(4)])
    # on the facts base SFT is compared with its own run on that base
    facts_sft = {r["seed"]: r for r in rows if r["method"] == "sft"}
    for r in rows:
        assert r["overrides"]["rationale_style"] == "unordered"
        if r["method"] == "fine_tune_cot":
            on_facts = r["tag"].startswith("facts_")
            reference = facts_sft if on_facts else sft
            for subset in ("needs:composition", "unseen:text+image") if on_facts else ("needs:composition",):
                assert r["F1@M"][subset] < reference[r["seed"]]["F1@M"][subset]


def test_what_the_interventions_on_the_facts_base_and_the_described_style_show():
    """docs/measured_figures.md: on a base that knows every mix in words, the rationale still concludes
    the colour of the picture, not of a changed reading (at most 5% of the composition posts at every
    seed); evidence counterfactuals on that base make the answer follow a changed reading on at least
    40%, but cost the true reading's answer (lower at every seed). The described style, prefilled with
    the true description, answers the true colour on at least 80% of the composition posts at every
    seed (more often than the verbose recipe after its true reading), and still follows a changed
    description on at most 5%; its own descriptions of two-colour pictures are right on at most a third,
    where the base, asked with its caption prompt, reads at least 90% right."""
    report = json.loads(READINGS.read_text())
    base = report["base_captions"]["tiny-qwen2_vl"]  # the default base, asked with its caption prompt
    assert base["right"] >= 0.9 * base["posts"] and base["same_colour_right"] == base["same_colour"] > 50
    for seed in range(4):  # the described style's own descriptions after fine-tuning
        own = report["readings"][f"fine_tune_cot described {seed}"]
        assert own["posts"] == base["posts"] and own["right"] <= own["posts"] / 3
    runs = {tag: {r["seed"]: r for r in rows} for tag, rows in json.loads(RESULTS.read_text())["runs"].items()}
    for seed in range(4):
        facts, facts_rr = runs["facts_unordered"][seed], runs["facts_unordered_rr50"][seed]
        assert facts["model_name"] == facts_rr["model_name"] == "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts"
        changed, true = facts["changed"]["needs:composition"], facts["true"]["needs:composition"]
        assert changed["concludes_reading"] <= 0.05 * changed["posts"]
        rr_changed, rr_true = facts_rr["changed"]["needs:composition"], facts_rr["true"]["needs:composition"]
        assert rr_changed["answer_reading"] >= 0.4 * rr_changed["posts"]
        assert rr_true["answer_reading"] < true["answer_reading"]
        described, verbose = runs["described"][seed], runs["default"][seed]
        assert described["rationale_style"] == "described"
        d_true, v_true = described["true"]["needs:composition"], verbose["true"]["needs:composition"]
        assert d_true["answer_reading"] >= 0.8 * d_true["posts"] and d_true["answer_reading"] > v_true["answer_reading"]
        d_changed = described["changed"]["needs:composition"]
        assert d_changed["answer_reading"] <= 0.05 * d_changed["posts"]


def test_a_heldout_mix_that_is_not_a_colour_is_refused_before_any_work(tmp_path):
    from mmkp_helpers.bench import cot_seeds

    with pytest.raises(ValueError, match=r"heldout_mixes \['teal'\]"):
        cot_seeds.main(["--seeds", "0", "--set", '{"heldout_mixes": ["green", "teal"]}', "--results-dir",
                        str(tmp_path / "results"), "--work", str(tmp_path / "work")])
    assert not (tmp_path / "results").exists()


def test_follows_says_per_post_whether_the_answer_holds_the_changed_readings_colour(posts, teacher):
    """rationale_intervention.follows: per planned post, the answer holds the keyphrase the written
    (changed) reading implies; the post's true colour keyphrase does not count; unplanned posts are
    left out."""
    plan = ri.interventions(posts, teacher)["changed"]
    shaped = [ex for ex in posts if ex.id in plan]
    yes, no = shaped[0], shaped[1]
    gens = [_gen(yes.id, "reads", [plan[yes.id][1]]), _gen(no.id, "reads", [ri.colour_keyphrase(no)])]
    gens += [_gen(ex.id, "reads", []) for ex in shaped[2:]]
    text = [ex for ex in posts if ex.id not in plan]
    got = ri.follows(posts, gens, plan)
    assert got[yes.id] is True and got[no.id] is False and sum(got.values()) == 1
    assert set(got) == {ex.id for ex in shaped} and text and not set(got) & {ex.id for ex in text}


@pytest.mark.parametrize("style", ["verbose", "running", "compact", "described", "unordered"])
def test_a_text_posts_changed_reading_names_another_topic_that_its_text_does_not_hold(posts, style):
    """rationale_intervention.text_interventions: every text post (and no other) gets the oracle's
    rationale up to its reading of the text, with the topic swapped for one its text does not hold;
    the rest of the prefill is the faithful rationale's, and the same seed draws the same topics."""
    import re

    from mmkp_helpers.synthetic import TOPICS
    from mmkp_helpers.teacher.oracle import OracleTeacher

    teacher = OracleTeacher(style=style)
    plan = ri.text_interventions(posts, teacher)
    text = [ex for ex in posts if ex.meta["needs"] == "text"]
    assert set(plan) == {ex.id for ex in text} and text
    for ex in text:
        prefill, topic = plan[ex.id]
        true = ex.meta["truth"]["topic"]
        assert topic in TOPICS and topic != true and topic not in re.findall(r"[a-z]+", ex.text.lower())
        assert prefill.startswith("<think>") and f" {topic}" in prefill and true not in re.findall(r"[a-z]+", prefill)
        faithful = "<think>" + teacher.rationale_and_keyphrases(ex)[0]
        swapped = re.sub(rf"\b{true}\b", topic, faithful)
        assert swapped.startswith(prefill) and len(prefill) < len(swapped)
    assert ri.text_interventions(posts, teacher) == plan
    assert ri.text_interventions(posts, teacher, seed=1) != plan


def test_follows_counts_a_text_post_that_answers_the_written_topic_not_the_texts(posts, teacher):
    plan = ri.text_interventions(posts, teacher)
    text = [ex for ex in posts if ex.id in plan]
    yes, no = text[0], text[1]
    gens = [_gen(yes.id, "reads", [plan[yes.id][1]]), _gen(no.id, "reads", [no.meta["truth"]["topic"]])]
    gens += [_gen(ex.id, "reads", []) for ex in text[2:]]
    assert ri.follows(posts, gens, plan) == {yes.id: True, no.id: False} | {ex.id: False for ex in text[2:]}
