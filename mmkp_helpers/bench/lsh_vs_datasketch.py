"""Is the hand-written MinHash-LSH worth its lines beside datasketch?

    python -m mmkp_helpers.bench.lsh_vs_datasketch --n 20000 --out results/bench/lsh_vs_datasketch_cpu2.jsonl

**The sample** is the one ``tests/test_overlap.py`` checks recall on: the 10,742 public CMKP
valid+test texts (``--cmkp-dir``, default ``$MMKP_CMKP_DIR`` or ``../shared/data/cmkp``) and
:func:`~mmkp_helpers.overlap.edited_copies` of them up to ``--n`` posts, so near-duplicate pairs
exist at every similarity (``--n`` below 10,742 takes the first posts and copies a third of them).
Without the CMKP files (or with ``--source generated``), the posts of
:mod:`mmkp_helpers.bench.overlap_scale` are used instead.

**The truth** is every pair of word-bigram Jaccard >= ``--threshold`` (default 0.5):
:func:`~mmkp_helpers.overlap.brute_force_pairs` (every pair of Python sets) up to
``--brute-force-max`` posts (default 3,000), above that the exhaustive inverted-index search
(``method="exact"``), which the tests check equals brute force pair for pair.

**The methods**, all with the same shingles, the same exact-duplicate collapse, ``num_perm``
(128), the same bands x rows (datasketch's optimiser for the threshold: 26 x 3 at 0.5) and the
same confirmation of every candidate by its exact Jaccard:

- ``lsh``: the hand-written one, numpy MinHash signatures of a block of shingles at a time
  (:meth:`~mmkp_helpers.overlap.TextSets.signatures`) and numpy banding (equal band keys found by
  sorting);
- ``datasketch``: the module's ``method="datasketch"``: the same numpy signatures, banded by
  :class:`datasketch.MinHashLSH` (one :class:`~datasketch.LeanMinHash` per post);
- ``datasketch_minhash``: what would be left without the hand-written MinHash-LSH: a
  :class:`datasketch.MinHash` per post, ``update_batch`` with the same 32-bit shingle values
  (identity ``hashfunc``; datasketch's best case: no string hashing; ``MinHash.bulk`` shares the
  permutations), inserted (``insertion_session``) into and queried from
  :class:`datasketch.MinHashLSH`. Its signatures equal ours bit for bit, so it finds exactly
  the same pairs.

Each method runs in a fresh process (no cache warmed by another method), ``--repeat`` times
(median seconds), plus once under :mod:`tracemalloc`. Reported per method (one JSON line, printed
and appended to ``--out``): ``seconds`` (texts -> pairs, median; ``seconds_runs`` all runs),
``search_seconds`` (signatures + banding + confirmation, the part the methods differ in),
``tracemalloc_peak_mb`` (peak of Python and numpy allocations during the call),
``peak_rss_mb`` (the worker's peak resident memory) and ``rss_growth_mb`` (above the worker's
resident memory before the call), ``candidates``, ``pairs_found``, ``recall`` against the truth,
``extra`` (found pairs not in the truth).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("lsh", "datasketch", "datasketch_minhash")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; unlike ``ru_maxrss``, which a process
    started by fork + exec inherits from its parent, it starts afresh at exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024   # KiB
    return float("nan")


# ------------------------------------------------------------------ the sample
def _cmkp_folder(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("MMKP_CMKP_DIR"):
        return Path(os.environ["MMKP_CMKP_DIR"])
    from mmkp_helpers.paths import project_root

    return project_root().parent / "shared" / "data" / "cmkp"


def make_sample(n: int, source: str = "cmkp", cmkp_dir: str | None = None, seed: int = 0) -> tuple[list[str], str]:
    """``n`` texts with near-duplicates at every similarity, and where they come from."""
    from mmkp_helpers import overlap

    folder = _cmkp_folder(cmkp_dir) / "tw_mm_s1"
    if source == "cmkp" and (folder / "valid_src.txt").exists():
        from mmkp_helpers.data import load_cmkp

        texts = [e.text for split in ("valid", "test") for e in load_cmkp(folder, split, verbose=False)]
        base = texts[:n - n // 3] if n < len(texts) else texts
        return base + overlap.edited_copies(base, n - len(base), seed=seed), f"cmkp ({len(base)} real + copies)"
    from mmkp_helpers.bench.overlap_scale import generate_posts

    texts, _, _, _ = generate_posts(n, seed)
    return texts, "generated (overlap_scale.generate_posts)"


# ------------------------------------------------------------------ one method (in a worker process)
def _datasketch_minhash(texts, threshold, num_perm, seed, params, ngram):
    """Near-duplicate pairs with datasketch doing all of MinHash and LSH (same inputs, same
    bands x rows, same exact-Jaccard confirmation as the other methods)."""
    from datasketch import MinHash, MinHashLSH

    from mmkp_helpers import overlap
    from mmkp_helpers.overlap.lsh import _query_pairs
    from mmkp_helpers.overlap.search import RepPairs, _expand, _pairs_info

    sets = overlap.TextSets(texts, ngram)
    t0 = time.perf_counter()
    top = (sets.hashes >> np.uint64(32)).tolist()             # the same 32-bit values as TextSets.signatures
    ids = sets.ids.tolist()
    offsets = sets.offsets.tolist()
    batches = ([top[k] for k in ids[offsets[r]:offsets[r + 1]]] for r in range(sets.n_reps))
    sketches = MinHash.bulk(batches, num_perm=num_perm, seed=seed, hashfunc=int)   # shares the permutations
    lsh = MinHashLSH(num_perm=num_perm, params=params)
    with lsh.insertion_session() as session:
        for r, m in enumerate(sketches):
            session.insert(r, m, check_duplication=False)
    i, j = _query_pairs(lsh, sketches)
    jac = sets.jaccard_pairs(i, j)
    ok = jac >= threshold - 1e-12
    rp = RepPairs(i[ok], j[ok], jac[ok], "datasketch_minhash", threshold, len(i), params[0], params[1],
                  time.perf_counter() - t0)
    a, b, s = _expand(sets, rp)
    return overlap.Pairs(a, b, s, rp.method, threshold, _pairs_info(sets, rp))


def run_method(method: str, texts: list[str], threshold: float, num_perm: int, seed: int,
               params: tuple[int, int], ngram: int):
    from mmkp_helpers import overlap

    if method == "datasketch_minhash":
        return _datasketch_minhash(texts, threshold, num_perm, seed, params, ngram)
    return overlap.near_duplicate_pairs(texts, threshold, method=method, ngram=ngram, num_perm=num_perm, seed=seed,
                                        params=params)


def _worker(args) -> int:
    import tracemalloc

    import datasketch  # noqa: F401  (imported before the baseline, like numpy)

    import mmkp_helpers.overlap  # noqa: F401

    texts = json.loads(Path(args.texts).read_text())
    params = tuple(args.params)
    rss0 = _rss_mb()
    if args.trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    pairs = run_method(args.worker, texts, args.threshold, args.num_perm, args.seed, params, args.ngram)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "search_seconds": pairs.info["seconds"], "candidates": pairs.info["candidates"],
           "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss0}
    if args.trace:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    np.savez(args.pairs, i=pairs.i, j=pairs.j, jaccard=pairs.jaccard)
    print(json.dumps(out))
    return 0


def _spawn(method: str, args, folder: Path, trace: bool) -> dict:
    cmd = [sys.executable, "-m", "mmkp_helpers.bench.lsh_vs_datasketch", "--worker", method,
           "--texts", str(folder / "texts.json"), "--pairs", str(folder / f"{method}.npz"),
           "--threshold", str(args.threshold), "--num-perm", str(args.num_perm), "--seed", str(args.seed),
           "--ngram", str(args.ngram), "--params", *map(str, args.params)] + (["--trace"] if trace else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{method}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the comparison
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.bench.lsh_vs_datasketch",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="posts in the sample (default 20000)")
    parser.add_argument("--source", choices=("cmkp", "generated"), default="cmkp")
    parser.add_argument("--cmkp-dir", default=None)
    parser.add_argument("--threshold", type=float, default=None, help="Jaccard (default overlap.THRESHOLD)")
    parser.add_argument("--ngram", type=int, default=None, help="word n-grams (default overlap.NGRAM)")
    parser.add_argument("--num-perm", type=int, default=None, help="MinHash permutations (default overlap.NUM_PERM)")
    parser.add_argument("--seed", type=int, default=None, help="MinHash seed (default overlap.MINHASH_SEED)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method, each in a fresh process")
    parser.add_argument("--brute-force-max", type=int, default=3000,
                        help="truth by brute force up to this many posts, else by the exhaustive search")
    parser.add_argument("--out", default="", help="JSONL file the lines are appended to")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", help=argparse.SUPPRESS)
    parser.add_argument("--params", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from mmkp_helpers import overlap

    args.threshold = overlap.THRESHOLD if args.threshold is None else args.threshold
    args.ngram = overlap.NGRAM if args.ngram is None else args.ngram
    args.num_perm = overlap.NUM_PERM if args.num_perm is None else args.num_perm
    args.seed = overlap.MINHASH_SEED if args.seed is None else args.seed
    if args.worker:
        return _worker(args)

    t0 = time.perf_counter()
    texts, source = make_sample(args.n, args.source, args.cmkp_dir)
    args.params = list(overlap.lsh_params(args.threshold, args.num_perm))
    t1 = time.perf_counter()
    if len(texts) <= args.brute_force_max:
        truth, truth_method = overlap.brute_force_pairs(texts, args.threshold, args.ngram), "brute_force_pairs"
    else:
        truth, truth_method = overlap.near_duplicate_pairs(texts, args.threshold, "exact", args.ngram), "exact"
    truth_s = time.perf_counter() - t1
    counts, _ = np.histogram(truth.jaccard, bins=[args.threshold, args.threshold + 0.1, 0.999, 1.0])
    common = {"benchmark": "lsh_vs_datasketch", "n": len(texts), "source": source, "threshold": args.threshold,
              "ngram": args.ngram, "num_perm": args.num_perm, "bands": args.params[0], "rows": args.params[1],
              "truth_method": truth_method, "truth_seconds": round(truth_s, 3), "truth_pairs": len(truth),
              "truth_pairs_by_jaccard": {"near_threshold": int(counts[0]), "higher": int(counts[1]),
                                         "identical": int(counts[2])},
              "repeat": args.repeat, "python": platform.python_version(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d")}
    lines = []
    with tempfile.TemporaryDirectory(prefix="lsh_vs_datasketch-") as tmp:
        folder = Path(tmp)
        (folder / "texts.json").write_text(json.dumps(texts))
        for method in args.methods:
            runs = [_spawn(method, args, folder, trace=False) for _ in range(max(args.repeat, 1))]
            traced = _spawn(method, args, folder, trace=True)
            z = np.load(folder / f"{method}.npz")
            found = overlap.Pairs(z["i"], z["j"], z["jaccard"], method, args.threshold)
            r = overlap.recall(found, truth)
            line = {**common, "method": method,
                    "seconds": round(statistics.median(x["seconds"] for x in runs), 3),
                    "seconds_runs": [round(x["seconds"], 3) for x in runs],
                    "search_seconds": round(statistics.median(x["search_seconds"] for x in runs), 3),
                    "tracemalloc_peak_mb": round(traced["tracemalloc_peak_mb"], 1),
                    "peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs), 1),
                    "rss_growth_mb": round(max(x["peak_rss_mb"] - x["rss_before_mb"] for x in runs), 1),
                    "candidates": runs[0]["candidates"], "pairs_found": r["found_pairs"],
                    "found_true": r["found_true"], "recall": r["recall"], "extra": r["extra"],
                    "min_found_jaccard": round(float(found.jaccard.min()), 4) if len(found) else None}
            lines.append(line)
            print(json.dumps(line), flush=True)
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
    print(f"# total {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
