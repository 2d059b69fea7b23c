"""Train/test text overlap: which test texts repeat a training text, exactly or nearly
(:func:`text_overlap`), and each test text's most similar training text (:func:`nearest_similarity`)."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .common import EXACT_MAX_PAIRS, NGRAM, THRESHOLD, _share
from .search import _exhaustive_pairs, find_rep_pairs
from .shingles import TextSets


def text_overlap(train_texts: Sequence[str], test_texts: Sequence[str], threshold: float = THRESHOLD,
                 method: str = "lsh", ngram: int = NGRAM, examples: int = 5, arrays: bool = False,
                 **options) -> dict:
    """Which test texts repeat a training text: exactly (after normalisation) or nearly
    (shingle Jaccard >= ``threshold``; exact duplicates count as near-duplicates too).

    Returns a JSON-able dict: counts and shares of test posts with an exact / a near duplicate in
    training, the method and its bands, timings, the Jaccard values of the most similar training
    text of each near-duplicated test post (``best_jaccard``) and a few example pairs (test index,
    train index, Jaccard), most similar first among the non-identical ones. ``arrays=True`` adds
    ``"arrays"``: per test text, numpy ``exact`` and ``near`` flags and ``best`` similarity."""
    n_train, n_test = len(train_texts), len(test_texts)
    t0 = time.perf_counter()
    sets = TextSets(list(train_texts) + list(test_texts), ngram)
    rep = sets.rep_of
    has_train = np.bincount(rep[:n_train][rep[:n_train] >= 0], minlength=sets.n_reps) > 0
    has_test = np.bincount(rep[n_train:][rep[n_train:] >= 0], minlength=sets.n_reps) > 0

    def cross(i, j):
        return (has_train[i] & has_test[j]) | (has_test[i] & has_train[j])

    rp = find_rep_pairs(sets, threshold, method, keep=cross, **options)
    # the most similar training representative of each representative that has test texts
    best = np.where(has_train & has_test, 1.0, 0.0)
    partner = np.full(sets.n_reps, -1, dtype=np.int64)
    a = np.concatenate((rp.ri, rp.rj))
    b = np.concatenate((rp.rj, rp.ri))
    s = np.concatenate((rp.jaccard, rp.jaccard))
    ok = has_test[a] & has_train[b]
    a, b, s = a[ok], b[ok], s[ok]
    o = np.lexsort((b, -s, a))                      # per test-side rep: highest similarity first
    a, b, s = a[o], b[o], s[o]
    head = np.concatenate(([True], a[1:] != a[:-1])) if len(a) else np.zeros(0, dtype=bool)
    take = head & (s > best[a])
    best[a[take]] = s[take]
    partner[a[take]] = b[take]
    test_rep = rep[n_train:]
    valid = test_rep >= 0
    test_best = np.zeros(n_test)
    test_best[valid] = best[test_rep[valid]]
    exact = np.zeros(n_test, dtype=bool)
    exact[valid] = has_train[test_rep[valid]]
    near = test_best >= threshold
    # a training text for each representative (its first training text)
    first_train = np.full(sets.n_reps, -1, dtype=np.int64)
    train_idx = np.flatnonzero(rep[:n_train] >= 0)
    first_train[rep[train_idx][::-1]] = train_idx[::-1]
    shown = []
    order = np.argsort(-np.where(exact, -1.0, test_best), kind="stable")
    for t in order[:max(examples, 0) * 4]:
        if len(shown) >= examples or not near[t]:
            break
        if exact[t]:
            continue
        r = test_rep[t]
        p = partner[r]
        if p >= 0:
            shown.append({"test": int(t), "train": int(first_train[p]), "jaccard": round(float(test_best[t]), 4)})
    if len(shown) < examples:
        for t in np.flatnonzero(exact)[:examples - len(shown)]:
            shown.append({"test": int(t), "train": int(first_train[test_rep[t]]), "jaccard": 1.0})
    return {
        "train_posts": n_train, "test_posts": n_test, "threshold": threshold, "ngram": ngram, "method": rp.method,
        "bands": rp.bands, "rows": rp.rows, "candidates": rp.candidates, "confirmed_pairs": len(rp.ri),
        "test_empty_texts": int((~valid).sum()),
        "exact_duplicates": int(exact.sum()), "exact_duplicate_share": _share(int(exact.sum()), n_test),
        "near_duplicates": int(near.sum()), "near_duplicate_share": _share(int(near.sum()), n_test),
        "best_jaccard": [round(float(x), 4) for x in test_best[near]],
        "examples": shown, "seconds": round(time.perf_counter() - t0, 3),
    } | ({"arrays": {"exact": exact, "near": near, "best": test_best}} if arrays else {})


def nearest_similarity(train_texts: Sequence[str], test_texts: Sequence[str], ngram: int = NGRAM,
                       max_pairs: int = EXACT_MAX_PAIRS) -> np.ndarray:
    """For every test text, the exact Jaccard of its most similar training text (0 when they share
    no shingle). Exhaustive (every pair sharing a shingle), for histograms on up to ~10^5 posts."""
    n_train = len(train_texts)
    sets = TextSets(list(train_texts) + list(test_texts), ngram)
    rep = sets.rep_of
    has_train = np.bincount(rep[:n_train][rep[:n_train] >= 0], minlength=sets.n_reps) > 0
    has_test = np.bincount(rep[n_train:][rep[n_train:] >= 0], minlength=sets.n_reps) > 0
    i, j, jac = _exhaustive_pairs(sets, keep=lambda i, j: (has_train[i] & has_test[j]) | (has_test[i] & has_train[j]),
                                  max_pairs=max_pairs)
    best = np.where(has_train & has_test, 1.0, 0.0)
    for a, b in ((i, j), (j, i)):
        ok = has_test[a] & has_train[b]
        np.maximum.at(best, a[ok], jac[ok])
    test_rep = rep[n_train:]
    return np.where(test_rep >= 0, best[np.maximum(test_rep, 0)] if sets.n_reps else 0.0, 0.0)
