"""Does the student copy the post's occasion word? Event keyphrases, run by run, from a sweep's generations.

An occasion (``birthday``, ``holiday``, ``party``, ``trip``, ``match``) is a *present* keyphrase:
the word is in the post's text (on every post of the clean split that has one), so a direct answer
and a rationale only have to pick it out and copy it. This bench counts, per run (method, tag,
seed) of ``bench.cot_seeds`` (``--work``), on the clean test posts that have an occasion keyphrase:
``right`` (the answer names it), ``other_event`` (the answer names an occasion the post does not
have) and ``missing`` (no occasion at all); and, for CoT runs, how the rationales that are not
well-formed fail (:func:`failure_classes`): ``unclosed_or_loop``, ``event_only`` (closed, but the
answer and the rationale's conclusions differ only in occasion words), ``event_and_other`` and
``other``. The default base's students pick the wrong occasion on many posts, at some seeds on
most, and it is the largest class of answers that depart from their rationale; a base pretrained
with the ``facts`` task, which answers a prompt with words picked out of it, does not (figures in
``docs/measured_figures.md``).

    python -m mmkp_helpers.bench.event_copying --tags default described facts_unordered facts_verbose pick \
        --out results/bench/event_copying_cpu2.json
"""
from __future__ import annotations

import sys
from collections import Counter


def event_counts(generations: list[dict], examples: dict) -> dict:
    """``posts`` (with an occasion keyphrase), ``right``, ``other_event``, ``missing``; and
    ``predicted_without`` (posts without one whose answer names an occasion) of one run."""
    from mmkp_helpers.synthetic import EVENTS

    out = Counter(posts=0, right=0, other_event=0, missing=0, posts_without=0, predicted_without=0)
    for g in generations:
        gold = [k for k in examples[g["id"]].keyphrases if k in EVENTS]
        named = [k for k in g["prediction"] if k in EVENTS]
        if not gold:
            out["posts_without"] += 1
            out["predicted_without"] += bool(named)
            continue
        out["posts"] += 1
        out["right"] += gold[0] in named
        out["other_event"] += any(k != gold[0] for k in named)
        out["missing"] += not named
    return dict(out)


def failure_classes(generations: list[dict]) -> dict:
    """How the generations that are not well-formed fail (module docstring); ``cot`` counts the
    generations that opened a rationale."""
    from mmkp_helpers import rationale
    from mmkp_helpers.synthetic import EVENTS

    out = Counter(cot=0, not_well_formed=0, unclosed_or_loop=0, event_only=0, event_and_other=0, other=0)
    for g in generations:
        check = rationale.check(g["raw"], g.get("hit_limit"))
        if not check.opened:
            continue
        out["cot"] += 1
        if check.well_formed:
            continue
        out["not_well_formed"] += 1
        if not (check.closed and check.loop_free):
            out["unclosed_or_loop"] += 1
            continue
        text = rationale.split_cot(g["raw"])[0]
        differ = set(rationale.conclusions(text) or []) ^ {rationale._norm(k) for k in check.answer or []}
        kind = "event_only" if differ and differ <= set(EVENTS) else "event_and_other" if differ & set(EVENTS) else "other"
        out[kind] += 1
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    from mmkp_helpers.bench.heldout_mix import emit, sweep_generations, sweep_reader

    args, examples = sweep_reader(__doc__, ["sft", "fine_tune_cot"], argv)
    report = {"bench": "event_copying", "runs": {}}
    for method, tag, seed, gens in sweep_generations(args.work, args.tags, args.methods, args.seeds):
        row = event_counts(gens, examples)
        if method != "sft":
            row["failures"] = failure_classes(gens)
        report["runs"][f"{method} {tag} {seed}"] = row
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
