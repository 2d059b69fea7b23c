"""Do the student's rationales read the picture, and does its answer use them? Per kind of post.

    python -m mmkp_helpers.bench.rationale_reading \
        results/tiny/04_fine_tune_cot/generations/fine_tune_cot-free.jsonl --out results/bench/rationale_reading_cpu2.json

Well-formed (closed, loop-free, answer-consistent; :mod:`mmkp_helpers.rationale`) says nothing
about whether a rationale's evidence is true. On the synthetic benchmark the ground truth is
known, so each CoT generation is also judged against it with the oracle's own checker
(:func:`mmkp_helpers.teacher.oracle.check_oracle_rationale`: every gold keyphrase concluded by a
sentence that states its true cue, e.g. both shapes with their primaries and the mixed colour on a
composition post, in the answer's order). Per kind of post (``needs``) it counts:

- ``well_formed``: the generation's failure kind is ``well_formed``;
- ``reads_truly``: the rationale passes the ground-truth check (it reasons from true evidence);
- ``concludes_gold``: the rationale's conclusions are the gold keyphrases (however it got there);
- ``answer_follows``: the answer after ``</think>`` is what the rationale concludes;
- ``answer_gold``: the answer is the gold set;
- ``answer_gold_without_true_reading``: right answers whose rationale did not read truly.

And how an answer that does not follow its rationale departs from it (a closed rationale with
conclusions and a non-empty answer; at most one applies; keyphrases normalised as
:func:`mmkp_helpers.rationale.consistent` does):

- ``answer_is_final_list``: it is the last concluding sentence's list, which lost an item the
  rationale concluded earlier (the ``running`` style restates the answer in every conclusion);
- ``answer_drops``: otherwise, it is a strict subset of the conclusions (it leaves some out);
- ``answer_adds``: otherwise, it holds a keyphrase the rationale never concluded.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence


def _norm(items: Iterable[str]) -> set[str]:
    return {" ".join(i.lower().split()) for i in items if i.strip()}


def judge(raw: str, example, hit_limit: bool | None = None) -> dict[str, bool]:
    """The counts' flags for one generation of ``example`` (a synthetic post with its truth)."""
    from mmkp_helpers import rationale
    from mmkp_helpers.teacher.oracle import check_oracle_rationale

    check = rationale.check(raw, hit_limit)
    text = rationale.split_cot(raw)[0] if check.opened else ""
    gold = _norm(example.keyphrases)
    concluded = rationale.conclusions(text) or []
    reads = check.opened and not check_oracle_rationale(example, text)
    answer_gold = _norm(check.answer) == gold
    answer = {kp for kp in map(rationale._norm, check.answer or []) if kp}
    final = set(rationale.final_conclusion(text) or [])
    departs = bool(check.opened and concluded and answer and not check.consistent)
    is_final = departs and answer == final
    drops = departs and not is_final and answer < set(concluded)
    return {"opened": check.opened, "well_formed": check.kind == "well_formed", "reads_truly": reads,
            "concludes_gold": _norm(concluded) == gold, "answer_follows": bool(check.consistent),
            "answer_gold": answer_gold, "answer_gold_without_true_reading": answer_gold and not reads,
            "answer_is_final_list": is_final, "answer_drops": drops,
            "answer_adds": departs and not is_final and not drops and not answer <= set(concluded)}


def summarize(generations: Sequence[dict], examples: dict) -> dict:
    """Shares of :func:`judge`'s flags per ``needs`` kind and over all posts, with post counts."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for g in generations:
        ex = examples[g["id"]]
        flags = judge(g["raw"], ex, g.get("hit_limit"))
        for group in ("all", f"needs:{(ex.meta or {}).get('needs', '-')}"):
            counts[group]["posts"] += 1
            counts[group].update(k for k, v in flags.items() if v)
    keys = ("opened", "well_formed", "reads_truly", "concludes_gold", "answer_follows", "answer_gold",
            "answer_gold_without_true_reading", "answer_is_final_list", "answer_drops", "answer_adds")
    return {group: {"posts": c["posts"], **{k: round(c[k] / c["posts"], 4) for k in keys}}
            for group, c in sorted(counts.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generations", nargs="+", help="generations JSONL files of CoT decodings (notebook 04's)")
    parser.add_argument("--results-dir", default="results/tiny", help="where the synthetic splits are (or go)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    from mmkp_helpers import data, overlap

    test = data.read_jsonl(overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False)["clean"]["test"])
    examples = {ex.id: ex for ex in test}
    out = {}
    for path in args.generations:
        gens = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        out[Path(path).name] = summarize(gens, examples)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
