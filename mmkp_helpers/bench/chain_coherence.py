"""Does each step of a rationale follow from the step before it? Its colour chain, run by run.

"Well-formed" (:mod:`mmkp_helpers.rationale`) asks only that a rationale closes, does not loop and
that the answer is the list it concludes. A rationale can pass it and still contradict itself:

    the picture shows a red square on the left and a red square on the right; red and yellow make
    orange, so the car is purple: orange car.            (notebook 04, syn-test-0063; gold: red car)

reads red and red, mixes a yellow it never read, calls the car purple and concludes orange. This
bench checks the colour chain of a rationale against itself, not against the ground truth
(:func:`mmkp_helpers.reading.chain`, which also gives every CoT record its
``coherent`` share): the colours it reads (two shapes, sided or as a set, or one in the centre), its
rule step (``X and Y make Z`` over exactly the colours it read, with Z their mix; ``both are X`` /
``X stays Z`` when it read one colour twice), its claim ``the <object> is Z`` and its colour
keyphrase conclusion must all agree. Per run (``bench.cot_seeds`` generations under ``--work``) it
counts, among the well-formed rationales of each kind of post: ``coherent``, ``incoherent`` and
``no_chain`` (no colour read), and how many well-formed ones are on text posts (nothing to reason:
"the text names a boat: boat. the picture is plain grey and adds nothing.").

    python -m mmkp_helpers.bench.chain_coherence --tags default facts_verbose_steps800 \
        facts_running_steps800 --methods fine_tune_cot --out results/bench/chain_coherence_cpu2.json
"""
from __future__ import annotations

import sys
from collections import Counter

from mmkp_helpers.reading import chain

__all__ = ["chain", "counts", "main"]


def counts(generations: list[dict], examples: dict) -> dict:
    """Per kind of post, the well-formed rationales that are ``coherent``, ``incoherent`` or have
    ``no_chain``; ``well_formed`` and ``posts`` per kind."""
    from mmkp_helpers import rationale

    out: dict[str, Counter] = {}
    for g in generations:
        truth = examples[g["id"]].meta["truth"]
        row = out.setdefault(truth["needs"], Counter(posts=0, well_formed=0, coherent=0, incoherent=0, no_chain=0))
        row["posts"] += 1
        check = rationale.check(g["raw"], g.get("hit_limit"))
        if not check.well_formed:
            continue
        row["well_formed"] += 1
        if truth["needs"] != "text":
            ok = chain(rationale.split_cot(g["raw"])[0], truth["topic"])
            row["no_chain" if ok is None else "coherent" if ok else "incoherent"] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    from mmkp_helpers.bench.heldout_mix import emit, sweep_generations, sweep_reader

    args, examples = sweep_reader(__doc__, ["fine_tune_cot"], argv)
    report = {"bench": "chain_coherence", "runs": {}}
    for method, tag, seed, gens in sweep_generations(args.work, args.tags, args.methods, args.seeds):
        report["runs"][f"{method} {tag} {seed}"] = counts(gens, examples)
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
