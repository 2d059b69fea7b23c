"""SFT, Fine-tune-CoT and Dynamic CoT on the tiny profile, seed by seed (notebooks 04 and 05's claims).

    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --out results/bench/cot_seeds_cpu2.jsonl
    python -m mmkp_helpers.bench.cot_seeds --summarize results/bench/cot_seeds_cpu2.jsonl

Per seed and method, one QLoRA run with notebook 03's recipe (the same budget for every method)
on the synthetic clean split, then the clean test split scored:

- ``sft``: direct targets, direct decoding (``max_new_tokens``);
- ``fine_tune_cot``: the oracle teacher's rationales as CoT targets (``<think>...</think>`` then
  the keyphrases), free decoding with a larger budget (``max_new_tokens_cot``);
- ``fine_tune_cot_noisy``: the same with an unfaithful teacher (``--noise`` of the rationales with
  a wrong colour or a dropped step);
- ``dynamic_cot``: the Dynamic CoT policy (``--policy``, :class:`mmkp_helpers.dynamic_cot.PolicySettings`
  fields as JSON) decides the forms during training; free decoding with the CoT budget; followed
  in the same worker by ``dynamic_random``, the random control with the CoT share the policy ended
  with (``--no-control`` skips it).
Rows carry a ``tag`` (``--tag``) so that several policy settings can share one output file.
Each line: F1@M per subset (all, the keyphrase kinds, ``unseen:*``), generated tokens and seconds
per post, the share of outputs that reasoned and that were cut off while reasoning. Runs go to
worker processes (``--jobs``, each ``--threads`` torch threads); lines are printed and appended to
``--out`` as they finish. ``--summarize`` pairs the methods by seed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mmkp_helpers.bench import run_jobs

#: Notebook 03's recipe (tiny profile).
RECIPE = {"learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup": 0.05, "max_steps": 400,
          "batch_size": 8, "logging_steps": 50, "save_steps": 10 ** 6, "progress": False}
LORA = {"r": 64, "alpha": 256, "dropout": 0.0}
METHODS = ("sft", "fine_tune_cot", "fine_tune_cot_noisy", "dynamic_cot")
COMPARED = ("all", "text+image", "unseen:text+image", "image", "kind:present")


def _run(job: dict) -> list[dict]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(job["threads"])
    from mmkp_helpers import collate, data, experiment, modeling, overlap, training
    from mmkp_helpers.dynamic_cot import DynamicCoTPolicy, PolicySettings
    from mmkp_helpers.teacher import OracleTeacher, run_teacher

    splits = overlap.prepare_splits("synthetic", job["results_dir"], seed=0, verbose=False)["clean"]
    train, test = data.read_jsonl(splits["train"]), data.read_jsonl(splits["test"])
    seen = data.read_keyphrase_list(splits["train"].parent / "train_keyphrases.txt")
    method = job["method"]
    noise = job["noise"] if method == "fine_tune_cot_noisy" else 0.0
    rationales = None if method == "sft" else run_teacher(OracleTeacher(noise=noise, seed=0), train,
                                                          Path(job["work"]) / "teacher", progress=False).rationales
    settings = training.SFTSettings(**(RECIPE | {"max_steps": job["steps"], "seed": job["seed"]}))
    load = dict(quantize_4bit=True, min_pixels=3136, max_pixels=12544)
    runs = [(method, None)]
    rows = []
    while runs:
        name, share = runs.pop(0)
        forms, ledger, callbacks, policy = None, None, [], None
        if name in ("dynamic_cot", "dynamic_random"):
            records = collate.make_records(train, rationales)
            forms, ledger = collate.TargetForms(), training.LossLedger()
            policy_settings = PolicySettings.from_dict(job["policy"])
            if name == "dynamic_random":
                policy_settings = PolicySettings(variant="random", share=share, warmup_steps=policy_settings.warmup_steps,
                                                 seed=job["seed"])
            policy = DynamicCoTPolicy(records, forms, ledger, policy_settings)
            callbacks = [policy]
        t0 = time.perf_counter()
        model, processor, res = experiment.train_run(
            modeling.resolve_model("tiny-qwen2_vl"), train, None, settings, LORA,
            Path(job["work"]) / f"{name}-{job['tag']}-{job['seed']}", rationales=rationales, forms=forms, ledger=ledger,
            callbacks=callbacks, seed=job["seed"], verbose=False, **load)
        train_s = time.perf_counter() - t0
        budget = job["max_new_tokens"] if name == "sft" else job["max_new_tokens_cot"]
        gens, scores = experiment.decode(model, processor, test, None, budget, seen, progress=False)
        stats = experiment.inference.generation_stats(gens)
        row = {"bench": "cot_seeds", "method": name, "tag": job["tag"], "seed": job["seed"], "steps": res.steps,
               "train_s": round(train_s, 1), "final_loss": res.final_loss,
               "F1@M": {k: round(v["F1@M"], 4) for k, v in scores.items() if isinstance(v, dict)},
               "n": {k: v["n"] for k, v in scores.items() if isinstance(v, dict)},
               "gen_tokens_mean": round(stats["gen_tokens_mean"], 2),
               "seconds_per_post": round(stats["seconds_per_example"], 4), "think_share": round(stats["think_share"], 3),
               "think_share_by_subset": {k: round(v, 3) for k, v in
                                         experiment.think_share_by_subset(gens, test, seen).items()},
               "cut_in_think": stats["cut_in_think"], "max_new_tokens": budget, "threads": job["threads"]}
        if policy is not None:
            row["policy"] = dict(policy.to_dict()["settings"])
            row["cot_share_final"] = round(policy.cot_share(), 4)
            row["policy_log"] = [{k: v for k, v in d.items() if not k.startswith("switched_")}
                                 for d in policy.log_records()]
            if name == "dynamic_cot" and job["control"]:
                runs.append(("dynamic_random", policy.cot_share()))
        del model
        if job["out"]:
            with open(job["out"], "a") as fh:
                fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def summarize(path: str | os.PathLike, baseline: str = "sft", method: str = "fine_tune_cot", tag: str | None = None) -> dict:
    """Per compared subset: the mean F1@M of both methods over the seeds that ran both, the mean,
    smallest and largest difference (method minus baseline) and on how many seeds the method won;
    and both methods' mean generated tokens per post."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_seed: dict = {}
    for r in rows:
        if r["method"] in ("dynamic_cot", "dynamic_random") and tag is not None and r.get("tag") != tag:
            continue
        by_seed.setdefault(r["seed"], {})[r["method"]] = r
    pairs = [(v[baseline], v[method]) for v in by_seed.values() if baseline in v and method in v]
    out: dict = {"seeds": len(pairs), "baseline": baseline, "method": method, "subsets": {}}
    if not pairs:
        return out
    for subset in COMPARED:
        got = [(b["F1@M"][subset], m["F1@M"][subset]) for b, m in pairs if subset in b["F1@M"] and subset in m["F1@M"]]
        if not got:
            continue
        diffs = [m - b for b, m in got]
        out["subsets"][subset] = {
            "seeds": len(got), f"{baseline}_mean": round(sum(b for b, _ in got) / len(got), 4),
            f"{method}_mean": round(sum(m for _, m in got) / len(got), 4),
            "diff_mean": round(sum(diffs) / len(diffs), 4), "diff_min": round(min(diffs), 4),
            "diff_max": round(max(diffs), 4), "method_higher": sum(d > 0 for d in diffs)}
    out["gen_tokens_mean"] = {baseline: round(sum(b["gen_tokens_mean"] for b, _ in pairs) / len(pairs), 2),
                              method: round(sum(m["gen_tokens_mean"] for _, m in pairs) / len(pairs), 2)}
    out["seconds_per_post"] = {baseline: round(sum(b["seconds_per_post"] for b, _ in pairs) / len(pairs), 4),
                               method: round(sum(m["seconds_per_post"] for _, m in pairs) / len(pairs), 4)}
    return out


def summarize_dynamic(path: str | os.PathLike, tag: str = "default") -> dict:
    """The headline comparison over the seeds that ran all four (SFT, Fine-tune-CoT, the Dynamic CoT
    setting ``tag`` and its random control): mean F1@M (all and per compared subset), tokens and
    seconds per post, think share, and the measured goal: the dynamic model generates at most half
    of Fine-tune-CoT's tokens per post with F1@M at least the better of SFT and Fine-tune-CoT minus
    0.01, averaged over the seeds."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_seed: dict = {}
    for r in rows:
        if r["method"] in ("dynamic_cot", "dynamic_random") and r.get("tag") != tag:
            continue
        by_seed.setdefault(r["seed"], {})[r["method"]] = r
    names = ("sft", "fine_tune_cot", "dynamic_cot", "dynamic_random")
    complete = {seed: v for seed, v in sorted(by_seed.items()) if all(n in v for n in names)}
    out: dict = {"tag": tag, "seeds": sorted(complete), "methods": {}}
    if not complete:
        return out
    mean = lambda xs: round(sum(xs) / len(xs), 4)
    for n in names:
        runs = [v[n] for v in complete.values()]
        out["methods"][n] = {"F1@M": {s: mean([r["F1@M"][s] for r in runs]) for s in COMPARED if s in runs[0]["F1@M"]},
                             "gen_tokens_mean": mean([r["gen_tokens_mean"] for r in runs]),
                             "seconds_per_post": mean([r["seconds_per_post"] for r in runs]),
                             "think_share": mean([r["think_share"] for r in runs]),
                             "F1@M_by_seed": [r["F1@M"]["all"] for r in runs]}
        if n.startswith("dynamic"):
            out["methods"][n]["cot_share_final"] = mean([r["cot_share_final"] for r in runs])
    m = out["methods"]
    best = max(m["sft"]["F1@M"]["all"], m["fine_tune_cot"]["F1@M"]["all"])
    out["goal"] = {"tokens_ratio_to_fine_tune_cot": round(m["dynamic_cot"]["gen_tokens_mean"] / m["fine_tune_cot"]["gen_tokens_mean"], 4),
                   "f1m_minus_best_baseline": round(m["dynamic_cot"]["F1@M"]["all"] - best, 4),
                   "dynamic_minus_random_f1m": round(m["dynamic_cot"]["F1@M"]["all"] - m["dynamic_random"]["F1@M"]["all"], 4),
                   "dynamic_above_random_seeds": sum(v["dynamic_cot"]["F1@M"]["all"] > v["dynamic_random"]["F1@M"]["all"]
                                                     for v in complete.values())}
    out["goal"]["met"] = (out["goal"]["tokens_ratio_to_fine_tune_cot"] <= 0.5 and out["goal"]["f1m_minus_best_baseline"] >= -0.01)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "fine_tune_cot"], choices=METHODS)
    parser.add_argument("--noise", type=float, default=0.3, help="unfaithful share for fine_tune_cot_noisy")
    parser.add_argument("--policy", default="{}", help="Dynamic CoT PolicySettings as JSON")
    parser.add_argument("--tag", default="default", help="a name for this policy setting in the output")
    parser.add_argument("--no-control", action="store_true", help="no random control after dynamic_cot")
    parser.add_argument("--steps", type=int, default=RECIPE["max_steps"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-new-tokens-cot", type=int, default=96)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--work", default=".cache/cot_seeds")
    parser.add_argument("--out", default="")
    parser.add_argument("--summarize", metavar="FILE")
    args = parser.parse_args(argv)
    if args.summarize:
        print(json.dumps({"fine_tune_cot_vs_sft": summarize(args.summarize),
                          "dynamic": summarize_dynamic(args.summarize, args.tag)}, indent=1))
        return 0
    from mmkp_helpers import modeling, overlap

    from mmkp_helpers import data
    from mmkp_helpers.teacher import OracleTeacher, run_teacher

    splits = overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False)
    modeling.resolve_model("tiny-qwen2_vl")
    train = data.read_jsonl(splits["clean"]["train"])
    for noise in {0.0, args.noise}:  # the rationales once, before the workers read the cache
        run_teacher(OracleTeacher(noise=noise, seed=0), train, Path(args.work) / "teacher", progress=False)
    jobs = [{"seed": seed, "method": method, "noise": args.noise, "steps": args.steps, "threads": args.threads,
             "policy": json.loads(args.policy), "tag": args.tag, "control": not args.no_control,
             "max_new_tokens": args.max_new_tokens, "max_new_tokens_cot": args.max_new_tokens_cot,
             "results_dir": args.results_dir, "work": args.work, "out": args.out}
            for seed in args.seeds for method in args.methods]
    run_jobs(_run, jobs, args.jobs)
    if args.out and Path(args.out).exists():
        print(json.dumps(summarize(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
