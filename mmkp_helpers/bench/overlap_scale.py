"""The overlap analysis at scale: 1,000,000 posts in under 2 minutes and under 4 GB.

Run ``python -m mmkp_helpers.bench.overlap_scale`` (options: ``--posts``, ``--test-share``,
``--seed``, ``--threshold``, ``--check-recall N``). It prints one JSON object.

**The posts** are generated here (no download), shaped like CMKP tweets: 5 to 35 words drawn from
a Zipf-distributed vocabulary of 50,000 made-up words (a few very frequent words, a long tail, as
in real text), 1 to 3 keyphrases each from an inventory of 20,000 (Zipf-distributed too, so the
training set contains most test keyphrases, as in CMKP), about 37% of keyphrase occurrences
written into the text (present). Duplicates are injected the way they occur on Twitter:
``--exact-share`` (default 4%) of the posts copy an earlier post with only case, punctuation or an
``RT @user :`` prefix changed (exact duplicates after normalisation), and ``--near-share``
(default 6%) copy an earlier post with 1 to 3 words deleted, replaced or inserted (near-duplicates
at Jaccard ~0.6 to 0.9, with the source's keyphrases). Posts are then cut at random into train and
test (``--test-share``, default 10%), so duplicates fall across the split as in a random split.

**The analysis** is exactly what ``mmkp-overlap`` does (:func:`mmkp_helpers.overlap.overlap_report`
on the two lists of :class:`~mmkp_helpers.data.Example`): keyphrase overlap (exact and stemmed),
present/absent rates of both sides (Porter stems of every post), exact duplicates and MinHash-LSH
near-duplicates confirmed by exact Jaccard. Images: none.

**Reported**: ``generate_s`` (making the posts, not part of the claim), ``analyse_s`` (the claim:
``under_2min``), the stages' seconds, ``peak_rss_gb`` (the process's peak resident memory,
generation included: ``under_4gb``), the figures found, and how many of the injected
cross-split duplicates were found (``injected_found_share``). With ``--check-recall N`` the LSH
pairs among N random posts are also compared with the exhaustive exact search.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "ge", "ho", "ji", "ku", "le",
             "ma", "no", "pa", "qi", "re", "so", "tu", "wa", "xe", "yo", "zi", "an", "el", "in", "on", "ur"]


def _peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # Linux: KiB
    return round(kb * 1024 / 1e9, 3)


def _words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct made-up words of 2 to 4 syllables."""
    out, seen = [], set()
    while len(out) < n:
        k = int(rng.integers(2, 5))
        w = "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), k))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _zipf_probs(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def generate_posts(n: int, seed: int = 0, exact_share: float = 0.04, near_share: float = 0.06,
                   vocab_size: int = 50_000, n_keyphrases: int = 20_000):
    """``n`` CMKP-like posts (see the module docstring): ``(texts, keyphrase lists, kind, source)``
    where ``kind[i]`` is 0 for a fresh post, 1 for an exact copy, 2 for a near copy, and
    ``source[i]`` the index of the post a copy was made from (-1 for a fresh one). Copies share
    their source's keyphrase list. Deterministic for a seed; about 14 s per million posts."""
    rng = np.random.default_rng(seed)
    vocab = _words(vocab_size, rng)
    word_p = _zipf_probs(vocab_size, 1.05)
    # keyphrases: 1-3 words from the vocabulary's middle and tail
    kp_len = rng.choice([1, 2, 3], size=n_keyphrases, p=[0.6, 0.3, 0.1])
    kp_words = rng.integers(200, vocab_size, size=(n_keyphrases, 3))
    inventory = sorted({" ".join(vocab[w] for w in kp_words[i, :kp_len[i]]) for i in range(n_keyphrases)})
    kp_p = _zipf_probs(len(inventory), 1.0)

    kind = np.zeros(n, dtype=np.int8)
    u = rng.random(n)
    kind[u < exact_share] = 1
    kind[(u >= exact_share) & (u < exact_share + near_share)] = 2
    kind[:1000] = 0                                   # the first posts are always fresh
    source = np.where(kind > 0, (rng.random(n) * np.arange(n)).astype(np.int64), -1)

    lengths = rng.integers(5, 36, size=n)
    words = rng.choice(vocab_size, size=int(lengths.sum()), p=word_p)
    n_kp = rng.choice([1, 2, 3], size=n, p=[0.72, 0.23, 0.05])
    kp_ids = rng.choice(len(inventory), size=int(n_kp.sum()), p=kp_p)
    present = rng.random(len(kp_ids)) < 0.37
    edits = rng.integers(1, 4, size=n)
    texts: list[str] = [""] * n
    keyphrases: list[list[str]] = [[]] * n
    w0 = k0 = 0
    prefix = ("RT @user : ", "", "")
    for i in range(n):
        length, m = int(lengths[i]), int(n_kp[i])
        k = int(kind[i])
        if k == 0:
            toks = [vocab[w] for w in words[w0:w0 + length]]
            kp = [inventory[j] for j in kp_ids[k0:k0 + m]]
            for j, flag in zip(kp_ids[k0:k0 + m], present[k0:k0 + m]):
                if flag:
                    toks.insert(int(words[w0] % (len(toks) + 1)), inventory[j])
            texts[i] = " ".join(toks)
            keyphrases[i] = list(dict.fromkeys(kp))
        else:
            src = int(source[i])
            keyphrases[i] = keyphrases[src]
            if k == 1:
                variant = int(words[w0]) % 4
                t = texts[src]
                texts[i] = (t.upper() if variant == 0 else t + " !" if variant == 1
                            else prefix[0] + t if variant == 2 else t.capitalize())
            else:
                toks = texts[src].split()
                for e in range(int(edits[i])):
                    r = int(words[w0 + e])
                    op = r % 3
                    if op == 0 and len(toks) > 3:
                        del toks[r % len(toks)]
                    elif op == 1:
                        toks[r % len(toks)] = vocab[int(words[w0 + e + 1])]
                    else:
                        toks.insert(r % (len(toks) + 1), vocab[int(words[w0 + e + 1])])
                texts[i] = " ".join(toks)
        w0 += length
        k0 += m
    return texts, keyphrases, kind, source


def main(argv=None) -> int:
    from mmkp_helpers import overlap
    from mmkp_helpers.data import Example

    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.bench.overlap_scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--test-share", type=float, default=0.1)
    parser.add_argument("--exact-share", type=float, default=0.04)
    parser.add_argument("--near-share", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=overlap.THRESHOLD)
    parser.add_argument("--check-recall", type=int, default=0, metavar="N",
                        help="also compare LSH with the exhaustive search on N random posts")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    texts, kps, kind, source = generate_posts(args.posts, args.seed, args.exact_share, args.near_share)
    rng = np.random.default_rng(args.seed + 1)
    is_test = rng.random(args.posts) < args.test_share
    train = [Example(id=f"p{i}", text=texts[i], keyphrases=kps[i]) for i in np.flatnonzero(~is_test)]
    test = [Example(id=f"p{i}", text=texts[i], keyphrases=kps[i]) for i in np.flatnonzero(is_test)]
    generate_s = time.perf_counter() - t0
    rss_after_generation = _peak_rss_gb()

    t1 = time.perf_counter()
    report = overlap.overlap_report(train, test, threshold=args.threshold, images=False, examples=3)
    analyse_s = time.perf_counter() - t1
    text = report["text"]

    # injected duplicates whose source is on the other side of the split
    test_pos = np.cumsum(is_test) - 1
    cross = np.flatnonzero(is_test & (kind > 0) & (source >= 0))
    cross = cross[~is_test[source[cross]]]
    out = {
        "benchmark": "overlap_scale",
        "posts": args.posts, "train_posts": len(train), "test_posts": len(test),
        "generate_s": round(generate_s, 2), "analyse_s": round(analyse_s, 2),
        "stages_s": {"text_overlap": text["seconds"], "keyphrases_and_present_absent": round(analyse_s - text["seconds"], 2)},
        "under_2min": analyse_s < 120,
        "peak_rss_gb": _peak_rss_gb(), "peak_rss_after_generation_gb": rss_after_generation,
        "under_4gb": _peak_rss_gb() < 4.0,
        "lsh": {"bands": text["bands"], "rows": text["rows"], "candidates": text["candidates"],
                "confirmed_pairs": text["confirmed_pairs"]},
        "figures": {
            "keyphrase_occurrence_seen_share": report["keyphrases"]["exact"]["occurrence_share"],
            "posts_all_seen_share": report["keyphrases"]["exact"]["posts_all_seen_share"],
            "test_present_share": report["present_absent"]["test"]["present_share"],
            "test_exact_duplicate_share": text["exact_duplicate_share"],
            "test_near_duplicate_share": text["near_duplicate_share"],
        },
        "injected_cross_split": int(len(cross)),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    if len(cross):
        # each injected copy whose source is in train and whose Jaccard with it is >= threshold must be
        # found (exact copies always are >= threshold; a near copy of a short post may fall below)
        expected = np.array([overlap.jaccard(overlap.shingle_set(texts[int(source[i])]),
                                             overlap.shingle_set(texts[int(i)])) >= args.threshold for i in cross])
        flags = overlap.text_overlap([e.text for e in train], [e.text for e in test], args.threshold,
                                     examples=0, arrays=True)["arrays"]["near"]
        found = flags[test_pos[cross]]
        out["injected_expected"] = int(expected.sum())
        out["injected_found_share"] = round(float(found[expected].mean()), 4) if expected.any() else None
    if args.check_recall:
        sample = rng.choice(args.posts, size=min(args.check_recall, args.posts), replace=False)
        stexts = [texts[i] for i in sample]
        exact = overlap.near_duplicate_pairs(stexts, args.threshold, method="exact")
        lsh = overlap.near_duplicate_pairs(stexts, args.threshold, method="lsh")
        out["recall_check"] = overlap.recall(lsh, exact) | {"sample": len(stexts)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
