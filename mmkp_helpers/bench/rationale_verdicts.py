"""Does the sweep's student reason? Each free generation's verdict, on every seed of the sweep.

    python -m mmkp_helpers.bench.rationale_verdicts --seeds 0 1 2 3 --tag default \
        --out results/bench/rationale_verdicts_cpu2.json
    python -m mmkp_helpers.bench.rationale_verdicts --seeds 0 1 2 3 --tag default_combine_green \
        --synthetic '{"p_image": 0.25, "p_combine": 0.2}' --work .cache/combine/work \
        --results-dir .cache/combine/results --out results/bench/rationale_verdicts_cpu2.json

(the second: the sweep run on the combine benchmark, whose combine posts need two readings and a
rule, ``bench.cot_seeds --methods sft fine_tune_cot --free-only --set '{"synthetic_options":
{"p_image": 0.25, "p_combine": 0.2}, "heldout_combines": ["green"]}' --tag default_combine_green``
with the same ``--work`` and ``--results-dir``; ``--synthetic`` names that benchmark again.)

Notebook 04 (section 6) gives every free generation of its own run one verdict, the first check
it fails (:func:`mmkp_helpers.reading.verdicts`): no rationale, not well-formed, reads the post
wrongly (the ground-truth check), ignores a changed reading (the intervention of
:mod:`mmkp_helpers.bench.rationale_intervention` on the same student: another reading of the
picture, or on a text post another topic named by the text), else follows it. That run is one
seed. This bench gives the same verdicts for the sweep's runs (``bench.cot_seeds``: its
Fine-tune-CoT adapter and free generations, and its SFT run's generations for "answer = SFT's"),
so that what notebook 04 says about them rests on every seed. Nothing is trained; the only new
generation is the intervention's (about 6 s a seed on 2 cores).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mmkp_helpers.bench import adapter_probe_parser, save_tag_runs


#: ``follows`` per kind of post: the posts with a changed reading, those whose answer follows it,
#: those whose own free generation is well-formed, and of those the ones that follow. A verdict
#: stops at the first failed check (a misnamed shape, which no answer depends on, says "reads the
#: post wrongly"); these counts say whether the answer follows the rationale whatever the reading.
FOLLOWS = ("posts", "follows", "well_formed", "well_formed_follows")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_seed(seed: int, work: str, tag: str, results_dir: str, batch_size: int = 64,
             synthetic: dict | None = None) -> dict:
    """One seed's verdict counts (:func:`mmkp_helpers.reading.verdict_counts`); per verdict, one
    raw generation of a post with a picture (the first in test order); and, for the first two
    posts of each kind, the changed reading's prefill, the keyphrase it implies and what the
    student wrote after it (``continued``). ``synthetic``: the generator options of the sweep's
    benchmark (its ``synthetic_options``; None: the notebooks' benchmark)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmkp_helpers import data, experiment, modeling, overlap, reading, training
    from mmkp_helpers.bench.rationale_intervention import changed_reading, interventions, text_interventions
    from mmkp_helpers.teacher.oracle import OracleTeacher

    run = Path(work) / f"fine_tune_cot-{tag}-{seed}"
    files = [run / "adapter", run / "generations-free.jsonl", Path(work) / f"sft-{tag}-{seed}" / "generations-free.jsonl"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: run python -m mmkp_helpers.bench.cot_seeds --seeds {seed} "
                                f"--methods sft fine_tune_cot --free-only --tag {tag} --work {work} first")
    p = experiment.notebook_parameters("04_fine_tune_cot")
    test = data.read_jsonl(overlap.prepare_splits("synthetic", results_dir, seed=0, verbose=False,
                                                  synthetic=synthetic)["clean"]["test"])
    cot, sft = _read(files[1]), _read(files[2])
    if sorted(g["id"] for g in cot) != sorted(ex.id for ex in test):
        raise ValueError(f"{files[1]} does not hold the generations of this benchmark's test posts "
                         f"(a sweep run on another benchmark: give its synthetic_options as --synthetic)")
    model, processor = training.load_adapter(str(files[0]), base=modeling.resolve_model(p["model_name"]),
                                             quantize_4bit=p["quantize_4bit"], min_pixels=p["min_pixels"],
                                             max_pixels=p["max_pixels"])
    teacher = OracleTeacher(style=p["rationale_style"])
    followed, gens = changed_reading(model, processor, test, teacher, p["max_new_tokens_cot"], p["prompt_keyphrases"],
                                     batch_size=batch_size)
    plan = interventions(test, teacher)["changed"] | text_interventions(test, teacher)
    continued = []
    for needs in ("text", "image", "composition", "combine"):
        firsts = [ex.id for ex in test if ex.meta["needs"] == needs and ex.id in plan][:2]
        continued += [{"id": i, "needs": needs, "prefill": plan[i][0], "implies": plan[i][1],
                       "raw": next(g.raw for g in gens if g.id == i), "follows": followed[i]} for i in firsts]
    rows = reading.verdicts(cot, sft, {ex.id: ex for ex in test}, followed)
    raw = {g["id"]: g["raw"] for g in cot}
    examples = {}
    for r in rows:
        if r["needs"] != "text" and r["verdict"] not in examples:
            examples[r["verdict"]] = {"id": r["id"], "needs": r["needs"], "raw": raw[r["id"]]}
    follows = {}  # the intervention alone, whatever the reading check says: does the answer follow?
    for r in rows:
        if r["follows_changed"] is not None:
            group = follows.setdefault(f"needs:{r['needs']}", dict.fromkeys(FOLLOWS, 0))
            well_formed = r["verdict"] not in reading.VERDICTS[:2]
            group["posts"] += 1
            group["follows"] += r["follows_changed"]
            group["well_formed"] += well_formed
            group["well_formed_follows"] += well_formed and r["follows_changed"]
    return {"seed": seed, "tag": tag, "counts": reading.verdict_counts(rows), "follows": follows, "examples": examples,
            "continued": continued, "answer_is_sft": sum(r["answer_is_baseline"] for r in rows)}


def summarize(path) -> dict:
    """A committed report per tag: ``{tag: {"seeds": n, group: {verdict: [count per seed]},
    "follows": {group: {count: [count per seed]}}}}`` (the groups every seed has; ``follows``:
    :data:`FOLLOWS` per kind of post)."""
    report = json.loads(Path(path).read_text())
    out = {}
    for tag, rows in report["runs"].items():
        out[tag] = {"seeds": len(rows)}
        for group in sorted(set.intersection(*(set(r["counts"]) for r in rows))):
            out[tag][group] = {k: [r["counts"][group][k] for r in rows] for k in rows[0]["counts"][group]}
        if all("follows" in r for r in rows):
            out[tag]["follows"] = {group: {k: [r["follows"][group][k] for r in rows] for k in FOLLOWS}
                                   for group in sorted(set.intersection(*(set(r["follows"]) for r in rows)))}
    return out


def main(argv: list[str] | None = None) -> int:
    def benchmark(parser):
        parser.add_argument("--synthetic", type=json.loads, default=None,
                            help="the sweep's synthetic_options, as JSON (default: the notebooks' benchmark)")

    args = adapter_probe_parser(__doc__.split("\n\n")[0], "the sweep's tag whose runs to judge",
                                benchmark).parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [run_seed(s, args.work, args.tag, args.results_dir, synthetic=args.synthetic) for s in args.seeds]
    if args.out:
        save_tag_runs(args.out, "rationale_verdicts", args.tag, rows, args.threads)
    print(json.dumps({r["seed"]: {g: r["counts"][g] for g in ("shaped", "needs:text")} | {"follows": r["follows"]}
                      for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
