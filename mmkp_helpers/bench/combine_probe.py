"""Combine posts: can a chain of steps, each trained on other posts, reach a mix a direct answer never saw?

    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --methods sft fine_tune_cot --free-only \
        --set '{"synthetic_options": {"p_image": 0.25, "p_combine": 0.2}, "heldout_combines": ["green"]}' \
        --results-dir .cache/combine/results --work .cache/combine/work --tag combine_green \
        --out results/bench/combine_probe_cpu2.jsonl
    (likewise --tag facts_combine_green with "model_name": "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts"
     added to --set, and layers4_facts_combine_green with "tiny-qwen2_vl?layers=4&tasks=caption+continue+repeat+list+facts",
     and facts_combine_green_steps800 with the facts base and "max_steps": 800; with "reread_share": 0.5 added
     and --methods fine_tune_cot, facts_combine_green_steps800_rr50; on the default base combine_green_steps800
     (--methods sft) and combine_green_steps800_rr50 (--methods fine_tune_cot, "reread_share": 0.5); all
     appended to the same file)
    python -m mmkp_helpers.bench.combine_probe --tags combine_green facts_combine_green layers4_facts_combine_green \
        facts_combine_green_steps800 facts_combine_green_steps800_rr50 combine_green_steps800 \
        combine_green_steps800_rr50 \
        --set '{"synthetic_options": {"p_image": 0.25, "p_combine": 0.2}, "heldout_combines": ["green"]}' \
        --results-dir .cache/combine/results --work .cache/combine/work --out results/bench/combine_probe_posts_cpu2.json

A *combine* post (``p_combine``, :mod:`mmkp_helpers.synthetic`) names a primary in its text ("look at
this car in blue ..."), its picture has one shape of another primary, and the object's colour is
their mix (blue and yellow make green: ``green car``). With ``heldout_combines`` (green) no combine
post of that mix trains, but every step a chain needs is trained on other posts: copying a text
word (every post), reading one shape in the centre (image posts), and the rule "blue and yellow
make green" (the green composition posts, whose rationales write it). A direct answer has to map
(the word blue, a yellow shape) to green in one pass, a pair it never saw in that form; a rationale
can write "the text names blue and the picture shows a yellow square in the centre; blue and yellow
make" and finish with the rule it learned elsewhere.

Per method and seed, on the clean test split's combine posts of the held-out mixes (and, as
``other_*``, the other combine posts): ``colour_named`` (the answer holds the post's colour
keyphrase); for rationales: ``reads_text`` (the text's primary read: "the text names blue"),
``reads_shape`` (the shape's primary: "a yellow square in the centre"), ``rule_right`` (a rule
step "X and Y make Z" over the post's two primaries, Z their mix) and ``coherent``
(:func:`mmkp_helpers.reading.chain`); and the colour keyphrases answered most often.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from mmkp_helpers.reading import CENTRE, RULE, TINT


def count_posts(generations: list[dict], examples: dict, mixes: set[str]) -> dict:
    """The counts (module docstring) of one run's generations (dicts of a generations JSONL)."""
    from mmkp_helpers.reading import chain
    from mmkp_helpers.synthetic import mix

    keys = ("posts", "colour_named", "reads_text", "reads_shape", "rule_right", "coherent")
    out = dict.fromkeys(keys + tuple(f"other_{k}" for k in keys), 0)
    answered: Counter = Counter()
    for g in generations:
        truth = examples[g["id"]].meta["truth"]
        if truth["needs"] != "combine":
            continue
        pre = "" if truth["colour"] in mixes else "other_"
        tint, paint = truth["primaries"]
        raw = g["raw"]
        text_read, shape_read, rule = TINT.search(raw), CENTRE.search(raw), RULE.search(raw)
        out[pre + "posts"] += 1
        out[pre + "colour_named"] += f"{truth['colour']} {truth['topic']}" in g["prediction"]
        out[pre + "reads_text"] += bool(text_read) and next(c for c in text_read.groups() if c) == tint
        out[pre + "reads_shape"] += bool(shape_read) and next(c for c in shape_read.groups() if c) == paint
        out[pre + "rule_right"] += (bool(rule) and sorted(rule.group(1, 2)) == sorted((tint, paint))
                                    and rule.group(3) == mix(tint, paint))
        out[pre + "coherent"] += chain(raw.split("</think>")[0], truth["topic"]) is True
        if not pre:
            answered.update(k for k in g["prediction"] if k.endswith(" " + truth["topic"]) and " " in k)
    out["answered"] = dict(answered.most_common(4))
    return out


def main(argv: list[str] | None = None) -> int:
    from mmkp_helpers import data, overlap
    from mmkp_helpers.bench.heldout_mix import emit, sweep_generations

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", nargs="+", required=True)
    parser.add_argument("--set", required=True, help="the sweep's --set (its synthetic_options and heldout_combines)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "fine_tune_cot"])
    parser.add_argument("--work", required=True)
    parser.add_argument("--results-dir", required=True)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    overrides = json.loads(args.set)
    splits = overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False,
                                    synthetic=overrides.get("synthetic_options"))["clean"]
    examples = {ex.id: ex for ex in data.read_jsonl(splits["test"])}
    mixes = set(overrides.get("heldout_combines") or ())
    report = {"bench": "combine_probe", "set": overrides, "runs": {}}
    for method, tag, seed, gens in sweep_generations(args.work, args.tags, args.methods, args.seeds):
        report["runs"][f"{method} {tag} {seed}"] = count_posts(gens, examples, mixes)
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
