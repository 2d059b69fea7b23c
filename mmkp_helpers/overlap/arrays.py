"""Vectorised numpy primitives of the text search: 64/32-bit MurmurHash3 finalisers, ranges, pairs
inside groups, pairs of equal keys, fast unique, pair codes."""
from __future__ import annotations

import numpy as np


_U64 = np.uint64
_U32 = np.uint32
_GOLD = _U64(0x9E3779B97F4A7C15)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection that avalanches), element-wise, wrapping."""
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix of the affine32 scheme)."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h = h ^ (h >> _U32(13))
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + l)`` for each start/length (vectorised)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths) + np.repeat(
        np.asarray(starts, dtype=np.int64), lengths)


def _pairs_within(members: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) pairs inside each group; ``members`` holds the groups one after the other,
    ``sizes`` their sizes. Pairs keep the order of ``members`` (a before b)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(members) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    pos = np.arange(len(members), dtype=np.int64)
    rank = pos - np.repeat(starts, sizes)
    count = np.repeat(sizes, sizes) - 1 - rank
    first = np.repeat(pos, count)
    step = np.arange(len(first), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count) + 1
    return members[first], members[first + step]


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices sorted by key, and the sizes of the runs of equal keys in that order."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    if len(sk) == 0:
        return order, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    sizes = np.diff(np.append(starts, len(sk)))
    return order, sizes


def _pairs_of_equal_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of positions whose keys are equal."""
    order, sizes = _groups(keys)
    multi = sizes >= 2
    if not multi.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    members = order[np.repeat(multi, sizes)]
    a, b = _pairs_within(members, sizes[multi])
    return np.minimum(a, b), np.maximum(a, b)


def _unique(a: np.ndarray, counts: bool = False):
    """Sorted distinct values (and their counts). ``np.sort`` plus a mask: on numpy 2.x this is
    many times faster than ``np.unique`` for large, partly sorted integer arrays."""
    s = np.sort(a)
    if len(s) == 0:
        return (s, np.zeros(0, dtype=np.int64)) if counts else s
    head = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    if not counts:
        return s[head]
    return s[head], np.diff(np.append(head, len(s)))


def _unique_inverse(a: np.ndarray, stable: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value's first occurrence, inverse as int64);
    ``stable=False`` is faster and gives *an* occurrence instead of the first."""
    order = np.argsort(a, kind="stable" if stable else None)
    s = a[order]
    if len(s) == 0:
        return s, order, np.zeros(0, dtype=np.int64)
    flag = np.concatenate(([True], s[1:] != s[:-1]))
    group = np.cumsum(flag) - 1
    inverse = np.empty(len(a), dtype=np.int64)
    inverse[order] = group
    return s[flag], order[flag], inverse


def _encode(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    return i.astype(np.int64) * int(n) + j.astype(np.int64)
