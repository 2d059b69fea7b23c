"""Splits of a pool: the plain random split (:func:`random_split`), the de-overlapped ("clean") split
(:func:`build_clean_split`), the overlap figures of a split (:func:`split_figures`) and its files
(:func:`write_split`).

The clean split puts every near-duplicate cluster (connected component of the near-duplicate
graph, found with ``method="auto"``, so exactly whenever the pool allows) wholly into one part,
and steers the share of unseen test keyphrase occurrences to the requested one: it holds
keyphrases out of training (every post carrying one goes to valid or test) or, when a plain cut
leaves too many unseen (a small pool has many rare keyphrases), keeps the rarest in training. The
random split ("original") cuts the same pool into parts of the same sizes, keeping whatever
overlap falls across.
"""
from __future__ import annotations

import os
import random
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data import Example, train_keyphrases, write_jsonl
from .common import NGRAM, THRESHOLD
from .keyphrases import keyphrase_overlap, normalize_keyphrase, present_absent
from .search import near_duplicate_clusters
from .texts import text_overlap


def _sizes(n: int, valid_share: float, test_share: float) -> dict[str, int]:
    if not (0 <= valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise ValueError(f"valid_share={valid_share}, test_share={test_share}: need 0 < shares, sum < 1")
    n_test = int(round(test_share * n))
    n_valid = int(round(valid_share * n))
    return {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}


def random_split(pool: Sequence[Example], sizes: dict[str, int], seed: int = 0) -> dict[str, list[Example]]:
    """A plain seeded shuffle cut into ``{"train", "valid", "test"}`` of the given sizes (the
    "original"-style split: near-duplicates and keyphrases fall where they fall)."""
    if sum(sizes.values()) != len(pool):
        raise ValueError(f"sizes {sizes} do not add up to the pool's {len(pool)} posts")
    order = list(range(len(pool)))
    random.Random(f"{seed}-random-split").shuffle(order)
    out, start = {}, 0
    for name in ("test", "valid", "train"):
        out[name] = [pool[i] for i in sorted(order[start:start + sizes[name]])]
        start += sizes[name]
    return {name: out[name] for name in ("train", "valid", "test")}


@dataclass
class _SplitState:
    clusters: list[list[int]]
    order: list[int]            # clusters in seeded random order


def _assign(state: _SplitState, held: set[int], kept: set[int], sizes: dict[str, int]) -> dict[str, list[int]]:
    """Clusters -> parts. ``held`` clusters (carrying a held-out keyphrase) go to valid/test, in
    proportion to their sizes; ``kept`` clusters go to train; the others, in the seeded order,
    fill what is left of test and valid, and the rest is train."""
    clusters = state.clusters
    want = {"test": sizes["test"], "valid": sizes["valid"]}
    room = dict(want)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    got = {"test": 0, "valid": 0}
    for c in state.order:
        if c not in held:
            continue
        size = len(clusters[c])
        # the part furthest behind its share of the held-out posts first
        for p in sorted(("test", "valid"), key=lambda p: (got[p] + size) / max(want[p], 1e-9)):
            if want[p] > 0 and room[p] >= size:
                parts[p].append(c)
                room[p] -= size
                got[p] += size
                break
        else:
            parts["train"].append(c)  # fits nowhere: its keyphrases stay seen
    for c in state.order:
        if c in held:
            continue
        size = len(clusters[c])
        if c not in kept:
            for p in ("test", "valid"):
                if room[p] >= size:
                    parts[p].append(c)
                    room[p] -= size
                    break
            else:
                parts["train"].append(c)
        else:
            parts["train"].append(c)
    return parts


def _unseen_share(pool: Sequence[Example], state: _SplitState, parts: dict[str, list[int]]) -> float:
    seen = {normalize_keyphrase(kp) for c in parts["train"] for i in state.clusters[c] for kp in pool[i].keyphrases}
    total = unseen = 0
    for c in parts["test"]:
        for i in state.clusters[c]:
            for kp in pool[i].keyphrases:
                total += 1
                unseen += normalize_keyphrase(kp) not in seen
    return unseen / total if total else 0.0


def build_clean_split(pool: Sequence[Example], sizes: dict[str, int], seed: int = 0, unseen_share: float | None = 0.1,
                      threshold: float = THRESHOLD, ngram: int = NGRAM, method: str = "auto",
                      max_holdout_posts: int | None = None, tolerance: float = 0.02,
                      hold_out: Sequence[str] = (), **options) -> tuple[dict[str, list[Example]], dict]:
    """A train/valid/test split of ``pool`` without near-duplicates across parts, with about
    ``unseen_share`` of the test keyphrase occurrences unseen in train.

    1. Near-duplicate clusters (:func:`near_duplicate_clusters`, Jaccard >= ``threshold``) are the
       units: a cluster goes wholly to one part. With ``method="auto"`` (default) the clusters
       come from the exhaustive exact search whenever it is affordable (pools up to some 10^5
       tweet-length posts), so "no near-duplicate across parts" holds exactly; beyond, from
       MinHash-LSH, whose misses (about 1% of pairs near the threshold) may cross.
    2. The unseen share is steered with keyphrases carried by at most ``max_holdout_posts``
       posts (default: ``unseen_share`` x the valid+test size, so that no single keyphrase
       overshoots), taken in a seeded random order. When a plain fill leaves fewer unseen test
       keyphrases than asked, the first k of them are *held out*: every cluster carrying one
       goes to valid or test. When it leaves more (a small pool has many rare keyphrases), the
       clusters of the first k are *kept* in train instead. k is found by bisection, and of the
       two k around the target the closer is used.
    3. The remaining clusters, in seeded random order, fill test and valid to their sizes; the
       rest is train.
    ``unseen_share=None`` skips step 2: the share is what the clusters (and ``hold_out``) give.
    ``hold_out``: keyphrases that must stay unseen whatever the steering does (every cluster
    carrying one goes to valid or test; they are never kept in train), e.g. the synthetic
    benchmark's held-out colour x object pairs, which a model can reach by combining seen words.
    Same pool, sizes and seed: the same split. Returns the parts (each in pool order) and an
    info dict (clusters, held-out or kept keyphrases, achieved unseen share). A warning says so
    when the achieved share is more than ``tolerance`` away from the target (the pool cannot
    give it: e.g. too few rare keyphrases)."""
    if sum(sizes.values()) != len(pool):
        raise ValueError(f"sizes {sizes} do not add up to the pool's {len(pool)} posts")
    steer = unseen_share is not None
    if steer and not 0.0 <= unseen_share < 1.0:
        raise ValueError("unseen_share must lie in [0, 1) (or None: no steering)")
    t0 = time.perf_counter()
    cluster_of, cinfo = near_duplicate_clusters([e.text for e in pool], threshold, method, ngram, **options)
    clusters: list[list[int]] = [[] for _ in range(int(cluster_of.max()) + 1 if len(pool) else 0)]
    for i, c in enumerate(cluster_of.tolist()):
        clusters[c].append(i)
    kp_clusters: dict[str, set[int]] = defaultdict(set)
    for i, ex in enumerate(pool):
        for kp in ex.keyphrases:
            kp_clusters[normalize_keyphrase(kp)].add(int(cluster_of[i]))
    order = list(range(len(clusters)))
    random.Random(f"{seed}-clusters").shuffle(order)
    state = _SplitState(clusters, order)
    n_eval = sizes["test"] + sizes["valid"]
    cap = max_holdout_posts if max_holdout_posts is not None else max(1, int((unseen_share or 0.0) * n_eval))
    posts_of = {kp: sum(len(clusters[c]) for c in cs) for kp, cs in kp_clusters.items()}
    # held out: a seeded random order (varied keyphrases); kept in train: the rarest first
    # (the keyphrases of one or two posts are the ones a plain fill leaves unseen)
    held_order = sorted(kp for kp, n in posts_of.items() if n <= cap)
    random.Random(f"{seed}-holdout").shuffle(held_order)
    forced = {normalize_keyphrase(kp) for kp in hold_out} & set(kp_clusters)
    forced_clusters = set().union(*(kp_clusters[kp] for kp in forced)) if forced else set()
    held_order = [kp for kp in held_order if kp not in forced]
    kept_order = sorted(held_order, key=lambda kp: posts_of[kp])

    def prefixes(candidates: list[str], limit: int) -> list[set[int]]:
        """Cluster sets forced by the first k candidates, k = 0, 1, ... while they fit ``limit`` posts."""
        out, total = [set()], 0
        for kp in candidates:
            new = kp_clusters[kp] - out[-1]
            total += sum(len(clusters[c]) for c in new)
            if total > limit:
                break
            out.append(out[-1] | new)
        return out

    cache: dict[int, tuple[float, dict]] = {}
    held_sets: list[set[int]] = [set()]
    kept_sets: list[set[int]] = [set()]

    def evaluate(k: int) -> float:
        """k > 0: hold out the first k candidates; k < 0: keep the first -k in train."""
        if k not in cache:
            held = (held_sets[k] if k > 0 else set()) | forced_clusters
            kept = (kept_sets[-k] if k < 0 else set()) - forced_clusters
            parts = _assign(state, held, kept, sizes)
            cache[k] = (_unseen_share(pool, state, parts), parts)
        return cache[k][0]

    plain = evaluate(0)
    if not steer:
        unseen_share = plain
    if plain < unseen_share:
        held_sets = prefixes(held_order, n_eval)
        sign, top, candidates = 1, len(held_sets) - 1, held_order
    else:
        kept_sets = prefixes(kept_order, sizes["train"] // 2)
        sign, top, candidates = -1, len(kept_sets) - 1, kept_order

    def reached(k: int) -> bool:
        v = evaluate(sign * k)
        return v >= unseen_share if sign > 0 else v <= unseen_share

    if plain != unseen_share and top > 0:
        lo, hi = 0, 1                          # doubling to the first k that reaches the target ...
        while hi < top and not reached(hi):
            lo, hi = hi, min(2 * hi, top)
        if reached(hi):
            while hi - lo > 1:                 # ... then bisection: not reached(lo), reached(hi)
                mid = (lo + hi) // 2
                if reached(mid):
                    hi = mid
                else:
                    lo = mid
    # of every split tried, the one closest to the target (the fewest forced keyphrases on ties)
    best = min(cache, key=lambda k: (abs(cache[k][0] - unseen_share), abs(k)))
    share, parts = cache[best]
    chosen = candidates[:abs(best)]
    out = {name: [pool[i] for i in sorted(i for c in parts[name] for i in clusters[c])]
           for name in ("train", "valid", "test")}
    info = {"clusters": cinfo, "steering_candidates": len(held_order), "max_steering_posts": cap,
            "held_out_keyphrases": sorted(chosen) if best > 0 else [], "forced_unseen_keyphrases": sorted(forced),
            "kept_in_train_keyphrases": sorted(chosen) if best < 0 else [],
            "unseen_share_plain": round(plain, 6), "unseen_share_target": unseen_share,
            "unseen_share_achieved": round(share, 6), "within_tolerance": abs(share - unseen_share) <= tolerance,
            "search_steps": len(cache), "seconds": round(time.perf_counter() - t0, 3)}
    if not info["within_tolerance"]:
        warnings.warn(f"clean split: unseen test keyphrase share {share:.3f}, target {unseen_share} (tolerance "
                      f"{tolerance}): this pool cannot give more/less with keyphrases of <= {cap} posts", stacklevel=2)
    return out, info


def split_figures(parts: dict[str, Sequence[Example]], threshold: float = THRESHOLD, ngram: int = NGRAM,
                  method: str = "auto", **options) -> dict:
    """The overlap figures of a train/valid/test split (what the manifest records)."""
    train, valid, test = parts["train"], parts["valid"], parts["test"]
    text, text_methods = {}, []
    for a, b in (("train", "test"), ("train", "valid"), ("valid", "test")):
        r = text_overlap([e.text for e in parts[a]], [e.text for e in parts[b]], threshold, method, ngram,
                         examples=0, **options)
        text_methods.append(r)
        text[f"{b}_vs_{a}"] = {k: r[k] for k in ("exact_duplicates", "exact_duplicate_share", "near_duplicates",
                                                 "near_duplicate_share")}
    kp_test = keyphrase_overlap(train, test)
    kp_valid = keyphrase_overlap(train, valid)
    return {"counts": {k: len(v) for k, v in parts.items()},
            "keyphrases": {"test_vs_train": kp_test, "valid_vs_train": kp_valid},
            "unseen_share": {"test": kp_test["exact"]["unseen_occurrence_share"],
                             "valid": kp_valid["exact"]["unseen_occurrence_share"]},
            "text": text, "threshold": threshold, "ngram": ngram,
            "method": sorted({r.get("method", method) for r in text_methods}),
            "present_absent": {k: present_absent(v) for k, v in parts.items()}}


def write_split(parts: dict[str, Sequence[Example]], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``{train,valid,test}.jsonl`` and ``train_keyphrases.txt`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: write_jsonl(parts[name], out / f"{name}.jsonl") for name in ("train", "valid", "test")}
    (out / "train_keyphrases.txt").write_text("".join(kp + "\n" for kp in train_keyphrases(parts["train"])),
                                              encoding="utf-8")
    return paths
