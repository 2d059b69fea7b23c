"""Near-duplicate search: representative pairs by ``lsh``, ``datasketch``, ``exact`` or ``auto``
(:func:`find_rep_pairs`), text pairs (:func:`near_duplicate_pairs`), the brute-force reference
(:func:`brute_force_pairs`) and the clusters (:func:`near_duplicate_clusters`).

Two posts are *near-duplicates* when the Jaccard similarity of their sets of word n-grams
(shingles, default bigrams) is at least a threshold (default 0.5); exact duplicates (equal
normalised token sequences) count as near-duplicates too. Texts that normalise to nothing take
part in neither.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .arrays import _encode, _groups, _pairs_within, _unique, _unique_inverse
from .common import EXACT_MAX_PAIRS, LSH_WEIGHTS, METHODS, MINHASH_SEED, NGRAM, NUM_PERM, THRESHOLD
from .lsh import _datasketch_candidates, _lsh_candidates, lsh_params
from .shingles import TextSets, shingle_set


@dataclass
class RepPairs:
    """Near-duplicate pairs between representatives (see :class:`TextSets`)."""
    ri: np.ndarray
    rj: np.ndarray
    jaccard: np.ndarray
    method: str
    threshold: float
    candidates: int
    bands: int | None = None
    rows: int | None = None
    seconds: float = 0.0


def _exhaustive_pairs(sets: TextSets, keep=None, max_pairs: int = EXACT_MAX_PAIRS,
                      min_jaccard: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every representative pair sharing a shingle, with its exact Jaccard (inverted index)."""
    total = sets.shingle_pair_count()
    if total > max_pairs:
        raise MemoryError(f"the exhaustive method would generate {total:,} (pair, shingle) items "
                          f"(more than max_pairs={max_pairs:,}); use method='lsh'")
    order = np.argsort(sets.ids, kind="stable")
    reps = sets.rep_elem[order]
    _, sizes = _groups(sets.ids[order])
    multi = sizes >= 2
    if not multi.any():
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    members = reps[np.repeat(multi, sizes)]
    msizes = sizes[multi]
    codes = []
    # chunks of whole groups, ~10M pairs each
    pair_counts = msizes * (msizes - 1) // 2
    cum = np.cumsum(pair_counts)
    g0, e0 = 0, 0
    while g0 < len(msizes):
        g1 = int(np.searchsorted(cum, (cum[g0 - 1] if g0 else 0) + 10_000_000, side="right"))
        g1 = max(g1, g0 + 1)
        e1 = e0 + int(msizes[g0:g1].sum())
        a, b = _pairs_within(members[e0:e1], msizes[g0:g1])
        i, j = np.minimum(a, b), np.maximum(a, b)
        if keep is not None and len(i):
            ok = keep(i, j)
            i, j = i[ok], j[ok]
        codes.append(_encode(i, j, sets.n_reps))
        g0, e0 = g1, e1
    code, inter = _unique(np.concatenate(codes), counts=True)
    i, j = code // sets.n_reps, code % sets.n_reps
    jac = inter / (sets.sizes[i] + sets.sizes[j] - inter)
    ok = jac >= min_jaccard
    return i[ok], j[ok], jac[ok]


def find_rep_pairs(sets: TextSets, threshold: float = THRESHOLD, method: str = "lsh", num_perm: int = NUM_PERM,
                   seed: int = MINHASH_SEED, weights: tuple[float, float] = LSH_WEIGHTS,
                   params: tuple[int, int] | None = None, keep=None,
                   max_pairs: int = EXACT_MAX_PAIRS) -> RepPairs:
    """Near-duplicate representative pairs (Jaccard >= threshold).

    ``method``: ``lsh`` (numpy banding), ``datasketch`` (MinHashLSH), ``exact`` (every pair
    sharing a shingle), or ``auto``: ``exact`` when it would generate at most ``max_pairs``
    (pair, shared shingle) items (known in advance from the shingles' document frequencies), else
    ``lsh``. ``keep(i, j)``: an optional filter on candidate pairs (e.g. only train-test pairs),
    applied before the exact check."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {METHODS}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold {threshold} must lie in (0, 1]")
    start = time.perf_counter()
    bands = rows = None
    if method == "auto":
        method = "exact" if sets.shingle_pair_count() <= max_pairs else "lsh"
    if method == "exact":
        i, j, jac = _exhaustive_pairs(sets, keep=keep, max_pairs=max_pairs, min_jaccard=threshold)
        n_candidates = len(i)
    else:
        bands, rows = params or lsh_params(threshold, num_perm, weights)
        sig = sets.signatures(num_perm, seed, columns=bands * rows)
        if method == "lsh":
            i, j = _lsh_candidates(sets, sig, bands, rows, keep=keep)
        else:
            i, j = _datasketch_candidates(sets, sig, num_perm, seed, bands, rows)
            if keep is not None and len(i):
                ok = keep(i, j)
                i, j = i[ok], j[ok]
        n_candidates = len(i)
        jac = sets.jaccard_pairs(i, j)
        ok = jac >= threshold - 1e-12
        i, j, jac = i[ok], j[ok], jac[ok]
    return RepPairs(i, j, jac, method, threshold, n_candidates, bands, rows, time.perf_counter() - start)


def _expand(sets: TextSets, pairs: RepPairs, include_exact: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text-level pairs (i < j) from representative pairs, plus exact duplicates (Jaccard 1)."""
    order, counts = sets.members()
    first = np.concatenate(([0], np.cumsum(counts)))
    ci, cj = counts[pairs.ri], counts[pairs.rj]
    per = ci * cj
    idx = np.repeat(np.arange(len(per)), per)
    k = np.arange(int(per.sum()), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    a = order[first[pairs.ri][idx] + k // cj[idx]]
    b = order[first[pairs.rj][idx] + k % cj[idx]]
    jac = pairs.jaccard[idx]
    parts = [(np.minimum(a, b), np.maximum(a, b), jac)]
    if include_exact:
        ea, eb = sets.exact_duplicate_pairs()
        parts.append((ea, eb, np.ones(len(ea))))
    i = np.concatenate([p[0] for p in parts]).astype(np.int64)
    j = np.concatenate([p[1] for p in parts]).astype(np.int64)
    jac = np.concatenate([p[2] for p in parts])
    o = np.lexsort((j, i))
    return i[o], j[o], jac[o]


@dataclass
class Pairs:
    """Near-duplicate text pairs: ``i[k] < j[k]`` are text indices, ``jaccard[k]`` their similarity
    (1.0 for exact duplicates after normalisation)."""
    i: np.ndarray
    j: np.ndarray
    jaccard: np.ndarray
    method: str
    threshold: float
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.i)

    def as_set(self) -> set[tuple[int, int]]:
        return set(zip(self.i.tolist(), self.j.tolist()))


def near_duplicate_pairs(texts: Sequence[str], threshold: float = THRESHOLD, method: str = "lsh",
                         ngram: int = NGRAM, **options) -> Pairs:
    """Every pair of texts whose shingle Jaccard is >= ``threshold`` (exact duplicates included),
    found by ``method`` (``lsh``, ``datasketch`` or ``exact``; see the module docstring).
    ``options``: ``num_perm``, ``seed``, ``weights``, ``params`` (bands, rows), ``max_pairs``."""
    sets = TextSets(texts, ngram)
    rp = find_rep_pairs(sets, threshold, method, **options)
    i, j, jac = _expand(sets, rp)
    return Pairs(i, j, jac, rp.method, threshold, _pairs_info(sets, rp))


def _pairs_info(sets: TextSets, rp: RepPairs) -> dict:
    return {"method": rp.method, "texts": sets.n, "distinct_texts": sets.n_reps, "empty_texts": sets.n_empty,
            "candidates": rp.candidates, "confirmed": len(rp.ri), "bands": rp.bands, "rows": rp.rows,
            "seconds": round(rp.seconds, 3)}


def brute_force_pairs(texts: Sequence[str], threshold: float = THRESHOLD, ngram: int = NGRAM) -> Pairs:
    """Literally every pair, Jaccard over Python sets of token tuples (slow: a few thousand texts)."""
    sets = [shingle_set(t, ngram) for t in texts]
    ii, jj, jac = [], [], []
    for a in range(len(sets)):
        sa = sets[a]
        if not sa:
            continue
        for b in range(a + 1, len(sets)):
            sb = sets[b]
            if sb:
                inter = len(sa & sb)
                if inter:
                    s = inter / (len(sa) + len(sb) - inter)
                    if s >= threshold:
                        ii.append(a)
                        jj.append(b)
                        jac.append(s)
    return Pairs(np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64), np.asarray(jac), "brute-force",
                 threshold)


def near_duplicate_clusters(texts: Sequence[str], threshold: float = THRESHOLD, method: str = "lsh",
                            ngram: int = NGRAM, **options) -> tuple[np.ndarray, dict]:
    """A cluster id per text: connected components of the near-duplicate graph (exact duplicates
    are one component; a text with no tokens is alone). Ids are numbered by first text."""
    sets = TextSets(texts, ngram)
    rp = find_rep_pairs(sets, threshold, method, **options)
    parent = np.arange(sets.n_reps, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(rp.ri.tolist(), rp.rj.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(r) for r in range(sets.n_reps)], dtype=np.int64)
    label = np.where(sets.rep_of >= 0, roots[np.maximum(sets.rep_of, 0)] if sets.n_reps else 0, -1)
    # texts without tokens: their own clusters
    label = np.where(label >= 0, label, sets.n_reps + np.arange(sets.n))
    _, first, inv = _unique_inverse(label)
    renumber = np.empty(len(first), dtype=np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(len(first))
    cluster = renumber[inv]
    sizes = np.bincount(cluster)
    info = _pairs_info(sets, rp) | {"clusters": int(len(sizes)), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
                                    "texts_in_clusters": int(sizes[sizes > 1].sum())}
    return cluster, info
