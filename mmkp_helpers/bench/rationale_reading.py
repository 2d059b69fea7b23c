"""Do the student's rationales read the picture, and does its answer use them? Per kind of post.

    python -m mmkp_helpers.bench.rationale_reading \
        results/tiny/04_fine_tune_cot/generations/fine_tune_cot-free.jsonl --out results/bench/rationale_reading_cpu2.json

The measures and their definitions are :mod:`mmkp_helpers.reading`'s (every record of a synthetic
run carries them as ``rationale_reading``); this command computes them for generation files, e.g.
the seed sweep's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmkp_helpers.bench import emit_json
from mmkp_helpers.reading import judge, summarize  # noqa: F401  (the measures, re-exported)


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
        out[str(path)] = summarize(gens, examples)  # keyed by the path given (sweeps repeat file names)
    return emit_json(out, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
