"""Does Fine-tune-CoT beat SFT on the tiny profile, and on how many seeds? (notebook 04's claim)

    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --out results/bench/cot_seeds_cpu2.jsonl
    python -m mmkp_helpers.bench.cot_seeds --summarize results/bench/cot_seeds_cpu2.jsonl

Per seed and method, one QLoRA run with notebook 03's recipe (the same budget for every method)
on the synthetic clean split, then the clean test split scored:

- ``sft``: direct targets, direct decoding (``max_new_tokens``);
- ``fine_tune_cot``: the oracle teacher's rationales as CoT targets (``<think>...</think>`` then
  the keyphrases), free decoding with a larger budget (``max_new_tokens_cot``);
- ``fine_tune_cot_noisy`` (``--noisy``): the same with an unfaithful teacher (``--noise`` of the
  rationales with a wrong colour or a dropped step).
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
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

#: Notebook 03's recipe (tiny profile).
RECIPE = {"learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup": 0.05, "max_steps": 400,
          "batch_size": 8, "logging_steps": 50, "save_steps": 10 ** 6, "progress": False}
LORA = {"r": 64, "alpha": 256, "dropout": 0.0}
METHODS = ("sft", "fine_tune_cot", "fine_tune_cot_noisy")
COMPARED = ("all", "text+image", "unseen:text+image", "image", "kind:present")


def _run(job: dict) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(job["threads"])
    from mmkp_helpers import collate, data, inference, modeling, overlap, training
    from mmkp_helpers.teacher import OracleTeacher, run_teacher

    splits = overlap.prepare_splits("synthetic", job["results_dir"], seed=0, verbose=False)["clean"]
    train, test = data.read_jsonl(splits["train"]), data.read_jsonl(splits["test"])
    seen = data.read_keyphrase_list(splits["train"].parent / "train_keyphrases.txt")
    method = job["method"]
    rationales = None
    forms = collate.TargetForms("direct")
    if method != "sft":
        noise = job["noise"] if method == "fine_tune_cot_noisy" else 0.0
        run = run_teacher(OracleTeacher(noise=noise, seed=0), train, Path(job["work"]) / "teacher", progress=False)
        rationales = run.rationales
        forms = collate.TargetForms("cot")
    records = collate.make_records(train, rationales)
    modeling.setup(job["seed"], verbose=False)
    model, processor = modeling.load_vlm(modeling.resolve_model("tiny-qwen2_vl"), quantize_4bit=True, lora=LORA,
                                         min_pixels=3136, max_pixels=12544, verbose=False)
    settings = training.SFTSettings(**(RECIPE | {"max_steps": job["steps"], "seed": job["seed"]}))
    t0 = time.perf_counter()
    res = training.train_sft(model, processor, records, None, settings=settings, forms=forms,
                             output_dir=Path(job["work"]) / f"{method}-{job['seed']}")
    train_s = time.perf_counter() - t0
    budget = job["max_new_tokens"] if method == "sft" else job["max_new_tokens_cot"]
    gens = inference.generate(model, processor, test, prompt="direct", batch_size=16, max_new_tokens=budget,
                              progress=False)
    scores = inference.evaluate(gens, test, train_keyphrases=seen)
    stats = inference.generation_stats(gens)
    row = {"bench": "cot_seeds", "method": method, "seed": job["seed"], "steps": res.steps,
           "train_s": round(train_s, 1), "final_loss": res.final_loss,
           "F1@M": {k: round(v["F1@M"], 4) for k, v in scores.items() if isinstance(v, dict)},
           "n": {k: v["n"] for k, v in scores.items() if isinstance(v, dict)},
           "gen_tokens_mean": round(stats["gen_tokens_mean"], 2),
           "seconds_per_post": round(stats["seconds_per_example"], 4), "think_share": round(stats["think_share"], 3),
           "cut_in_think": stats["cut_in_think"], "max_new_tokens": budget, "threads": job["threads"]}
    if job["out"]:
        with open(job["out"], "a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def summarize(path: str | os.PathLike, baseline: str = "sft", method: str = "fine_tune_cot") -> dict:
    """Per compared subset: the mean F1@M of both methods over the seeds that ran both, the mean,
    smallest and largest difference (method minus baseline) and on how many seeds the method won;
    and both methods' mean generated tokens per post."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_seed: dict = {}
    for r in rows:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "fine_tune_cot"], choices=METHODS)
    parser.add_argument("--noise", type=float, default=0.3, help="unfaithful share for fine_tune_cot_noisy")
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
        print(json.dumps(summarize(args.summarize), indent=1))
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
             "max_new_tokens": args.max_new_tokens, "max_new_tokens_cot": args.max_new_tokens_cot,
             "results_dir": args.results_dir, "work": args.work, "out": args.out}
            for seed in args.seeds for method in args.methods]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run, job) for job in jobs]
        for future in as_completed(futures):
            try:
                future.result()
            except Exception as exc:  # report and go on with the other runs
                print(json.dumps({"error": repr(exc)}), file=sys.stderr, flush=True)
    if args.out and Path(args.out).exists():
        print(json.dumps(summarize(args.out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
