"""How fast the CMKP-compatible evaluator scores the 5,372 CMKP test posts.

Run ``python -m mmkp_helpers.bench.score_speed`` (options: ``--src``, ``--pred``, ``--repeats``,
``--cli``). It prints one JSON object:

- ``read_s``: reading the source and the predictions;
- ``score_cold_s``: :func:`mmkp_helpers.metrics.score_examples` with empty stem caches (the
  first scoring in a fresh process);
- ``score_warm_s``: the median of ``--repeats`` further runs (caches filled);
- ``read_and_score_cold_s``: the two first items together, the figure held against the 1-second
  claim (``under_1s``);
- ``cli_wall_s`` (with ``--cli``): the whole ``mmkp-score`` command in a new process, Python
  start-up and imports included;
- the scores themselves, so a run also shows that the fast path gives the published figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from mmkp_helpers import text
    from mmkp_helpers.data import cmkp_dir, read_cmkp_src
    from mmkp_helpers.metrics import METRIC_NAMES, read_predictions, score_examples

    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.bench.score_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--src", help="CMKP *_src.txt (default: tw_mm_s1/test_src.txt of cmkp_dir())")
    parser.add_argument("--pred", help="predictions (default: sample_pred/best_pred.txt of cmkp_dir())")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="also time the mmkp-score command in a new process")
    args = parser.parse_args(argv)
    if not (args.src and args.pred):
        root = cmkp_dir()
        args.src = args.src or str(root / "tw_mm_s1" / "test_src.txt")
        args.pred = args.pred or str(root / "sample_pred" / "best_pred.txt")

    text.clear_caches()
    t0 = time.perf_counter()
    examples = read_cmkp_src(args.src)
    predictions = read_predictions(args.pred, expected_lines=len(examples))
    t1 = time.perf_counter()
    result = score_examples(predictions, examples)
    t2 = time.perf_counter()
    warm = []
    for _ in range(max(args.repeats, 1)):
        start = time.perf_counter()
        score_examples(predictions, examples)
        warm.append(time.perf_counter() - start)

    out = {
        "benchmark": "score_speed",
        "posts": len(examples),
        "read_s": round(t1 - t0, 4),
        "score_cold_s": round(t2 - t1, 4),
        "score_warm_s": round(statistics.median(warm), 4),
        "read_and_score_cold_s": round(t2 - t0, 4),
        "under_1s": (t2 - t0) < 1.0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "processor": platform.processor()
                    or platform.machine()},
        "scores": {subset: {m: round(result[subset][m], 5) for m in METRIC_NAMES}
                   for subset in ("all", "present", "absent")},
    }
    if args.cli:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.metrics", "--pred", args.pred, "--src", args.src,
                               "--json"], capture_output=True, text=True, cwd=Path.cwd())
        out["cli_wall_s"] = round(time.perf_counter() - start, 4)
        out["cli_returncode"] = proc.returncode
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
