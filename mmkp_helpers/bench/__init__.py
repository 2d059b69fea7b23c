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
