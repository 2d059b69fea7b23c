"""The CoT seed sweep: it runs the notebooks' own settings (its seed 0 runs the committed notebooks'
data and recipe; every method's scores agree to the last digit), its summaries count seeds honestly, and the measured goals are read the
same way notebooks 04 and 05 and the README read them."""
import json
from pathlib import Path

import pytest

from mmkp_helpers import experiment
from mmkp_helpers.bench import cot_seeds

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "results" / "bench" / "cot_seeds_cpu2.jsonl"
#: the sweep of the former default recipe (the base without facts, 400 steps, verbose style, no stranger
#: posts), which the studies below were run against and compared with
FORMER = ROOT / "results" / "bench" / "former_recipe_400" / "cot_seeds_cpu2.jsonl"
RUN = ROOT / "results" / "tiny"


def _rows(path=SWEEP):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _record(notebook, method, variant):
    records = json.loads((RUN / notebook / "metrics.json").read_text())
    return next(r for r in records if r["method"] == method and r["variant"] == variant)


def test_the_sweep_runs_the_notebooks_settings():
    """The recipe every method trains with is built from the notebooks' own parameters cells, and
    the parameters the notebooks share agree."""
    p3, p4, p5 = (experiment.notebook_parameters(nb) for nb in ("03_sft_qlora", "04_fine_tune_cot", "05_dynamic_cot"))
    for k in experiment.RECIPE_PARAMETERS:
        assert p3[k] == p4[k] == p5[k], k
    for k in ("gen_batch_size", "max_new_tokens", "model_name", "prompt_keyphrases"):
        assert p3[k] == p4[k] == p5[k], k
    assert p4["rationale_style"] == p5["rationale_style"] and p4["max_new_tokens_cot"] == p5["max_new_tokens_cot"]
    settings, lora, load = experiment.recipe(p4)
    assert settings.max_steps == p4["max_steps"] and lora["r"] == p4["lora_r"] and load["min_pixels"] == p4["min_pixels"]
    assert {k: p5[k] for k in cot_seeds.POLICY_PARAMETERS}


@pytest.mark.skipif(not (SWEEP.is_file() and (RUN / "05_dynamic_cot" / "metrics.json").is_file()),
                    reason="the committed sweep and results/tiny")
def test_seed_0_of_the_sweep_is_the_notebooks_run():
    """The sweep's seed 0 is what the committed notebooks ran: the same test posts and subsets,
    decodings and budgets for every method, and the same scores to the last digit for every method
    (SFT, Fine-tune-CoT free and forced direct, Dynamic CoT and its replay control): both were made
    on the same machine, and the sweep's workers are fresh processes, as a notebook's kernel is."""
    rows = {(r["method"], r["decoding"]): r for r in _rows() if r["seed"] == 0 and r.get("tag", "default") == "default"}
    pairs = [(("sft", "free"), ("03_sft_qlora", "sft", "text+image")),
             (("fine_tune_cot", "free"), ("04_fine_tune_cot", "fine_tune_cot", "free")),
             (("fine_tune_cot", "forced_direct"), ("04_fine_tune_cot", "fine_tune_cot", "forced_direct")),
             (("dynamic_cot", "auto"), ("05_dynamic_cot", "dynamic_cot", "correct")),
             (("dynamic_replay", "auto"), ("05_dynamic_cot", "dynamic_cot", "replay_control"))]
    for key, where in pairs:
        swept, notebook = rows[key], _record(*where)
        counts = lambda r: {k: (v["n"], v["n_targets"]) for k, v in r["metrics"].items() if isinstance(v, dict)}
        assert counts(swept) == counts(notebook) and swept["decoding"].removeprefix("forced_") == notebook.get("decoding", "free"), key
        if "max_new_tokens" in notebook:  # (notebook 03's records do not name their budget)
            assert swept["max_new_tokens"] == notebook["max_new_tokens"], key
        assert swept["F1@M"] == {k: v["F1@M"] for k, v in notebook["metrics"].items()}, key
        assert swept["gen_tokens_mean"] == pytest.approx(notebook["gen_tokens_mean"]), key
        assert swept["think_share"] == notebook["think_share"], key


@pytest.mark.skipif(not SWEEP.is_file(), reason="the committed sweep")
def test_the_committed_sweep_is_complete_and_summarised():
    rows = _rows()
    seeds = {r["seed"] for r in rows}
    assert seeds >= {0, 1, 2, 3}
    methods = {(r["method"], r["decoding"]) for r in rows}
    assert {("sft", "free"), ("fine_tune_cot", "free"), ("fine_tune_cot", "forced_direct"),
            ("fine_tune_cot_noisy", "free"), ("dynamic_cot", "auto"), ("dynamic_replay", "auto"),
            ("dynamic_permuted", "auto")} <= methods
    s = cot_seeds.summarize(SWEEP)
    assert s["seeds"] >= 4 and s["subsets"]["unseen:text+image"]["keyphrases"] >= 100
    for subset in ("needs:text", "needs:composition"):
        assert s["subsets"][subset]["posts"] > 100
    goal = cot_seeds.goal_fine_tune_cot(s)
    assert goal["checks"]["unseen_higher_seeds"] == (goal["unseen_higher_seeds"] >= 3)
    d = cot_seeds.summarize_dynamic(SWEEP)
    assert len(d["seeds"]) >= 4 and set(d["goal"]["checks"]) == set(cot_seeds.DYNAMIC_GOAL)
    for r in rows:  # the replayed control had exactly the CoT exposure of its Dynamic CoT run
        if r["method"] == "dynamic_replay":
            dyn = next(x for x in rows if x["method"] == "dynamic_cot" and x["seed"] == r["seed"] and x["tag"] == r["tag"])
            assert r["cot_visits"] == dyn["cot_visits"] and r["replay_short_steps"] == 0
    for r in rows:  # each row names the notebook whose settings it ran: the Dynamic CoT runs and controls 05's
        assert r["notebook"] == ("05_dynamic_cot" if r["method"].startswith("dynamic") else "04_fine_tune_cot"), r["method"]


def _line(method, seed, all_f1, unseen, tokens, decoding="free", wf=None, think=0.0, **extra):
    return json.dumps({"method": method, "seed": seed, "decoding": decoding, "tag": "default", "gen_tokens_mean": tokens,
                       "seconds_per_post": 0.01, "think_share": think, "well_formed_share": wf,
                       "think_share_by_subset": extra.pop("by", {"all": think}),
                       "F1@M": {"all": all_f1, "unseen:text+image": unseen},
                       "metrics": {"all": {"n": 10, "n_targets": 30}, "unseen:text+image": {"n": 5, "n_targets": 5}}}
                      | extra)


def test_summaries_and_goals_count_seeds(tmp_path):
    lines = []
    for seed, (sft_u, cot_u, wf) in enumerate([(0.5, 0.6, 0.97), (0.5, 0.62, 0.96), (0.5, 0.45, 0.99), (0.5, 0.7, 0.95)]):
        lines += [_line("sft", seed, 0.80, sft_u, 10), _line("fine_tune_cot", seed, 0.79, cot_u, 50, wf=wf, think=1.0),
                  _line("fine_tune_cot", seed, 0.1, 0.0, 20, decoding="forced_direct"),
                  _line("dynamic_cot", seed, 0.80, cot_u - 0.01, 20, decoding="auto", think=0.3,
                        by={"all": 0.3, "needs:text": 0.1, "needs:composition": 0.8}),
                  _line("dynamic_replay", seed, 0.78 if seed != 1 else 0.81, 0.5, 22, decoding="auto", think=0.3)]
    path = tmp_path / "sweep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    s = cot_seeds.summarize(path)
    u = s["subsets"]["unseen:text+image"]
    assert s["seeds"] == 4 and u["method_higher"] == 3 and u["diff_mean"] == pytest.approx((0.1 + 0.12 - 0.05 + 0.2) / 4)
    assert s["well_formed_share"]["min"] == 0.95 and s["subsets"]["all"]["posts"] == 10
    goal = cot_seeds.goal_fine_tune_cot(s)
    assert goal["met"] and goal["checks"] == dict.fromkeys(cot_seeds.GOAL, True)
    d = cot_seeds.summarize_dynamic(path)
    v = d["goal"]["values"]
    assert v["think_share"] == 0.3 and v["composition_over_text"] == pytest.approx(8.0)
    assert v["tokens_ratio"] == pytest.approx(0.4) and v["above_control_seeds"] == 3
    assert v["f1m_minus_best_baseline"] == pytest.approx(0.0) and d["goal"]["met"]
    path.write_text("\n".join(lines[:-5]) + "\n")  # three seeds only: a 3-of-4 count cannot be met
    assert not cot_seeds.goal_fine_tune_cot(cot_seeds.summarize(path))["checks"]["unseen_higher_seeds"]


@pytest.mark.skipif(not SWEEP.is_file(), reason="the committed sweep")
def test_what_the_committed_sweep_supports():
    """The findings notebooks 04 and 05 and the README state, as the committed 4-seed sweep of the
    default recipe has them (docs/measured_figures.md): Fine-tune-CoT's rationales are well-formed on
    at least 97% of the posts on every seed, all of the text posts' and under 95% of the composition
    posts'; it is level with SFT over all keyphrases and above it on
    the held-out pairs on 4 of 4 seeds, but by less than +0.05, which SFT leaves no room for (it is
    within 0.05 of the ceiling there and within 0.02 on the composition posts); reasoning costs over
    5x the tokens. Dynamic CoT (notebook 05's default, the correct label) reasons on 2 seeds of 4, on
    text posts far more than on composition posts: within 0.01 of the better baseline at under half of
    Fine-tune-CoT's tokens, more than 0.02 below Fine-tune-CoT on the held-out pairs, above its
    exposure-matched control on 1 of 4 seeds. With the benefit label (the rows tagged `benefit`) it
    reasons on 1 seed of 4 only (and then on most posts, on every text post and fewer composition
    posts), more than 0.01 below the better baseline, above its control on 2 of 4 seeds."""
    s = cot_seeds.summarize(SWEEP)
    goal = cot_seeds.goal_fine_tune_cot(s)
    assert goal["well_formed_min"] >= 0.97 and goal["checks"]["well_formed_min"]
    # ... but over all posts only: the text posts' template rationales are always well-formed, while on
    # the composition posts, where a step is needed, the share is below 95% on every seed
    kinds = s["well_formed_share_by_kind"]
    assert kinds["needs:text"]["min"] == 1.0 and kinds["needs:text"]["posts"] == 212
    assert kinds["needs:composition"]["posts"] == 146 and 0.9 <= kinds["needs:composition"]["min"]
    assert max(kinds["needs:composition"]["by_seed"]) < cot_seeds.GOAL["well_formed_min"]
    assert goal["checks"]["all_diff_mean"] and abs(goal["all_diff_mean"]) < 0.005
    assert goal["unseen_higher_seeds"] == 4 and 0 < goal["unseen_gain_mean"] < 0.05 and not goal["met"]
    unseen, comp = s["subsets"]["unseen:text+image"], s["subsets"]["needs:composition"]
    assert unseen["diff_min"] > 0 and 1 - unseen["sft_mean"] < cot_seeds.GOAL["unseen_gain_mean"]  # no room for +0.05
    assert 1 - comp["sft_mean"] < 0.02
    assert s["gen_tokens_mean"]["fine_tune_cot"] > 5 * s["gen_tokens_mean"]["sft"]
    d = cot_seeds.summarize_dynamic(SWEEP)
    v, checks = d["goal"]["values"], d["goal"]["checks"]
    assert checks["think_share"] and checks["f1m_minus_best_baseline"] and checks["tokens_ratio"]
    assert not checks["composition_over_text"] and not checks["unseen_minus_fine_tune_cot"] and not d["goal"]["met"]
    assert v["above_control_seeds"] == 1 and v["composition_over_text"] < 0.1
    by_seed = [r["think_share"] for r in _rows() if r["method"] == "dynamic_cot" and r.get("tag", "default") == "default"]
    assert len(by_seed) == 4 and sum(t > 0 for t in by_seed) == 2
    b = cot_seeds.summarize_dynamic(SWEEP, tag="benefit")
    v, checks = b["goal"]["values"], b["goal"]["checks"]
    assert b["seeds"] == [0, 1, 2, 3] and checks["tokens_ratio"] and v["above_control_seeds"] == 2
    assert not checks["f1m_minus_best_baseline"] and not checks["composition_over_text"] and not b["goal"]["met"]
    benefit = [r for r in _rows() if r["method"] == "dynamic_cot" and r["tag"] == "benefit"]
    assert all(r["policy"]["variant"] == "benefit" for r in benefit)
    by_seed = [r["think_share"] for r in benefit]
    assert len(by_seed) == 4 and sum(t > 0 for t in by_seed) == 1 and max(by_seed) > 0.5  # one seed reasons, on most posts
    reasoned = next(r["think_share_by_subset"] for r in benefit if r["think_share"] > 0)
    assert reasoned["needs:text"] == 1.0 > reasoned["needs:composition"]


SWEEP_POSTS = ROOT / "results" / "bench" / "cot_seeds_per_post_cpu2.json"


def test_the_sweeps_student_gives_sfts_answer():
    """What the committed sweep's post-by-post counts support (notebook 04, the README): on every
    seed Fine-tune-CoT's answer line is SFT's, keyphrase for keyphrase, on more than 96% of the test
    posts and on over 90% of the composition posts; its text and image posts' generations are
    mostly copies (fewer than 60% distinct texts; one text written on 25 posts or more), while
    nearly every composition post gets a text of its own (over 85% distinct, none on more than 2)."""
    seeds = json.loads(SWEEP_POSTS.read_text())
    assert sorted(seeds) == ["0", "1", "2", "3"]
    for groups in seeds.values():
        kinds = [groups[f"needs:{k}"] for k in ("text", "image", "composition")]
        assert sum(g["same_answer"] for g in kinds) / sum(g["posts"] for g in kinds) > 0.96
        text, image, comp = kinds
        assert comp["same_answer"] / comp["posts"] > 0.9 and text["same_answer"] / text["posts"] > 0.98
        for g in (text, image):
            assert g["distinct"] < 0.6 * g["posts"] and g["largest"] >= 25
        assert comp["distinct"] > 0.85 * comp["posts"] and comp["largest"] <= 2


def test_the_sweeps_student_does_not_read_the_shape_it_names():
    """What the committed sweep's post-by-post counts support (notebook 04, section 10): the
    Fine-tune-CoT student names a shape in every image post's rationale, but the shape it names
    does not follow the picture. On no seed is it more than 2 points likelier to name "square" on
    a square picture than on a circle picture, and on every seed it names the true shape on fewer
    image posts than naming the test pictures' more frequent shape every time would. (Its rationales
    are well-formed all the same: format, not reading.)"""
    seeds = json.loads(SWEEP_POSTS.read_text())
    assert sorted(seeds) == ["0", "1", "2", "3"]
    for groups in seeds.values():
        image = groups["needs:image"]
        first = image["first_shape"]
        assert image["names_shapes"] == image["posts"] == sum(sum(n.values()) for n in first.values())
        share_square = {true: n.get("square", 0) / sum(n.values()) for true, n in first.items()}
        assert share_square["square"] - share_square["circle"] < 0.02
        frequent = max(sum(n.values()) for n in first.values())
        assert image["shapes_right"] < frequent
        assert groups["needs:text"]["names_shapes"] == 0


@pytest.mark.skipif(not FORMER.is_file(), reason="the former recipe's sweep")
def test_what_the_former_recipes_sweep_supported():
    """What the former default recipe's 4-seed sweep showed (docs/measured_figures.md; the studies were
    compared with it): on the 2-layer tiny student Fine-tune-CoT keeps SFT's overall F1@M
    (within 0.02 on average) but is below it on every seed where reasoning was meant to help (the
    held-out pairs and the composition posts), while above it on the text posts on 3 of 4 seeds; its
    rationales are mostly but not 95% well-formed, and reasoning costs over 4x the tokens. Dynamic CoT
    reasons on 3 of 4 seeds, mostly on text posts (not on the composition posts), spends under half of
    Fine-tune-CoT's tokens, falls more than 0.01 below the better baseline and beats its
    exposure-matched replay control on 2 of 4 seeds only."""
    s = cot_seeds.summarize(FORMER)
    goal = cot_seeds.goal_fine_tune_cot(s)
    assert not goal["met"] and goal["checks"]["all_diff_mean"]
    assert goal["unseen_higher_seeds"] == 0 and goal["unseen_gain_mean"] < -0.05
    comp, text = s["subsets"]["needs:composition"], s["subsets"]["needs:text"]
    assert comp["method_higher"] == 0 and comp["diff_mean"] < 0 and text["method_higher"] == 3 and text["diff_mean"] > 0
    assert 0.7 <= goal["well_formed_min"] < 0.95 and not goal["checks"]["well_formed_min"]
    assert s["gen_tokens_mean"]["fine_tune_cot"] > 4 * s["gen_tokens_mean"]["sft"]
    d = cot_seeds.summarize_dynamic(FORMER)
    v, checks = d["goal"]["values"], d["goal"]["checks"]
    assert checks["tokens_ratio"] and checks["think_share"] and checks["unseen_minus_fine_tune_cot"]
    assert not checks["above_control_seeds"] and v["above_control_seeds"] == 2
    assert not checks["composition_over_text"] and v["composition_over_text"] < 0.5
    assert not checks["f1m_minus_best_baseline"] and not d["goal"]["met"]
    by_seed = [r["think_share"] for r in _rows(FORMER) if r["method"] == "dynamic_cot" and r.get("tag", "default") == "default"]
    assert min(by_seed) == 0 < max(by_seed) and sum(t > 0 for t in by_seed) == 3  # it reasons on 3 seeds of 4


STYLES = ROOT / "results" / "bench" / "cot_styles_cpu2.jsonl"


@pytest.mark.skipif(not (STYLES.is_file() and FORMER.is_file()), reason="the committed style study and sweep")
def test_what_the_style_study_supports():
    """docs/measured_figures.md's style study: the running, compact and described rows ran the
    notebooks' settings with only the rationale style changed; the verbose rows are the sweep's. No
    style reaches 95% well-formed on any seed; verbose, running and compact are below SFT on the
    held-out pairs at every seed; compact is the least often well-formed, at the fewest tokens. The
    described style (the picture's description first) scores higher than verbose on the composition
    posts and the held-out pairs at every seed and is the closest to SFT there, yet below it on average."""
    sweep = _rows(FORMER)
    sft = {r["seed"]: r for r in sweep if r["method"] == "sft"}
    rows = {"verbose": [r for r in sweep if r["method"] == "fine_tune_cot" and r["decoding"] == "free"]}
    for r in (json.loads(line) for line in STYLES.read_text().splitlines() if line.strip()):
        assert r["rationale_style"] == r["tag"] and r["decoding"] == "free" and r["steps"] == 400
        rows.setdefault(r["tag"], []).append(r)
    assert set(rows) == {"verbose", "running", "compact", "described"}
    mean = lambda style, f: sum(map(f, rows[style])) / len(rows[style])
    for style, runs in rows.items():
        assert sorted(r["seed"] for r in runs) == [0, 1, 2, 3], style
        assert max(r["well_formed_share"] for r in runs) < 0.95, style
        if style != "described":
            assert all(r["F1@M"]["unseen:text+image"] < sft[r["seed"]]["F1@M"]["unseen:text+image"] for r in runs), style
    wf = {s: mean(s, lambda r: r["well_formed_share"]) for s in rows}
    tokens = {s: mean(s, lambda r: r["gen_tokens_mean"]) for s in rows}
    assert min(wf, key=wf.get) == "compact"
    assert min(tokens, key=tokens.get) == "compact" and tokens["compact"] < 0.7 * tokens["verbose"]
    assert abs(wf["verbose"] - wf["running"]) < 0.03
    verbose = {r["seed"]: r for r in rows["verbose"]}
    for subset in ("needs:composition", "unseen:text+image"):
        assert all(r["F1@M"][subset] > verbose[r["seed"]]["F1@M"][subset] for r in rows["described"]), subset
        gap = {s: mean(s, lambda r: r["F1@M"][subset] - sft[r["seed"]]["F1@M"][subset]) for s in rows}
        assert max(gap, key=gap.get) == "described" and -0.05 < gap["described"] < 0, (subset, gap)
    assert sum(r["F1@M"]["unseen:text+image"] > sft[r["seed"]]["F1@M"]["unseen:text+image"]
               for r in rows["described"]) == 1  # above SFT there on one seed of four


def test_per_post_counts_where_the_method_scores_higher(tmp_path):
    """Post by post, per seed and group of posts (kind, and account seen in training or not): higher,
    lower, posts, both mean post F1s and the well-formed rationales (from a sweep's generation files)."""
    from mmkp_helpers import data, overlap, reading

    splits = overlap.prepare_splits("synthetic", tmp_path / "r", seed=0, verbose=False)["clean"]
    test = data.read_jsonl(splits["test"])
    seen = reading.accounts(data.read_jsonl(splits["train"]))
    text_ids = {ex.id for ex in test if ex.meta["needs"] == "text"}

    def write(name, predict, think=False):
        folder = tmp_path / "work" / name
        folder.mkdir(parents=True)
        lines = []
        for ex in test:
            kps = predict(ex)
            answer = "Keyphrases: " + "; ".join(kps)
            raw = f"<think>the post names {', '.join(kps) or 'nothing'}: {', '.join(kps)}.</think>\n{answer}" if think else answer
            lines.append(json.dumps({"id": ex.id, "prediction": kps, "raw": raw, "hit_limit": False}) + "\n")
        (folder / "generations-free.jsonl").write_text("".join(lines))

    write("sft-default-0", lambda ex: list(ex.keyphrases)[:1])
    write("fine_tune_cot-default-0", lambda ex: list(ex.keyphrases) if ex.id in text_ids else [], think=True)
    counts = cot_seeds.per_post(tmp_path / "work", tmp_path / "r")[0]
    n = {k: sum(ex.meta["needs"] == k.split(":")[1] for ex in test) for k in counts if k.startswith("needs:")}
    many = sum(len(ex.keyphrases) > 1 for ex in test if ex.id in text_ids)
    text, comp = counts["needs:text"], counts["needs:composition"]
    assert (text["higher"], text["lower"], text["posts"], text["fine_tune_cot"]) == (many, 0, n["needs:text"], 1.0)
    assert (comp["higher"], comp["lower"], comp["posts"], comp["fine_tune_cot"]) == (0, n["needs:composition"],
                                                                                     n["needs:composition"], 0.0)
    # every generation opened <think>; the empty answers of the composition posts are not well-formed
    assert text["opened"] == text["well_formed"] == n["needs:text"] and comp["well_formed"] == 0
    # SFT's answer (its first keyphrase) where a text post has one keyphrase; one empty template for
    # every composition post, never SFT's answer
    assert text["same_answer"] == n["needs:text"] - many and comp["same_answer"] == 0
    assert (comp["distinct"], comp["largest"]) == (1, n["needs:composition"])
    assert text["distinct"] == len({tuple(ex.keyphrases) for ex in test if ex.id in text_ids})
    # the account groups partition the test posts; the clean split leaves one account's posts all in test
    groups = {g: sum(reading.account_group(ex, seen) == g for ex in test) for g in ("signed:seen", "signed:unseen",
                                                                                  "unsigned")}
    assert {g: counts[g]["posts"] for g in groups if g in counts} == {g: k for g, k in groups.items() if k}
    assert sum(groups.values()) == len(test) and groups["signed:unseen"] > 0
    assert all(reading.account_group(ex, seen) != "signed:unseen" for ex in data.read_jsonl(splits["train"]))


STUDENTS = ROOT / "results" / "bench" / "cot_student_study_cpu2.jsonl"


@pytest.mark.skipif(not STUDENTS.is_file(), reason="the committed student study")
def test_what_the_student_study_supports():
    """docs/measured_figures.md: with 4 language layers Fine-tune-CoT is above SFT over all keyphrases
    on 3 of 4 seeds but above it on the held-out pairs on 1 only, and under 95% well-formed; the
    2-layer base pretrained twice as long leaves it below SFT on both seeds run."""
    rows = [json.loads(line) for line in STUDENTS.read_text().splitlines() if line.strip()]
    by = {(r["tag"], r["method"], r["seed"]): r for r in rows}
    higher = lambda tag, subset, seeds: sum(by[(tag, "fine_tune_cot", s)]["F1@M"][subset] >
                                            by[(tag, "sft", s)]["F1@M"][subset] for s in seeds)
    assert {r["model_name"] for r in rows if r["tag"] == "layers4"} == {"tiny-qwen2_vl?layers=4"}
    assert higher("layers4", "all", range(4)) == 3 and higher("layers4", "unseen:text+image", range(4)) == 1
    assert max(by[("layers4", "fine_tune_cot", s)]["well_formed_share"] for s in range(4)) < 0.95
    assert higher("pretrain2400", "all", range(2)) == 0 and higher("pretrain2400", "unseen:text+image", range(2)) == 0


FAITHFULNESS = ROOT / "results" / "bench" / "cot_faithfulness_study_cpu2.jsonl"
PROBES = ROOT / "results" / "bench" / "cot_recipe_probes_cpu2.jsonl"


@pytest.mark.skipif(not (FAITHFULNESS.is_file() and FORMER.is_file()), reason="the committed faithfulness study")
def test_what_the_faithfulness_study_supports():
    """docs/measured_figures.md: neither counterfactual rationales (SCOTT, mmkp_helpers.counterfactual) nor
    weighting the answer line makes the student's answers follow its rationales: every setting is less
    often well-formed on average than the notebooks' recipe, none reaches 95% on every seed, and none is
    above SFT on the held-out pairs on any seed."""
    out = cot_seeds.study(FAITHFULNESS, FORMER)
    assert {tag: d["overrides"] for tag, d in out.items()} == {
        "recipe": {}, "cf20": {"counterfactual_share": 0.2}, "cf50": {"counterfactual_share": 0.5},
        "aw4": {"answer_weight": 4.0}, "aw025": {"answer_weight": 0.25}}
    for tag, d in out.items():
        assert d["seeds"] == [0, 1, 2, 3] and d["well_formed_min"] < 0.95 and d["unseen_higher_seeds"] == 0, tag
        if tag != "recipe":
            assert d["well_formed_mean"] < out["recipe"]["well_formed_mean"], tag
            assert d["f1m_mean"] < out["recipe"]["f1m_mean"] and d["f1m_minus_sft_mean"] < 0, tag
    rows = [json.loads(line) for line in FAITHFULNESS.read_text().splitlines() if line.strip()]
    assert all(r["decoding"] == "free" and r["steps"] == 400 and r["rationale_style"] == "verbose" for r in rows)


@pytest.mark.skipif(not (PROBES.is_file() and FORMER.is_file()), reason="the committed single-seed probes")
def test_the_recipe_probes_are_below_the_recipe_at_seed_0():
    """docs/measured_figures.md's single-seed probes (not a claim about the methods): at seed 0 a lower or
    higher learning rate, a smaller LoRA scale, a smaller or larger LoRA rank (same scale) and the compact
    rationale style on a 4-layer base each leave fewer rationales well-formed than the recipe."""
    out = cot_seeds.study(PROBES, FORMER)
    assert {tag: d["overrides"] for tag, d in out.items()} == {
        "recipe": {}, "lr3e-4": {"learning_rate": 0.0003}, "alpha64": {"lora_alpha": 64},
        "lr2e-3": {"learning_rate": 0.002}, "r8": {"lora_r": 8, "lora_alpha": 32},
        "r128": {"lora_r": 128, "lora_alpha": 512},
        "compact_layers4": {"rationale_style": "compact", "model_name": "tiny-qwen2_vl?layers=4"}}
    recipe_seed0 = [r for r in _rows(FORMER) if r["method"] == "fine_tune_cot" and r["decoding"] == "free" and r["seed"] == 0]
    for tag, d in out.items():
        if tag != "recipe":
            assert d["seeds"] == [0] and d["well_formed_mean"] < recipe_seed0[0]["well_formed_share"], tag


RANK = ROOT / "results" / "bench" / "cot_rank_study_cpu2.jsonl"


@pytest.mark.skipif(not (RANK.is_file() and FORMER.is_file()), reason="the committed rank study")
def test_what_the_rank_study_supports():
    """docs/measured_figures.md: with LoRA rank 128 (alpha 512, the recipe's scale) for both methods,
    Fine-tune-CoT's gaps to SFT on the composition posts and the held-out pairs are under 0.6 of the
    recipe's (-0.043 against -0.107, -0.105 against -0.199), but it is above SFT there on 1 seed of 4 only, and fewer of its rationales are well-formed."""
    rows = [json.loads(line) for line in RANK.read_text().splitlines() if line.strip()]
    assert all(r["overrides"] == {"lora_r": 128, "lora_alpha": 512} and r["steps"] == 400 for r in rows)
    by = {(r["method"], r["seed"]): r for r in rows}
    recipe = {(r["method"], r["seed"]): r for r in _rows(FORMER) if r["method"] in ("sft", "fine_tune_cot")
              and r.get("decoding", "free") == "free"}

    def gap(table, subset):
        return [table[("fine_tune_cot", s)]["F1@M"][subset] - table[("sft", s)]["F1@M"][subset] for s in range(4)]

    for subset in ("needs:composition", "unseen:text+image"):
        ranked, base = gap(by, subset), gap(recipe, subset)
        assert sum(g > 0 for g in ranked) == 1 and sum(ranked) / 4 < 0
        assert sum(base) < sum(ranked) < 0 and abs(sum(ranked)) < 0.6 * abs(sum(base))  # under 0.6 of the recipe's gap
    wf = [by[("fine_tune_cot", s)]["well_formed_share"] for s in range(4)]
    base_wf = [recipe[("fine_tune_cot", s)]["well_formed_share"] for s in range(4)]
    assert max(wf) < 0.95 and sum(wf) < sum(base_wf)


STEPS = ROOT / "results" / "bench" / "cot_steps_study_cpu2.jsonl"
PER_POST = {"cot_seeds": FORMER.parent / "cot_seeds_per_post_cpu2.json",
            "cot_steps_study": ROOT / "results" / "bench" / "cot_steps_study_per_post_cpu2.json"}


@pytest.mark.skipif(not (STEPS.is_file() and FORMER.is_file() and all(p.is_file() for p in PER_POST.values())),
                    reason="the committed steps study and the per-post files")
def test_what_the_steps_study_supports():
    """docs/measured_figures.md: with twice the steps (800) for both methods, Fine-tune-CoT is level with
    SFT over all keyphrases and more of its rationales are well-formed than with the recipe's 400,
    but it is below SFT on the composition posts and the held-out pairs on every seed. Post by post
    (the --per-post files, which agree with the rows), the rationales that are not well-formed
    concentrate on the posts signed by an account no training post has, and on the other posts
    Fine-tune-CoT stays below SFT."""
    rows = [json.loads(line) for line in STEPS.read_text().splitlines() if line.strip()]
    assert all(r["overrides"] == {"max_steps": 800} and r["steps"] == 800 for r in rows)
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted((m, s) for m in ("sft", "fine_tune_cot")
                                                                    for s in range(4))
    steps, recipe = cot_seeds.summarize(STEPS), cot_seeds.summarize(FORMER)
    assert steps["seeds"] == recipe["seeds"] == 4
    assert abs(steps["subsets"]["all"]["diff_mean"]) <= 0.02
    assert recipe["subsets"]["all"]["diff_mean"] < 0 < steps["subsets"]["all"]["diff_mean"]
    for subset in ("needs:composition", "unseen:text+image"):
        assert steps["subsets"][subset]["method_higher"] == 0 and steps["subsets"][subset]["diff_max"] < 0
        assert recipe["subsets"][subset]["diff_mean"] < steps["subsets"][subset]["diff_mean"]  # the gap narrows
    wf, base_wf = steps["well_formed_share"], recipe["well_formed_share"]
    assert base_wf["mean"] < wf["mean"] and wf["min"] < 0.95
    # the per-post files are the rows' generations: the well-formed counts give each row's share
    per = {name: json.loads(path.read_text()) for name, path in PER_POST.items()}
    for name, file in (("cot_steps_study", STEPS), ("cot_seeds", FORMER)):
        shares = {r["seed"]: r["well_formed_share"] for r in map(json.loads, file.read_text().splitlines())
                  if r["method"] == "fine_tune_cot" and r.get("decoding", "free") == "free"}
        for seed, groups in per[name].items():
            assert sum(g["well_formed"] for k, g in groups.items() if k.startswith("needs:")) == round(
                shares[int(seed)] * 540)
            assert groups["signed:unseen"]["posts"] + groups["unsigned"]["posts"] == 540
    share = lambda g: g["well_formed"] / g["posts"]  # noqa: E731
    for seed in map(str, range(4)):
        s, r = per["cot_steps_study"][seed], per["cot_seeds"][seed]
        assert share(r["unsigned"]) < share(s["unsigned"]) < 0.95 and share(s["signed:unseen"]) < share(s["unsigned"])
        assert s["signed:unseen"]["fine_tune_cot"] > s["signed:unseen"]["sft"]  # tags it does not guess
    below = sum(per["cot_steps_study"][s]["unsigned"]["fine_tune_cot"] < per["cot_steps_study"][s]["unsigned"]["sft"]
                for s in map(str, range(4)))
    assert below == 3


STEPS1200 = ROOT / "results" / "bench" / "cot_steps1200_probe_cpu2.jsonl"
STEPS1200_POSTS = ROOT / "results" / "bench" / "cot_steps1200_probe_per_post_cpu2.json"


@pytest.mark.skipif(not (STEPS1200.is_file() and STEPS1200_POSTS.is_file()), reason="the committed 1,200-step probe")
def test_the_1200_step_probe():
    """docs/measured_figures.md's probe at seed 0 (not a claim about the methods): at 1,200 steps for both
    methods, 95% or more of the rationales on posts not signed by an unseen account are well-formed,
    about half on those that are, and SFT is still higher on the composition posts and the held-out pairs."""
    rows = {r["method"]: r for r in map(json.loads, STEPS1200.read_text().splitlines())}
    assert set(rows) == {"sft", "fine_tune_cot"} and all(r["steps"] == 1200 and r["seed"] == 0 for r in rows.values())
    groups = json.loads(STEPS1200_POSTS.read_text())["0"]
    assert sum(g["well_formed"] for k, g in groups.items() if k.startswith("needs:")) == round(
        rows["fine_tune_cot"]["well_formed_share"] * 540)
    unsigned, unseen = groups["unsigned"], groups["signed:unseen"]
    assert unsigned["well_formed"] / unsigned["posts"] >= 0.95 > rows["fine_tune_cot"]["well_formed_share"]
    assert 0.4 < unseen["well_formed"] / unseen["posts"] < 0.6
    for subset in ("needs:composition", "unseen:text+image"):
        assert rows["sft"]["F1@M"][subset] > rows["fine_tune_cot"]["F1@M"][subset]


STRANGERS = ROOT / "results" / "bench" / "cot_stranger_study_cpu2.jsonl"
STRANGERS_POSTS = ROOT / "results" / "bench" / "cot_stranger_study_per_post_cpu2.json"
FACTS = {"model_name": "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts", "max_steps": 800,
         "rationale_style": "running"}


def test_what_the_stranger_study_supports():
    """docs/measured_figures.md: on the facts base with 800 steps and running-style rationales, the
    rationales that are not well-formed on the worst seed are the posts of the two accounts no
    training post shows; a larger learning rate or answer counterfactuals leave some seed below
    95%. Stranger posts (every signed training post also signed by a name of no account, without
    tags, for both methods) make Fine-tune-CoT well-formed on at least 97% of all posts on every
    seed: on the unseen accounts' posts neither method answers a tag, Fine-tune-CoT is level with
    SFT over all keyphrases and higher on the held-out pairs on every seed, but by less than +0.05
    (SFT's score leaves less than that below the ceiling). The student does not read the account's
    name: its rationale never writes the post's own signature."""
    rows = [json.loads(line) for line in STRANGERS.read_text().splitlines() if line.strip()]
    by_tag: dict = {}
    for r in rows:
        assert r["steps"] == 800 and r["decoding"] == "free" and {k: r["overrides"][k] for k in FACTS} == FACTS
        by_tag.setdefault((r["tag"], r["method"]), {})[r["seed"]] = r
    extra = {"facts_running_steps800_lr2e-3": {"learning_rate": 0.002},
             "facts_running_steps800_cf20": {"counterfactual_share": 0.2},
             "facts_running_steps800_strangerposts50": {"stranger_share": 0.5},
             "facts_running_steps800_strangerposts100": {"stranger_share": 1.0}}
    assert set(by_tag) == {(t, "fine_tune_cot") for t in extra} | {("facts_running_steps800_strangerposts100", "sft")}
    for (tag, _), runs in by_tag.items():
        assert sorted(runs) == [0, 1, 2, 3] and all(r["overrides"] == FACTS | extra[tag] for r in runs.values())
    wf = {tag: [by_tag[(tag, "fine_tune_cot")][s]["well_formed_share"] for s in range(4)] for tag in extra}
    for tag in ("facts_running_steps800_lr2e-3", "facts_running_steps800_cf20", "facts_running_steps800_strangerposts50"):
        assert min(wf[tag]) < 0.95, tag
    assert min(wf["facts_running_steps800_strangerposts100"]) >= 0.97
    # where the misses were: the unseen accounts' posts on the worst seed of each probe without strangers
    for tag in ("facts_running_steps800_lr2e-3", "facts_running_steps800_cf20"):
        worst = min(range(4), key=lambda s: wf[tag][s])
        reading = by_tag[(tag, "fine_tune_cot")][worst]["rationale_reading"]
        assert reading["signed:unseen"]["well_formed"] < reading["unsigned"]["well_formed"]
    # with stranger posts: Fine-tune-CoT against SFT, both trained on them
    s = cot_seeds.summarize(STRANGERS, tag="facts_running_steps800_strangerposts100")
    goal = cot_seeds.goal_fine_tune_cot(s)
    assert s["seeds"] == 4 and s["subsets"]["unseen:text+image"]["keyphrases"] >= 100
    assert goal["checks"] == {"unseen_higher_seeds": True, "unseen_gain_mean": False, "all_diff_mean": True,
                              "well_formed_min": True}
    unseen = s["subsets"]["unseen:text+image"]
    assert unseen["method_higher"] == 4 and 0 < unseen["diff_mean"] < 0.05 and 1 - unseen["sft_mean"] < 0.05
    per = json.loads(STRANGERS_POSTS.read_text())
    for seed, groups in per.items():
        assert sum(g["well_formed"] for k, g in groups.items() if k.startswith("needs:")) == round(
            wf["facts_running_steps800_strangerposts100"][int(seed)] * 540)
        u = groups["signed:unseen"]
        assert u["posts"] == 117 and u["well_formed"] >= 116 and u["tagged_fine_tune_cot"] == u["tagged_sft"] == 0
        assert u["own_signature"] == 0


STRANGERS_VERBOSE = ROOT / "results" / "bench" / "cot_stranger_verbose_cpu2.jsonl"


def test_stranger_posts_with_the_notebooks_verbose_style():
    """docs/measured_figures.md: with the verbose style instead of the running one (the same base, steps
    and stranger posts), Fine-tune-CoT is still well-formed on at least 95% of the posts on every seed,
    but below the SFT of the study (trained on the same posts; SFT reads no rationale, so its style does
    not matter) over all keyphrases on every seed, and above it on the held-out pairs on fewer seeds
    than the running style (4 of 4)."""
    rows = {r["seed"]: r for r in map(json.loads, STRANGERS_VERBOSE.read_text().splitlines())}
    assert sorted(rows) == [0, 1, 2, 3]
    for r in rows.values():
        assert r["method"] == "fine_tune_cot" and r["decoding"] == "free" and r["steps"] == 800
        assert r["overrides"] == FACTS | {"rationale_style": "verbose", "stranger_share": 1.0}
        assert r["well_formed_share"] >= 0.95
    sft = {r["seed"]: r for r in map(json.loads, STRANGERS.read_text().splitlines())
           if r["method"] == "sft" and r["tag"] == "facts_running_steps800_strangerposts100"}
    assert all(rows[s]["F1@M"]["all"] < sft[s]["F1@M"]["all"] for s in range(4))
    higher = sum(rows[s]["F1@M"]["unseen:text+image"] > sft[s]["F1@M"]["unseen:text+image"] for s in range(4))
    assert higher < 4


@pytest.mark.skipif(not (STRANGERS.is_file() and SWEEP.is_file()), reason="the committed stranger study and sweep")
def test_the_default_recipe_is_the_stranger_studys_setting():
    """The notebooks' defaults are the stranger study's `stranger_share` 1.0 setting (the facts base,
    800 steps, running style), so that setting's rows are the sweep's free decodings of SFT and
    Fine-tune-CoT, seed by seed, to the last digit (the study was run before the switch, with the
    facts base named by its options)."""
    from mmkp_helpers import tiny_base

    study = {(r["method"], r["seed"]): r for r in _rows(STRANGERS) if r["tag"] == "facts_running_steps800_strangerposts100"}
    sweep = {(r["method"], r["seed"]): r for r in _rows() if r["method"] in ("sft", "fine_tune_cot") and r["decoding"] == "free"}
    assert set(study) == set(sweep) and len(sweep) == 8
    for key, row in study.items():
        assert row["F1@M"] == sweep[key]["F1@M"] and row["well_formed_share"] == sweep[key]["well_formed_share"], key
        assert row["gen_tokens_mean"] == sweep[key]["gen_tokens_mean"], key
    p4 = experiment.notebook_parameters("04_fine_tune_cot")
    knobs = study[("fine_tune_cot", 0)]["overrides"]
    assert {k: p4[k] for k in ("max_steps", "rationale_style", "stranger_share")} == {
        k: knobs[k] for k in ("max_steps", "rationale_style", "stranger_share")}
    assert tiny_base.parse_name(p4["model_name"]) == tiny_base.parse_name(knobs["model_name"])


CORRECT = ROOT / "results" / "bench" / "dynamic_correct_study_cpu2.jsonl"


def test_what_the_label_comparison_supports():
    """docs/measured_figures.md and notebook 05's label comparison, on the default benchmark (4 seeds,
    notebook 05's settings, each label with its replay and permuted controls). Labelled by decoded
    correctness (`correct`, the default), q tells where forced thinking helps far better than with
    the benefit label (mean AUC over 0.75 against about 0.5, above the benefit run's on every seed) and
    spreads over 3x wider, while its replay and permuted controls' q (the same CoT exposure, on random
    posts or with the labels shuffled) tell it little better than chance; the model reasons on 2 of 4
    seeds, mostly on text posts; above its permuted control on 1 seed of 4. The sweep's default rows are the correct-label study's, run before the
    switch with other job and thread counts, in every field but the timings."""
    rows = [r for r in _rows() if r.get("tag", "default") == "default" and r["method"].startswith("dynamic")]
    studied = [json.loads(line) for line in CORRECT.read_text().splitlines() if line.strip()]
    studied = {(r["method"], r["seed"]): r for r in studied if r["tag"] == "correct"}
    assert len(rows) == len(studied) == 12
    same = lambda x: {k: v for k, v in x.items() if k not in ("tag", "train_s", "threads", "seconds_per_post")}  # noqa: E731
    for r in rows:
        assert same(r) == same(studied[(r["method"], r["seed"])]), (r["method"], r["seed"])
    d = cot_seeds.summarize_dynamic(SWEEP)
    assert d["seeds"] == [0, 1, 2, 3] and set(d["methods"]) >= {"dynamic_cot", "dynamic_replay", "dynamic_permuted"}
    dyn = {r["seed"]: r for r in rows if r["method"] == "dynamic_cot"}
    perm = {r["seed"]: r for r in rows if r["method"] == "dynamic_permuted"}
    replay = {r["seed"]: r for r in rows if r["method"] == "dynamic_replay"}
    assert sum(dyn[s]["F1@M"]["all"] > perm[s]["F1@M"]["all"] for s in dyn) == 1
    assert all(replay[s]["cot_visits"] == dyn[s]["cot_visits"] and replay[s]["replay_short_steps"] == 0 for s in dyn)
    benefit = {r["seed"]: r for r in _rows() if r["method"] == "dynamic_cot" and r["tag"] == "benefit"}
    auc = lambda rs: sum(r["q_auc_thinking_helps"] for r in rs) / len(rs)  # noqa: E731
    assert auc(dyn.values()) > 0.75 and abs(auc(benefit.values()) - 0.5) < 0.05
    # ... and the label, not the CoT exposure, does it: both controls' q tell it far less well
    assert auc(dyn.values()) > 0.1 + max(auc(perm.values()), auc(replay.values())) and auc(replay.values()) < 0.65
    assert all(dyn[s]["q_auc_thinking_helps"] > benefit[s]["q_auc_thinking_helps"] for s in dyn)
    width = lambda rs: sum(r["q"]["max"] - r["q"]["min"] for r in rs) / len(rs)  # noqa: E731
    assert width(dyn.values()) > 3 * width(benefit.values())
    assert sum(r["think_share"] > 0 for r in dyn.values()) == 2
    by_kind = d["methods"]["dynamic_cot"]["think_share_by_subset"]
    assert by_kind["needs:text"] > 5 * by_kind["needs:composition"]
