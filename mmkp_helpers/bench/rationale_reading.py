"""Do the student's rationales read the picture, and does its answer use them? Per kind of post.

    python -m mmkp_helpers.bench.rationale_reading \
        results/tiny/04_fine_tune_cot/generations/fine_tune_cot-free.jsonl --out results/bench/rationale_reading_cpu2.json

The measures and their definitions are :mod:`mmkp_helpers.reading`'s (every record of a synthetic
run carries them as ``rationale_reading``); this command computes them for generation files, e.g.
the seed sweep's. With ``--rescore SWEEP --work DIR`` it recomputes the ``rationale_reading`` of
every row of a sweep file (``bench.cot_seeds``) whose generations are still in its work folder
(``<method>-<tag>-<seed>/generations-<decoding>.jsonl``), after a change to the measures, and
writes the file back; rows whose generations are gone (or are not the test posts of
``--results-dir``) are left as they are and listed::

    python -m mmkp_helpers.bench.rationale_reading --rescore results/bench/cot_seeds_cpu2.jsonl --work .cache/cot_seeds
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmkp_helpers.bench import emit_json
from mmkp_helpers.reading import accounts, judge, summarize  # noqa: F401  (the measures, re-exported)


def rescore(sweep: str | Path, work: str | Path, results_dir: str | Path = "results/tiny") -> dict:
    """Recompute the ``rationale_reading`` of ``sweep``'s rows from their generations in ``work``
    (the test posts and the training posts' accounts as the sweep's records had them, on the
    benchmark of each row's ``synthetic_options``), write the
    file back in its order, and return ``{"rescored": [...], "kept": [...]}`` (row names
    ``method-tag-seed decoding``)."""
    from mmkp_helpers import data, overlap

    benchmarks: dict = {}

    def benchmark(options: dict | None) -> tuple[dict, set]:  # the test posts and training accounts of a row's benchmark
        key = json.dumps(options, sort_keys=True)
        if key not in benchmarks:
            splits = overlap.prepare_splits("synthetic", results_dir, seed=0, verbose=False, synthetic=options)["clean"]
            benchmarks[key] = ({ex.id: ex for ex in data.read_jsonl(splits["test"])},
                               accounts(data.read_jsonl(splits["train"])))
        return benchmarks[key]

    lines = Path(sweep).read_text().splitlines()
    out, done = [], {"rescored": [], "kept": []}
    for line in lines:
        row = json.loads(line) if line.strip() else None
        if row is None or "rationale_reading" not in row:
            out.append(line)
            continue
        name = f"{row['method']}-{row.get('tag', 'default')}-{row['seed']}"
        path = Path(work) / name / f"generations-{row['decoding']}.jsonl"
        if not path.is_file():
            done["kept"].append(f"{name} {row['decoding']}")
            out.append(line)
            continue
        gens = [json.loads(g) for g in path.read_text().splitlines() if g.strip()]
        examples, seen = benchmark((row.get("overrides") or {}).get("synthetic_options"))
        if sorted(g["id"] for g in gens) != sorted(examples):  # another run's file, or another benchmark's
            done["kept"].append(f"{name} {row['decoding']} (its generations are not these test posts)")
            out.append(line)
            continue
        row["rationale_reading"] = summarize(gens, examples, seen)
        done["rescored"].append(f"{name} {row['decoding']}")
        out.append(json.dumps(row))
    Path(sweep).write_text("\n".join(out) + "\n")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generations", nargs="*", help="generations JSONL files of CoT decodings (notebook 04's)")
    parser.add_argument("--rescore", metavar="SWEEP", help="recompute a sweep file's rationale_reading in place")
    parser.add_argument("--work", default=".cache/cot_seeds", help="the sweep's work folder (with --rescore)")
    parser.add_argument("--results-dir", default="results/tiny", help="where the synthetic splits are (or go)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.rescore:
        return emit_json(rescore(args.rescore, args.work, args.results_dir), args.out)
    from mmkp_helpers import data, overlap

    test = data.read_jsonl(overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False)["clean"]["test"])
    examples = {ex.id: ex for ex in test}
    out = {}
    for path in args.generations:
        gens = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        out[str(path)] = summarize(gens, examples)  # keyed by the path given (sweeps repeat file names)
    return emit_json(out, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
