"""Benchmark scripts (``python -m mmkp_helpers.bench.<name>``); each prints one JSON object."""


def run_jobs(fn, jobs: list, workers: int = 1) -> list:
    """Run ``fn(job)`` for every job in ``workers`` processes; a failed job is reported as a JSON
    ``{"error": ...}`` line on stderr and the others go on. Returns the results that came back.

    The workers are spawned, not forked: a worker forked from a parent that has already run torch
    (e.g. pretraining the tiny base on first use) waits forever on the parent's OpenMP thread pool
    (seen: a sweep idle at 0% CPU for 10 minutes); a spawned one starts clean, as a notebook's kernel does."""
    import json
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(fn, job) for job in jobs]):
            try:
                out.append(future.result())
            except Exception as exc:  # report and go on with the other runs
                print(json.dumps({"error": repr(exc)}), file=sys.stderr, flush=True)
    return out


def emit_json(obj, out: str = "") -> int:
    """Print ``obj`` as indented JSON and, when ``out`` is a path, write it there too; returns 0
    (a benchmark's exit status)."""
    import json
    from pathlib import Path

    text = json.dumps(obj, indent=1)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0


def adapter_probe_parser(description: str, tag_help: str, extra=None):
    """The command line of a bench that probes a sweep's saved runs (``bench.cot_seeds``' work
    folder) seed by seed: ``--seeds --tag --work --results-dir --threads --out``, plus what
    ``extra(parser)`` adds (between the two)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--tag", default="default", help=tag_help)
    if extra is not None:
        extra(parser)
    parser.add_argument("--work", default=".cache/cot_seeds")
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--out", default="")
    return parser


def save_tag_runs(out: str, bench: str, tag: str, rows: list, threads: int) -> None:
    """Write a tag's per-seed ``rows`` into the report ``out`` (``{"bench", "runs": {tag: rows}}``),
    where one file holds every tag's runs: this tag's rows replace its earlier ones."""
    import json
    from pathlib import Path

    path = Path(out)
    report = json.loads(path.read_text()) if path.exists() else {"bench": bench, "runs": {}}
    report["runs"][tag] = [r | {"threads": threads} for r in rows]
    path.write_text(json.dumps(report, indent=1) + "\n")

