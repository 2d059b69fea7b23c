"""MinHash-LSH banding: the band parameters, the candidate probability, and the candidate pairs
(numpy banding, or the same step through datasketch's MinHashLSH).

Finding near-duplicates among N posts without comparing all N^2/2 pairs is MinHash-LSH
(Broder 1997; Leskovec et al., *Mining of Massive Datasets*, ch. 3):

1. every distinct shingle gets a 64-bit hash (token hashes are BLAKE2b of the normalised token,
   shingle hashes mix the token hashes; deterministic across processes and machines);
2. a post's *MinHash signature* is, for each of ``num_perm`` random permutations ``h -> a*h + b``,
   the minimum over its shingles; two signatures agree in one place with probability equal to
   the Jaccard similarity. We use datasketch's current ``affine32`` scheme bit for bit: the
   permutations ``(a, b)`` are taken from :class:`datasketch.MinHash` for the seed, the input is
   the shingle hash's top 32 bits, pre-mixed with the MurmurHash3 finaliser (a test checks that our
   signatures equal ``datasketch.MinHash.update_batch`` with the same inputs). What we do
   ourselves is the *batch* computation: datasketch sketches one set at a time (measured here:
   about 0.2 ms a post with the shingling, so over three minutes for 1,000,000 posts); here one
   numpy expression computes the permuted hashes of a block of a few thousand shingles and
   ``np.minimum.reduceat`` takes the minima per post (100,000 posts: 1.1 s, shingling included);
3. the signature is cut into ``b`` bands of ``r`` rows; two posts become a *candidate pair* when
   they agree on a whole band, which happens with probability ``1 - (1 - J^r)^b``. ``b`` and ``r``
   are chosen by datasketch (:class:`datasketch.MinHashLSH`'s optimiser) for the threshold, with
   weights ``(0.05, 0.95)`` on false positives and false negatives: a false candidate only costs a
   check, a missed pair is lost. For J = 0.5 and 128 permutations this gives 26 bands of 3 rows:
   a pair exactly at the threshold is found with probability 0.97, one at 0.6 with 0.998;
4. every candidate pair is *confirmed by its exact Jaccard* over the shingle sets, so no reported
   pair is below the threshold.

The banding itself runs on numpy (each band's rows hashed to one 64-bit key, equal keys found by
sorting) because datasketch's :class:`~datasketch.MinHashLSH` keeps one Python dict entry per
post and band (measured: 100,000 posts took 7.7 s to insert and about 0.9 GB with their
sketches, so about 9 GB for a million). ``method="datasketch"`` runs the same
step through :class:`~datasketch.MinHashLSH` and :class:`~datasketch.LeanMinHash` (fine for tens of
thousands of posts; a test checks that it finds the same candidates). ``method="exact"`` scores
*every* pair of posts that share at least one shingle (pairs sharing none have Jaccard 0) through
an inverted index: the brute-force answer, affordable up to some 10^5 posts of tweet-like text
(its cost, the number of (pair, shared shingle) items, is known before it starts);
``method="auto"`` takes it when it is affordable and LSH otherwise. Exact-duplicate posts are collapsed to one representative before any of this, so a text copied
1,000 times costs one signature. At scale (``python -m mmkp_helpers.bench.overlap_scale``): the
whole report on 1,000,000 generated posts takes about 32 s and 2.2 GB on two CPU cores.
"""
from __future__ import annotations

import numpy as np

from .arrays import _U64, _encode, _fmix64, _pairs_of_equal_keys, _unique
from .common import LSH_WEIGHTS, NUM_PERM, THRESHOLD
from .shingles import TextSets


def lsh_params(threshold: float = THRESHOLD, num_perm: int = NUM_PERM,
               weights: tuple[float, float] = LSH_WEIGHTS) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH optimiser picks for the threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=tuple(weights))
    return int(lsh.b), int(lsh.r)


def candidate_probability(similarity, bands: int, rows: int):
    """P(a pair of this Jaccard similarity becomes a candidate) = 1 - (1 - s^r)^b."""
    s = np.asarray(similarity, dtype=float)
    return 1.0 - (1.0 - s ** rows) ** bands


def _band_keys(sig: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of a (n, r) uint32 band (r <= 2: exact packing)."""
    cols = sig.astype(np.uint64)
    if cols.shape[1] == 1:
        return cols[:, 0]
    key = (cols[:, 0] << _U64(32)) | cols[:, 1]
    for c in range(2, cols.shape[1]):
        key = _fmix64(key ^ _fmix64(cols[:, c] + _U64((c * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)))
    return key


def _lsh_candidates(sets: TextSets, sig: np.ndarray, bands: int, rows: int,
                    keep=None) -> tuple[np.ndarray, np.ndarray]:
    codes = []
    for band in range(bands):
        i, j = _pairs_of_equal_keys(_band_keys(sig[:, band * rows:(band + 1) * rows]))
        if keep is not None and len(i):
            ok = keep(i, j)
            i, j = i[ok], j[ok]
        if len(i):
            codes.append(_unique(_encode(i, j, sets.n_reps)))
    if not codes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    code = _unique(np.concatenate(codes))
    return code // sets.n_reps, code % sets.n_reps


def _datasketch_candidates(sets: TextSets, sig: np.ndarray, num_perm: int, seed: int, bands: int,
                           rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The same banding through datasketch's MinHashLSH (one Python object per post)."""
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    width = sig.shape[1]
    pad = np.full(num_perm - width, 0xFFFFFFFF, dtype=np.uint32)  # columns no band reads
    sketches = [LeanMinHash(seed=seed, hashvalues=np.concatenate((row, pad)), scheme="affine32") for row in sig]
    for r, m in enumerate(sketches):
        lsh.insert(r, m, check_duplication=False)
    return _query_pairs(lsh, sketches)


def _query_pairs(lsh, sketches) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (r, other), r < other, of sketches inserted under their positions that a
    datasketch MinHashLSH query returns."""
    ii, jj = [], []
    for r, m in enumerate(sketches):
        for other in lsh.query(m):
            if other > r:
                ii.append(r)
                jj.append(other)
    return np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64)
