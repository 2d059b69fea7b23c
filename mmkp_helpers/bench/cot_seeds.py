"""SFT, Fine-tune-CoT and Dynamic CoT on the tiny profile, seed by seed: the sweep behind notebooks 04
and 05's claims.

    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --out results/bench/cot_seeds_cpu2.jsonl
    python -m mmkp_helpers.bench.cot_seeds --summarize results/bench/cot_seeds_cpu2.jsonl

**The sweep is the notebooks.** Every setting comes from the notebooks' own ``parameters`` cells
under the tiny profile (:func:`mmkp_helpers.experiment.notebook_parameters`: the recipe of
notebook 04, which notebooks 03 and 05 share, the teacher, the rationale style, the budgets, the
generation batch), and every run goes through the same calls the notebooks make
(:func:`experiment.train_run` with the valid split, :func:`experiment.decode`,
:func:`experiment.record`), so seed 0 trains on the notebooks' data with their recipe; only ``seed``
changes between seeds (the adapter's initialisation, the data order, the oracle's noise draw), on
the seed-0 splits. Each run trains in a fresh (spawned) worker process, as a notebook's kernel is,
so on the machine and thread count the notebooks ran with, seed 0 gives notebooks 03, 04 and 05's
scores to the last digit for every method (``tests/test_bench_cot_seeds.py`` checks the committed
files). Another machine rounds float32 differently and gives other figures (see
``docs/tiny_profile.md``).

Methods (per seed, one QLoRA run each; the clean test split scored):

- ``sft``: direct targets, free decoding with ``max_new_tokens`` (notebook 03's text+image run);
- ``fine_tune_cot``: the oracle teacher's rationales as CoT targets, free decoding with
  ``max_new_tokens_cot``, then the same model forced direct and forced to think (notebook 04);
- ``fine_tune_cot_noisy``: the same with the unfaithful teacher (``noisy_teacher_noise``);
- ``dynamic_cot``: the Dynamic CoT policy (``--policy``, :class:`mmkp_helpers.dynamic_cot.PolicySettings`
  fields as JSON) decides the forms during training (notebook 05), then its control.
Each line is the notebook's record (``metrics`` per subset, tokens, seconds, think share,
rationale quality) plus ``bench``, ``method``, ``decoding``, ``tag``, ``seed``, ``train_s`` and a
flat ``F1@M`` per subset. ``--set`` overrides notebook parameters for a study (e.g.
``rationale_style``, ``model_name``), and takes settings the notebooks do not have (their
recipe leaves them off; ``stranger_share``, the share of the signed training posts added again
signed by a name of no account and without tags, :func:`mmkp_helpers.counterfactual.with_stranger_posts`,
is a notebook parameter of 03-05 and applies to every method): ``heldout_mixes`` (colours, e.g. ``["green"]``, whose composition posts are
left out of the training and validation posts: the test posts that need that mix ask for a rule
fine-tuning never showed), ``synthetic_options`` (generator options for another benchmark, e.g.
``{"p_image": 0.25, "p_combine": 0.2}``; with its own ``--results-dir`` and ``--work``),
``heldout_combines`` (colours whose combine posts are left out of training and validation: the
rule is shown only by the composition posts, the reading of a text word and of one shape by
others), ``counterfactual_share`` (that share of the training posts also train a
counterfactual rationale's answer, :mod:`mmkp_helpers.counterfactual`), ``reread_share`` (that share
also trains an evidence counterfactual: the post read differently, the rule and answer following
the reading, :func:`mmkp_helpers.counterfactual.reread_records`) and ``answer_weight``
(:attr:`mmkp_helpers.training.SFTSettings.answer_weight`). Runs go to worker processes (``--jobs``, each ``--threads`` torch
threads); lines are appended to ``--out`` as they finish. ``--summarize`` pairs methods by seed.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from mmkp_helpers.bench import run_jobs

METHODS = ("sft", "fine_tune_cot", "fine_tune_cot_noisy", "dynamic_cot")
COMPARED = ("all", "needs:text", "needs:composition", "text+image", "unseen:text+image", "image", "kind:present")
NOTEBOOK = "04_fine_tune_cot"
DYNAMIC_NOTEBOOK = "05_dynamic_cot"
#: notebook 05's parameters that make its Dynamic CoT policy
POLICY_PARAMETERS = ("variant", "margin", "f1_margin", "warmup_epochs", "window_epochs", "interval", "gamma", "quantile", "mix_share",
                     "share", "switch_back")


def _params(seed: int, overrides: dict, notebook: str = NOTEBOOK) -> dict:
    from mmkp_helpers import experiment

    return experiment.notebook_parameters(notebook) | {"seed": seed} | overrides


def _teacher(params: dict, noise: float = 0.0):
    """The oracle of a notebook's parameters (notebook 05 has no teacher_mode: rationalize, as 04)."""
    from mmkp_helpers.teacher import make_teacher

    return make_teacher("oracle", mode=params.get("teacher_mode", "rationalize"), seed=params["seed"], noise=noise,
                        style=params["rationale_style"])


def _row(job: dict, p: dict, name: str, decoding: str, gens, scores, test, seen, res, train_s: float,
         teacher, **extra) -> dict:
    from mmkp_helpers import experiment

    method = "dynamic_cot" if name.startswith("dynamic") else "sft" if name == "sft" else "fine_tune_cot"
    notebook = DYNAMIC_NOTEBOOK if method == "dynamic_cot" else NOTEBOOK  # the notebook whose settings it ran
    row = experiment.record(notebook, method, decoding, "synthetic", "clean", gens, scores, examples=test,
                            decoding=decoding, seen_accounts=job.get("seen_accounts"), **extra)
    row.update({"bench": "cot_seeds", "method": name, "tag": job["tag"], "seed": job["seed"], "steps": res.steps,
                "train_s": round(train_s, 1), "final_loss": res.final_loss, "threads": job["threads"],
                "model_name": p["model_name"], "rationale_style": None if teacher is None else p["rationale_style"],
                "overrides": job["overrides"],
                "F1@M": {k: v["F1@M"] for k, v in scores.items() if isinstance(v, dict)},
                "think_share_by_subset": experiment.think_share_by_subset(gens, test, seen)})
    return row


def _emit(job: dict, row: dict) -> dict:
    if job["out"]:
        with open(job["out"], "a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(json.dumps({k: row.get(k) for k in ("method", "variant", "seed", "F1@M", "gen_tokens_mean", "think_share",
                                              "well_formed_share", "train_s")}), flush=True)
    return row


def _run(job: dict) -> list[dict]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(job["threads"])
    from mmkp_helpers import counterfactual, data, decision, experiment, inference, modeling, overlap, reading
    from mmkp_helpers.dynamic_cot import BOTH_FORMS, PolicySettings
    from mmkp_helpers.teacher import run_teacher

    method = job["method"]
    p = _params(job["seed"], job["overrides"], DYNAMIC_NOTEBOOK if method == "dynamic_cot" else NOTEBOOK)
    splits = overlap.prepare_splits("synthetic", job["results_dir"], seed=0, verbose=False,
                                    synthetic=p.get("synthetic_options"))["clean"]
    train, valid, test = (data.read_jsonl(splits[s]) for s in ("train", "valid", "test"))
    mixes = set(p.get("heldout_mixes") or ())  # a study's knob: these mixes' composition posts never train
    combines = set(p.get("heldout_combines") or ())  # ... and these mixes' combine posts
    if mixes or combines:
        held = lambda ex: ex.meta["truth"]["colour"] in {"composition": mixes, "combine": combines}.get(  # noqa: E731
            ex.meta.get("needs"), ())
        train, valid = ([ex for ex in part if not held(ex)] for part in (train, valid))
    seen = data.read_keyphrase_list(splits["train"].parent / "train_keyphrases.txt")
    job = job | {"seen_accounts": reading.accounts(train)}
    # stranger posts: signed posts re-signed by a name of no account of the benchmark (notebooks 03-05)
    train = counterfactual.with_stranger_posts(train, [*valid, *test], p.get("stranger_share", 0.0))
    noise = p["noisy_teacher_noise"] if method == "fine_tune_cot_noisy" else 0.0
    teacher = None if method == "sft" else _teacher(p, noise)
    rationales = None if teacher is None else run_teacher(teacher, train, Path(job["work"]) / "teacher",
                                                          progress=False).rationales
    settings, lora, load = experiment.recipe(p, progress=False)
    settings = dataclasses.replace(settings, answer_weight=p.get("answer_weight", 1.0))
    model_path = modeling.resolve_model(p["model_name"])
    work = Path(job["work"])
    dec = dict(batch_size=p["gen_batch_size"], prompt_keyphrases=p["prompt_keyphrases"], progress=False)
    rows = []
    if method != "dynamic_cot":
        t0 = time.perf_counter()
        model, processor, res = experiment.train_run(model_path, train, valid, settings, lora,
                                                     work / f"{method}-{job['tag']}-{job['seed']}", rationales=rationales,
                                                     seed=job["seed"], verbose=False,
                                                     counterfactual_share=p.get("counterfactual_share", 0.0),
                                                     reread_share=p.get("reread_share", 0.0),
                                                     reread=None if teacher is None else functools.partial(
                                                         teacher.reread, avoid=tuple(sorted(mixes | combines))), **load)
        train_s = time.perf_counter() - t0
        decodings = [("free", None, p["max_new_tokens"] if method == "sft" else p["max_new_tokens_cot"])]
        if method == "fine_tune_cot" and job.get("forced", True):
            decodings += [("forced_think", "think", p["max_new_tokens_cot"]), ("forced_direct", "direct", p["max_new_tokens"])]
        for decoding, mode, budget in decodings:
            gens, scores = experiment.decode(model, processor, test, mode, budget, seen, **dec)
            inference.write_generations_jsonl(Path(res.output_dir) / f"generations-{decoding}.jsonl", gens)
            rows.append(_emit(job, _row(job, p, method, decoding, gens, scores, test, seen, res, train_s, teacher,
                                        max_new_tokens=budget)))
        return rows
    # Dynamic CoT, then its controls: the replay of its CoT exposure and (benefit) its permuted labels
    policy = PolicySettings.from_dict({k: p[k] for k in POLICY_PARAMETERS} | {"seed": job["seed"]} | job["policy"])
    dyn_settings = dataclasses.replace(settings, decision_loss=p["decision_loss"], decision_weight=p["decision_weight"])
    reference = None
    runs = [("dynamic_cot", policy)]
    if job["control"]:
        runs.append(("dynamic_replay", None))
        if policy.variant in BOTH_FORMS:
            runs.append(("dynamic_permuted", dataclasses.replace(policy, permute=True)))
    for name, settings_of_run in runs:
        t0 = time.perf_counter()
        out_dir = work / f"{name}-{job['tag']}-{job['seed']}"
        if name == "dynamic_replay":
            model, processor, res, forms, ledger = experiment.replay_run(reference, model_path, train, valid, dyn_settings,
                                                                         lora, out_dir, rationales, seed=job["seed"],
                                                                         verbose=False, **load)
            extra = {"cot_visits": sum(ledger.exposure().values()), "replay_short_steps": forms.short}
        else:
            model, processor, res, pol, ledger = experiment.dynamic_run(model_path, train, valid, dyn_settings, lora,
                                                                        out_dir, rationales, settings_of_run,
                                                                        seed=job["seed"], verbose=False,
                                                                        judge_budgets=(p["max_new_tokens_cot"],
                                                                                       p["max_new_tokens"]), **load)
            extra = {"policy": pol.to_dict()["settings"], "cot_share_final": round(pol.cot_share(), 4),
                     "cot_visits": sum(ledger.exposure().values()),
                     "policy_log": [{k: v for k, v in d.items() if not k.startswith("switched_")} for d in pol.log_records()]}
            if name == "dynamic_cot":
                reference = ledger
        train_s = time.perf_counter() - t0
        auto = experiment.auto_decode(model, processor, valid, test, p["max_new_tokens_cot"], p["max_new_tokens"], seen,
                                      **dec)
        helps = decision.thinking_helps(auto["think"], auto["direct"], test)
        extra |= {"threshold": auto["threshold"], "q": decision.q_summary(auto["q"]),
                  "q_auc_thinking_helps": decision.auc(auto["q"], helps), "thinking_helps_share": sum(helps) / len(helps),
                  "test_curve": auto["test_curve"], "valid_choice": auto["valid_choice"]}
        inference.write_generations_jsonl(Path(res.output_dir) / "generations-auto.jsonl", auto["generations"])
        rows.append(_emit(job, _row(job, p, name, "auto", auto["generations"], auto["scores"], test, seen, res, train_s,
                                    teacher, **extra)))
        del model
    return rows


def _rows(path, decoding: str = "free") -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("decoding", "free") == decoding]


def per_post(work: str | os.PathLike, results_dir: str | os.PathLike = "results/tiny", method: str = "fine_tune_cot",
             baseline: str = "sft", tag: str = "default") -> dict:
    """Post by post, from the generations a sweep left in ``work``: per seed and group of test posts
    (``needs:<kind>``, and the :func:`mmkp_helpers.reading.account_group` of the training posts'
    accounts: ``signed:seen``, ``signed:unseen``, ``unsigned``), on how many posts ``method``'s free
    decoding scores a higher post F1@M than ``baseline``'s, on how many lower, how many posts there
    are, both methods' mean post F1@M, and (when ``method`` reasoned) how many of its generations
    are well-formed (:func:`mmkp_helpers.rationale.check`): where reasoning helped, and where its
    rationales fail. ``tagged_<method>``: on how many posts each method answered a tag (any of the
    benchmark's account tags); ``own_signature``: on how many ``method``'s generation writes the
    post's own signature ("via cedar"): whether a signed post's account was read. ``same_answer``:
    on how many ``method``'s answer is ``baseline``'s (the same keyphrases in the same order);
    ``distinct`` and ``largest``: how many different texts ``method`` wrote, and how many posts share
    its most frequent one (:func:`mmkp_helpers.reading.own_answers`). ``names_shapes`` and
    ``shapes_right``: on how many ``method``'s rationale names shapes at places in the picture, and
    names every one truly (:func:`mmkp_helpers.reading.judge`'s ``shapes_right``; a shape changes no
    keyphrase, so this reads the picture where no score looks); ``first_shape``: the shape the picture
    has at its first place (the centre, or the left) against the one the rationale names there,
    ``{true: {named: posts}}``, for the posts whose rationale names one."""
    from mmkp_helpers import data, overlap, rationale, reading
    from mmkp_helpers.decision import post_f1
    from mmkp_helpers.synthetic import SIGNATURE, TAGS
    from mmkp_helpers.teacher.oracle import SHAPE_READ

    splits = overlap.prepare_splits("synthetic", results_dir, seed=0, verbose=False)["clean"]
    test = data.read_jsonl(splits["test"])
    seen_accounts = reading.accounts(data.read_jsonl(splits["train"]))
    out: dict = {}
    for folder in sorted(Path(work).glob(f"{method}-{tag}-*")):
        seed = int(folder.name.rsplit("-", 1)[1])
        base = Path(work) / f"{baseline}-{tag}-{seed}" / "generations-free.jsonl"
        if not (folder / "generations-free.jsonl").is_file() or not base.is_file():
            continue
        gens = [{g["id"]: g for g in map(json.loads, f.read_text().splitlines()) if g}
                for f in (folder / "generations-free.jsonl", base)]
        counts: dict = {}
        texts: dict = {}
        for ex in test:
            g = gens[0][ex.id]
            a, b = (post_f1(p[ex.id]["prediction"], ex) for p in gens)
            check = rationale.check(g["raw"], g.get("hit_limit"))
            flags = reading.judge(g["raw"], ex, g.get("hit_limit"))
            named = SHAPE_READ.findall(rationale.split_cot(g["raw"])[0].lower()) if check.opened else []
            for group in (f"needs:{ex.meta.get('needs', '-')}", reading.account_group(ex, seen_accounts)):
                c = counts.setdefault(group, {"higher": 0, "lower": 0, "posts": 0, method: 0.0, baseline: 0.0,
                                              "well_formed": 0, "opened": 0, f"tagged_{method}": 0,
                                              f"tagged_{baseline}": 0, "own_signature": 0, "same_answer": 0,
                                              "names_shapes": 0, "shapes_right": 0})
                c["higher"] += a > b
                c["lower"] += a < b
                c["posts"] += 1
                c[method] += a
                c[baseline] += b
                c["opened"] += check.opened
                c["well_formed"] += check.well_formed
                for name, gen in ((method, g), (baseline, gens[1][ex.id])):
                    c[f"tagged_{name}"] += bool(set(gen["prediction"]) & set(TAGS))
                series = (ex.meta.get("truth") or {}).get("series")
                c["own_signature"] += bool(series) and f"{SIGNATURE} {series}" in g["raw"]
                c["same_answer"] += g["prediction"] == gens[1][ex.id]["prediction"]
                c["names_shapes"] += flags["shapes_right"] or flags["shapes_wrong"]
                c["shapes_right"] += flags["shapes_right"]
                if named:
                    true = ((ex.meta.get("truth") or {}).get("shapes") or ["none"])[0]
                    first = c.setdefault("first_shape", {}).setdefault(true, {})
                    first[named[0][1]] = first.get(named[0][1], 0) + 1
                texts.setdefault(group, []).append(g["raw"])
        for group, raws in texts.items():
            counts[group]["distinct"], counts[group]["largest"] = len(set(raws)), max(Counter(raws).values())
        for c in counts.values():
            c[method], c[baseline] = round(c[method] / c["posts"], 4), round(c[baseline] / c["posts"], 4)
            if "first_shape" in c:
                c["first_shape"] = {t: dict(sorted(n.items())) for t, n in sorted(c["first_shape"].items())}
        out[seed] = dict(sorted(counts.items()))
    return out


def summarize(path: str | os.PathLike, baseline: str = "sft", method: str = "fine_tune_cot", tag: str | None = None,
              decoding: str = "free") -> dict:
    """Per compared subset: the mean F1@M of both methods over the seeds that ran both, the mean,
    smallest and largest difference (method minus baseline), on how many seeds the method was
    higher, and the subset's posts and keyphrases; both methods' mean tokens and seconds per post,
    and the method's well-formed share of CoT generations (mean and smallest over the seeds)."""
    by_seed: dict = {}
    for r in _rows(path, decoding):
        if r["method"] in ("dynamic_cot", "dynamic_random") and tag is not None and r.get("tag") != tag:
            continue
        by_seed.setdefault(r["seed"], {})[r["method"]] = r
    pairs = [(v[baseline], v[method]) for _, v in sorted(by_seed.items()) if baseline in v and method in v]
    out: dict = {"seeds": len(pairs), "baseline": baseline, "method": method, "subsets": {}}
    if not pairs:
        return out
    mean = lambda xs: round(sum(xs) / len(xs), 4)
    for subset in COMPARED:
        got = [(b["F1@M"][subset], m["F1@M"][subset]) for b, m in pairs if subset in b["F1@M"] and subset in m["F1@M"]]
        if not got:
            continue
        diffs = [m - b for b, m in got]
        counts = pairs[0][1]["metrics"][subset]
        out["subsets"][subset] = {
            "seeds": len(got), "posts": counts["n"], "keyphrases": counts["n_targets"],
            f"{baseline}_mean": mean([b for b, _ in got]), f"{method}_mean": mean([m for _, m in got]),
            f"{baseline}_by_seed": [round(b, 4) for b, _ in got], f"{method}_by_seed": [round(m, 4) for _, m in got],
            "diff_mean": mean(diffs), "diff_min": round(min(diffs), 4), "diff_max": round(max(diffs), 4),
            "method_higher": sum(d > 0 for d in diffs)}
    out["gen_tokens_mean"] = {baseline: mean([b["gen_tokens_mean"] for b, _ in pairs]),
                              method: mean([m["gen_tokens_mean"] for _, m in pairs])}
    out["seconds_per_post"] = {baseline: mean([b["seconds_per_post"] for b, _ in pairs]),
                               method: mean([m["seconds_per_post"] for _, m in pairs])}
    shares = [m.get("well_formed_share") for _, m in pairs if m.get("well_formed_share") is not None]
    if shares:
        out["well_formed_share"] = {"mean": mean(shares), "min": round(min(shares), 4), "by_seed": shares}
    # The same share per kind of post: the text posts' rationales are a template (the picture adds
    # nothing, the text names the object), so the overall share says little about the posts where a
    # step is needed (needs:composition).
    by_kind: dict[str, list] = {}
    for _, m in pairs:
        for kind, got in (m.get("rationale_reading") or {}).items():
            if kind.startswith("needs:") and got.get("well_formed") is not None:
                by_kind.setdefault(kind, []).append((got["well_formed"], got["posts"]))
    if by_kind:
        out["well_formed_share_by_kind"] = {
            kind: {"posts": got[0][1], "mean": mean([w for w, _ in got]), "min": round(min(w for w, _ in got), 4),
                   "by_seed": [w for w, _ in got]} for kind, got in sorted(by_kind.items())}
    return out


#: The measured goal of Dynamic CoT on the tiny profile (issue "Dynamic CoT that chooses").
DYNAMIC_GOAL = {"think_share": (0.1, 0.9), "composition_over_text": 2.0, "f1m_minus_best_baseline": -0.01,
                "unseen_minus_fine_tune_cot": -0.02, "tokens_ratio": 0.5, "above_control_seeds": 3}


def summarize_dynamic(path: str | os.PathLike, tag: str = "default") -> dict:
    """Over the seeds that ran SFT and Fine-tune-CoT (free decoding) and the Dynamic CoT setting
    ``tag`` with its replay control (``auto`` decoding): per method the mean F1@M (all and the
    compared subsets), tokens and seconds per post, think share (all and per subset), and the
    measured goal (:data:`DYNAMIC_GOAL`) with its values and checks."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_seed: dict = {}
    for r in rows:
        dyn = r["method"].startswith("dynamic")
        if (dyn and (r.get("tag") != tag or r.get("decoding") != "auto")) or (not dyn and r.get("decoding", "free") != "free"):
            continue
        by_seed.setdefault(r["seed"], {})[r["method"]] = r
    names = ("sft", "fine_tune_cot", "dynamic_cot", "dynamic_replay")
    complete = {seed: v for seed, v in sorted(by_seed.items()) if all(n in v for n in names)}
    out: dict = {"tag": tag, "seeds": sorted(complete), "methods": {}}
    if not complete:
        return out
    mean = lambda xs: round(sum(xs) / len(xs), 4)
    present = [n for n in names + ("dynamic_permuted",) if all(n in v for v in complete.values())]
    for n in present:
        runs = [v[n] for v in complete.values()]
        out["methods"][n] = {"F1@M": {s: mean([r["F1@M"][s] for r in runs]) for s in COMPARED if s in runs[0]["F1@M"]},
                             "F1@M_by_seed": [round(r["F1@M"]["all"], 4) for r in runs],
                             "gen_tokens_mean": mean([r["gen_tokens_mean"] for r in runs]),
                             "seconds_per_post": mean([r["seconds_per_post"] for r in runs]),
                             "think_share": mean([r["think_share"] for r in runs]),
                             "think_share_by_subset": {g: mean([r["think_share_by_subset"].get(g, 0.0) for r in runs])
                                                       for g in runs[0]["think_share_by_subset"]},
                             "well_formed_share": mean([r["well_formed_share"] for r in runs])
                             if all(r.get("well_formed_share") is not None for r in runs) else None}
    m = out["methods"]
    d, f, s = m["dynamic_cot"], m["fine_tune_cot"], m["sft"]
    text_share = d["think_share_by_subset"].get("needs:text", 0.0)
    values = {"think_share": d["think_share"],
              "composition_over_text": (d["think_share_by_subset"].get("needs:composition", 0.0) / text_share
                                        if text_share else float("inf") if d["think_share_by_subset"].get("needs:composition") else 0.0),
              "f1m_minus_best_baseline": round(d["F1@M"]["all"] - max(s["F1@M"]["all"], f["F1@M"]["all"]), 4),
              "unseen_minus_fine_tune_cot": round(d["F1@M"]["unseen:text+image"] - f["F1@M"]["unseen:text+image"], 4),
              "tokens_ratio": round(d["gen_tokens_mean"] / f["gen_tokens_mean"], 4),
              "above_control_seeds": sum(v["dynamic_cot"]["F1@M"]["all"] > v["dynamic_replay"]["F1@M"]["all"]
                                         for v in complete.values()),
              "minus_control_mean": round(d["F1@M"]["all"] - m["dynamic_replay"]["F1@M"]["all"], 4)}
    g = DYNAMIC_GOAL
    checks = {"think_share": g["think_share"][0] <= values["think_share"] <= g["think_share"][1],
              "composition_over_text": values["composition_over_text"] >= g["composition_over_text"],
              "f1m_minus_best_baseline": values["f1m_minus_best_baseline"] >= g["f1m_minus_best_baseline"],
              "unseen_minus_fine_tune_cot": values["unseen_minus_fine_tune_cot"] >= g["unseen_minus_fine_tune_cot"],
              "tokens_ratio": values["tokens_ratio"] <= g["tokens_ratio"],
              "above_control_seeds": len(complete) >= 4 and values["above_control_seeds"] >= g["above_control_seeds"]}
    out["goal"] = {"values": values, "checks": checks, "met": all(checks.values())}
    return out


#: The measured goal of Fine-tune-CoT on the tiny profile (issue "A student that can reason").
GOAL = {"unseen_higher_seeds": 3, "unseen_gain_mean": 0.05, "all_diff_mean": -0.02, "well_formed_min": 0.95}


def goal_fine_tune_cot(summary: dict) -> dict:
    """The measured goal read from :func:`summarize`: Fine-tune-CoT above SFT on the held-out colour
    x object pairs on at least 3 of 4 seeds with a mean gain of at least +0.05 F1@M, its F1@M over
    all keyphrases at most 0.02 below SFT's on average, at least 95% of its free generations
    well-formed on every seed; each count, and whether all hold (``met``)."""
    unseen = summary["subsets"].get("unseen:text+image", {})
    every = summary["subsets"].get("all", {})
    wf = summary.get("well_formed_share", {})
    out = {"seeds": summary["seeds"], "unseen_higher_seeds": unseen.get("method_higher"),
           "unseen_gain_mean": unseen.get("diff_mean"), "all_diff_mean": every.get("diff_mean"),
           "well_formed_min": wf.get("min"), "well_formed_mean": wf.get("mean"),
           "well_formed_min_by_kind": {k: v["min"] for k, v in summary.get("well_formed_share_by_kind", {}).items()}}
    out["checks"] = {
        "unseen_higher_seeds": out["unseen_higher_seeds"] is not None and out["unseen_higher_seeds"] >= GOAL["unseen_higher_seeds"]
        and summary["seeds"] >= 4,
        "unseen_gain_mean": out["unseen_gain_mean"] is not None and out["unseen_gain_mean"] >= GOAL["unseen_gain_mean"],
        "all_diff_mean": out["all_diff_mean"] is not None and out["all_diff_mean"] >= GOAL["all_diff_mean"],
        "well_formed_min": out["well_formed_min"] is not None and out["well_formed_min"] >= GOAL["well_formed_min"]}
    out["met"] = all(out["checks"].values())
    return out


def study(path: str | os.PathLike, sweep: str | os.PathLike, method: str = "fine_tune_cot") -> dict:
    """A study's free-decoding rows (``--tag`` per setting, ``--set`` recorded as ``overrides``) against
    the sweep's SFT and ``method`` on the same seeds: per tag (the sweep's own rows as ``"recipe"``)
    ``{"overrides", "seeds", "well_formed_mean", "well_formed_min", "f1m_mean", "f1m_minus_sft_mean",
    "unseen_minus_sft_mean", "unseen_higher_seeds"}``."""
    base = {(r["method"], r["seed"]): r for r in _rows(sweep) if r.get("tag", "default") == "default"}
    by_tag: dict = {"recipe": {s: r for (m, s), r in base.items() if m == method}}
    for r in _rows(path):
        by_tag.setdefault(r["tag"], {})[r["seed"]] = r
    out = {}
    for tag, runs in by_tag.items():
        seeds = sorted(runs)
        mean = lambda f: sum(f(runs[s]) for s in seeds) / len(seeds)  # noqa: E731
        sft = lambda s, subset: base[("sft", s)]["F1@M"][subset]  # noqa: E731
        wf = [runs[s]["well_formed_share"] for s in seeds]
        out[tag] = {"overrides": runs[seeds[0]].get("overrides", {}), "seeds": seeds,
                    "well_formed_mean": sum(wf) / len(wf), "well_formed_min": min(wf),
                    "f1m_mean": mean(lambda r: r["F1@M"]["all"]),
                    "f1m_minus_sft_mean": sum(runs[s]["F1@M"]["all"] - sft(s, "all") for s in seeds) / len(seeds),
                    "unseen_minus_sft_mean": sum(runs[s]["F1@M"]["unseen:text+image"] - sft(s, "unseen:text+image")
                                                 for s in seeds) / len(seeds),
                    "unseen_higher_seeds": sum(runs[s]["F1@M"]["unseen:text+image"] > sft(s, "unseen:text+image")
                                               for s in seeds)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "fine_tune_cot"], choices=METHODS)
    parser.add_argument("--set", default="{}", help="notebook parameters to override, as JSON (e.g. for a study "
                                                    "of another rationale style); rows record them (overrides)")
    parser.add_argument("--policy", default="{}", help="Dynamic CoT PolicySettings as JSON")
    parser.add_argument("--tag", default="default", help="a name for this setting in the output")
    parser.add_argument("--no-control", action="store_true", help="no control run after dynamic_cot")
    parser.add_argument("--free-only", action="store_true", help="Fine-tune-CoT: free decoding only (no forced modes)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--work", default=".cache/cot_seeds")
    parser.add_argument("--out", default="")
    parser.add_argument("--summarize", metavar="FILE")
    parser.add_argument("--per-post", action="store_true", help="post by post, Fine-tune-CoT against SFT per group "
                                                                 "of posts, from the generations of --tag under --work")
    args = parser.parse_args(argv)
    if args.per_post:
        print(json.dumps(per_post(args.work, args.results_dir, tag=args.tag), indent=1))
        return 0
    if args.summarize:
        sweep = summarize(args.summarize)
        print(json.dumps({"fine_tune_cot_vs_sft": sweep, "goal": goal_fine_tune_cot(sweep),
                          "dynamic": summarize_dynamic(args.summarize, args.tag)}, indent=1))
        return 0
    from mmkp_helpers import data, modeling, overlap
    from mmkp_helpers.teacher import run_teacher

    overrides = json.loads(args.set)
    from mmkp_helpers.synthetic import COLOURS

    for knob in ("heldout_mixes", "heldout_combines"):
        unknown = sorted(set(overrides.get(knob) or ()) - set(COLOURS))
        if unknown:
            raise ValueError(f"{knob} {unknown}: not colours of the benchmark; choose from {list(COLOURS)}")
    if overrides.get("synthetic_options") and args.results_dir == "results/tiny":
        raise ValueError("synthetic_options make another benchmark: give it a --results-dir (and --work) of its own")
    splits = overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False,
                                    synthetic=overrides.get("synthetic_options"))
    p0 = _params(0, overrides)
    modeling.resolve_model(p0["model_name"])  # built once, before the workers load it
    train = data.read_jsonl(splits["clean"]["train"])
    for seed in args.seeds:  # the rationales once, before the workers read the cache
        p = _params(seed, overrides)
        for noise in {0.0, p["noisy_teacher_noise"]}:
            run_teacher(_teacher(p, noise), train, Path(args.work) / "teacher", progress=False)
    jobs = [{"seed": seed, "method": method, "overrides": overrides, "threads": args.threads,
             "policy": json.loads(args.policy), "tag": args.tag, "control": not args.no_control,
             "forced": not args.free_only,
             "results_dir": args.results_dir, "work": args.work, "out": args.out}
            for seed in args.seeds for method in args.methods]
    run_jobs(_run, jobs, args.jobs)
    if args.out and Path(args.out).exists():
        print(json.dumps(summarize(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
