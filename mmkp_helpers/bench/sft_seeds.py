"""How stable is QLoRA SFT of the tiny model on the synthetic benchmark, across seeds and settings?

The tiny profile's claims (SFT >> zero-shot, the image helps on image keyphrases, the original
split scores above the clean one) should not hang on one lucky seed. This script trains one run per
(setting, seed, split, prompt) in parallel worker processes (each with ``--threads`` torch
threads), scores the test split every ``--eval-every`` steps, and prints one JSON line per
evaluation point (also appended to ``--out``), so a run that is cut short still reports its curve.
Each point also carries ``kinds`` (:func:`mmkp_helpers.composition.kind_stats`: account and other
posts, their mean per-post P@k/R@k/AP@5), from which ``--summarize`` reports the original-minus-clean
difference raw and with the test composition held fixed (``raw_*``, ``controlled_*``, ``per_seed``).

    python -m mmkp_helpers.bench.sft_seeds --settings '{"A": {"learning_rate": 2e-3, "lora_alpha": 256}}' \\
        --seeds 0 1 --splits original clean --jobs 2 --threads 1

A setting holds :class:`mmkp_helpers.training.SFTSettings` fields plus ``lora_r``,
``lora_alpha``, ``lora_dropout``, ``quantize_4bit``, ``stranger_share`` (notebook 03's parameter:
that share of the signed training posts added again, signed by a name of no account, without tags)
and ``synthetic`` (generator options for
:func:`mmkp_helpers.overlap.prepare_splits`; such a setting gets its own splits folder). Splits are those of
:func:`mmkp_helpers.overlap.prepare_splits` (``--results-dir``, default ``results/tiny``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mmkp_helpers.bench import run_jobs

DEFAULT = {"learning_rate": 2e-3, "lr_scheduler": "cosine", "warmup": 0.05, "max_steps": 400, "batch_size": 8,
           "lora_r": 64, "lora_alpha": 256, "lora_dropout": 0.0, "quantize_4bit": True}
LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "quantize_4bit", "synthetic", "stranger_share")


def _run(job: dict) -> list[dict]:
    torch_threads = job["threads"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(torch_threads)
    from transformers import TrainerCallback

    from mmkp_helpers import collate, composition, counterfactual, data, inference, modeling, overlap, training

    splits = overlap.prepare_splits("synthetic", job["results_dir"], seed=0, synthetic=job["setting"].get("synthetic"),
                                    verbose=False)
    train = data.read_jsonl(splits[job["split"]]["train"])
    test = data.read_jsonl(splits[job["split"]]["test"])
    seen = data.read_keyphrase_list(splits[job["split"]]["train"].parent / "train_keyphrases.txt")
    found = overlap.text_overlap([e.text for e in train], [e.text for e in test], overlap.THRESHOLD, "exact",
                                 overlap.NGRAM, arrays=True)
    near = set(found["arrays"]["near"].nonzero()[0].tolist())
    seen_norm = {overlap.normalize_keyphrase(k) for k in seen}
    groups = {"near_dup": [e for i, e in enumerate(test) if i in near],
              "fresh": [e for i, e in enumerate(test) if i not in near],
              "all_seen": [e for e in test if all(overlap.normalize_keyphrase(k) in seen_norm for k in e.keyphrases)],
              "has_unseen": [e for e in test if any(overlap.normalize_keyphrase(k) not in seen_norm for k in e.keyphrases)],
              "series": [e for e in test if "tag" in e.kinds.values()],
              "not_series": [e for e in test if "tag" not in e.kinds.values()]}
    setting = DEFAULT | job["setting"]
    sft = {k: v for k, v in setting.items() if k not in LORA_KEYS}
    settings = training.SFTSettings(**(sft | {"prompt": job["prompt"], "seed": job["seed"], "logging_steps": 50,
                                              "save_steps": 10 ** 6, "progress": False}))
    modeling.setup(job["seed"], verbose=False)
    model, processor = modeling.load_vlm(
        modeling.resolve_model("tiny-qwen2_vl"), quantize_4bit=setting["quantize_4bit"],
        lora={"r": setting["lora_r"], "alpha": setting["lora_alpha"], "dropout": setting["lora_dropout"]}, verbose=False)
    points: list[dict] = []
    head = {"setting": job["name"], "seed": job["seed"], "split": job["split"], "prompt": job["prompt"]}

    def evaluate(step: int) -> None:
        t0 = time.perf_counter()
        gens = inference.generate(model, processor, test, prompt=job["prompt"], batch_size=16, max_new_tokens=32,
                                  progress=False)
        modeling.fix_bnb_cpu_training(model)
        scores = inference.evaluate(gens, test, train_keyphrases=seen)
        by_id = {g.id: g for g in gens}
        posts = {name: (len(ex), round(inference.evaluate([by_id[e.id] for e in ex], ex)["all"]["F1@M"], 4))
                 for name, ex in groups.items() if ex}
        row = head | {"step": step, "eval_s": round(time.perf_counter() - t0, 1),
                      "F1@M": {k: round(v["F1@M"], 4) for k, v in scores.items() if isinstance(v, dict)},
                      "posts": posts,
                      # per kind of post (account / other): posts and mean per-post P@k, R@k, AP@5,
                      # from which summarize() holds the test composition fixed across the splits
                      "kinds": composition.kind_stats(gens, test)}
        points.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if job["out"]:
            with open(job["out"], "a") as fh:
                fh.write(line + "\n")

    class Every(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % job["eval_every"] == 0 and state.global_step < settings.max_steps:
                evaluate(state.global_step)

    t0 = time.perf_counter()
    valid = data.read_jsonl(splits[job["split"]]["valid"])  # notebook 03's stranger posts, as its stranger_share
    train = counterfactual.with_stranger_posts(train, [*valid, *test], setting.get("stranger_share", 0.0))
    result = training.train_sft(model, processor, collate.make_records(train), None, settings=settings,
                                output_dir=Path(job["work"]) / f"{job['name']}-{job['seed']}-{job['split']}-{job['prompt']}",
                                callbacks=[Every()])
    train_s = time.perf_counter() - t0
    evaluate(result.steps)
    points[-1]["train_s"] = round(train_s, 1)
    points[-1]["losses"] = [round(loss, 3) for _, loss in result.train_losses]
    if job["out"]:
        with open(job["out"], "a") as fh:
            fh.write(json.dumps(points[-1] | {"final": True}) + "\n")
    return points


def _spread(values: list[float], name: str) -> dict:
    """Mean, min, max and how many are positive, as ``<name>_mean`` ... ``<name>_positive``."""
    return {f"{name}_mean": round(sum(values) / len(values), 3), f"{name}_min": round(min(values), 3),
            f"{name}_max": round(max(values), 3), f"{name}_positive": sum(v > 0 for v in values)}


def summarize(path: str | os.PathLike) -> dict:
    """Per setting and step, over seeds: F1@M of the original and the clean run, their difference,
    and how many seeds put the original split above the clean one (from a ``--out`` file).

    Where the rows carry per-kind statistics (``kinds``, written since the composition control
    was added), also the difference with the test composition held fixed
    (:func:`mmkp_helpers.composition.standardised_difference`, pooled shares of account and other
    posts): ``per_seed`` {seed: {"raw", "controlled"}} and ``raw_*`` / ``controlled_*`` mean, min,
    max and number of seeds positive."""
    from mmkp_helpers.composition import standardised_difference

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    runs: dict = {}
    for r in rows:
        if r.get("final") or r.get("prompt") != "direct":
            continue
        runs.setdefault((r["setting"], r["step"]), {}).setdefault(r["seed"], {})[r["split"]] = r
    out = {}
    for (setting, step), by_seed in sorted(runs.items()):
        paired = {seed: v for seed, v in sorted(by_seed.items()) if {"original", "clean"} <= set(v)}
        if not paired:
            continue
        pairs = [(v["original"]["F1@M"]["all"], v["clean"]["F1@M"]["all"]) for v in paired.values()]
        gaps = [o - c for o, c in pairs]
        row = {"seeds": len(pairs), "original_mean": round(sum(o for o, _ in pairs) / len(pairs), 3),
               "clean_mean": round(sum(c for _, c in pairs) / len(pairs), 3),
               "gap_mean": round(sum(gaps) / len(gaps), 3), "gap_min": round(min(gaps), 3),
               "gap_max": round(max(gaps), 3), "original_higher": sum(g > 0 for g in gaps)}
        per_seed = {}
        for seed, v in paired.items():
            if "kinds" in v["original"] and "kinds" in v["clean"]:
                d = standardised_difference(v["original"]["kinds"], v["clean"]["kinds"], "F1@M")
                if d["controlled_difference"] is not None:
                    per_seed[seed] = {"raw": round(d["raw_difference"], 4),
                                      "controlled": round(d["controlled_difference"], 4)}
        if per_seed:
            row["composition_seeds"] = len(per_seed)
            row |= _spread([s["raw"] for s in per_seed.values()], "raw")
            row |= _spread([s["controlled"] for s in per_seed.values()], "controlled")
            row["per_seed"] = per_seed
        out[f"{setting}@{step}"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default='{"default": {}}', help="JSON {name: {setting overrides}}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--splits", nargs="+", default=["original", "clean"])
    parser.add_argument("--prompts", nargs="+", default=["direct"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--work", default=".cache/sft_seeds")
    parser.add_argument("--out", default="", help="append JSON lines here too")
    parser.add_argument("--summarize", metavar="FILE", help="only summarize an --out file of earlier runs")
    args = parser.parse_args(argv)
    if args.summarize:
        for key, row in summarize(args.summarize).items():
            print(json.dumps({"setting@step": key} | row))
        return 0
    from mmkp_helpers import modeling, overlap

    settings = json.loads(args.settings)
    folders = {name: str(Path(args.results_dir) / f"sweep-{name}") if "synthetic" in setting else args.results_dir
               for name, setting in settings.items()}
    for name, setting in settings.items():  # the splits once, before the workers
        overlap.prepare_splits("synthetic", folders[name], seed=0, synthetic=setting.get("synthetic"), verbose=False)
    modeling.resolve_model("tiny-qwen2_vl")
    jobs = [{"name": name, "setting": setting, "seed": seed, "split": split, "prompt": prompt,
             "threads": args.threads, "eval_every": args.eval_every, "results_dir": folders[name],
             "work": args.work, "out": args.out}
            for name, setting in settings.items() for seed in args.seeds
            for split in args.splits for prompt in args.prompts]
    run_jobs(_run, jobs, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
