"""Text normalisation, word-shingle sets and :class:`TextSets`: many texts as normalised shingle sets in
flat numpy arrays, with exact duplicates collapsed to one representative, batched MinHash signatures
(:meth:`TextSets.signatures`) and vectorised exact Jaccard (:meth:`TextSets.jaccard_pairs`).

A text is *normalised* (:func:`normalize_tokens`: lower case; URLs, ``@mentions``, ``rt``, CMKP's
``<url>``/``<user>`` dropped; punctuation stripped from token ends; punctuation-only tokens dropped).
Two posts are *exact duplicates* when their normalised token sequences are equal. Every distinct
shingle gets a 64-bit hash (token hashes are BLAKE2b of the normalised token, shingle hashes mix
the token hashes; deterministic across processes and machines). See :mod:`.lsh` for how the
signatures are used.
"""
from __future__ import annotations

import hashlib
import string
from array import array
from typing import Sequence

import numpy as np

from ..text import word_shingles
from .arrays import _GOLD, _U64, _fmix32, _fmix64, _pairs_within, _ranges, _unique, _unique_inverse
from .common import MINHASH_SEED, NGRAM, NUM_PERM


_DROP_TOKENS = frozenset({"<url>", "<user>", "rt", "via"})
_DROP_PREFIXES = ("http://", "https://", "www.", "@", "pic.twitter.com")
_STRIP = string.punctuation + "\u201c\u201d\u2018\u2019\u2026\u00ab\u00bb\u2014\u2013"


def normalize_token(token: str) -> str:
    """One whitespace token normalised ("" when it is dropped): lower case; URLs, mentions,
    ``rt``, ``via`` and CMKP's ``<url>``/``<user>`` dropped; punctuation stripped from both
    ends (``#Sunset!`` -> ``sunset``, ``<number>`` -> ``number``); no letter or digit -> dropped."""
    t = token.lower()
    if t in _DROP_TOKENS or t.startswith(_DROP_PREFIXES):
        return ""
    t = t.strip(_STRIP)
    return t if any(c.isalnum() for c in t) else ""


class _TokenHashes(dict):
    """raw token -> 64-bit hash of its normalised form (0 when the token is dropped)."""

    def __missing__(self, token: str) -> int:
        norm = normalize_token(token)
        value = 0
        if norm:
            value = int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little") or 1
        self[token] = value
        return value


_TOKEN_HASHES = _TokenHashes()
_NORMALIZED: dict[str, str] = {}


def normalize_tokens(text: str) -> list[str]:
    """The normalised tokens of a text (see :func:`normalize_token`)."""
    out = []
    for token in text.split():
        norm = _NORMALIZED.get(token)
        if norm is None:
            norm = _NORMALIZED[token] = normalize_token(token)
        if norm:
            out.append(norm)
    return out


def normalize_text(text: str) -> str:
    """The normalised tokens joined by one space: equal strings = exact duplicates."""
    return " ".join(normalize_tokens(text))


def shingle_set(text: str, n: int = NGRAM) -> frozenset:
    """The set of word n-grams of the normalised text, as token tuples (the whole token tuple when
    the text is shorter than n; empty for a text with no tokens). The slow, readable definition
    that the vectorised code reproduces."""
    return word_shingles(normalize_tokens(text), n)


class TextSets:
    """Many texts as normalised shingle sets, in flat numpy arrays.

    - ``rep_of[i]``: the index of text i's *representative* (exact duplicates share one; -1 for
      a text with no tokens after normalisation); ``rep_doc[r]``: the first text of
      representative r; representatives are numbered in the order of their first text;
    - ``offsets``/``ids``: representative r's shingle set is ``ids[offsets[r]:offsets[r+1]]``,
      sorted distinct shingle ids; ``sizes[r]`` its size; ``hashes[id]``: the 64-bit shingle hash.
    """

    def __init__(self, texts: Sequence[str], ngram: int = NGRAM):
        if ngram < 1:
            raise ValueError("ngram must be >= 1")
        self.n = len(texts)
        self.ngram = ngram
        get = _TOKEN_HASHES.__getitem__
        buf = array("Q")
        lengths = array("q")
        extend, append = buf.extend, lengths.append
        for text in texts:                          # the one Python loop: ~4.5 s per million posts
            tokens = text.split()
            extend(map(get, tokens))
            append(len(tokens))
        tok = np.frombuffer(buf, dtype=np.uint64) if len(buf) else np.zeros(0, dtype=np.uint64)
        raw_len = np.frombuffer(lengths, dtype=np.int64) if len(lengths) else np.zeros(0, dtype=np.int64)
        dropped = np.flatnonzero(tok == 0)                       # dropped tokens hash to 0
        length = raw_len.copy()
        if len(dropped):
            doc = np.searchsorted(np.cumsum(raw_len), dropped, side="right")
            length -= np.bincount(doc, minlength=self.n)
            tok = np.delete(tok, dropped)
        del buf, dropped
        start = np.cumsum(length) - length

        # exact duplicates: an order-sensitive 64-bit key of the normalised token sequence
        pos = np.arange(len(tok), dtype=np.uint64)
        pos -= np.repeat(start, length).astype(np.uint64)
        pos += _U64(1)
        pos *= _GOLD
        pos += tok
        mixed = _fmix64(pos)
        del pos
        csum = np.concatenate(([_U64(0)], np.cumsum(mixed, dtype=np.uint64)))
        del mixed
        doc_key = _fmix64((csum[start + length] - csum[start]) ^ (length.astype(np.uint64) * _GOLD))
        del csum
        nonempty = np.flatnonzero(length > 0)
        rep_of = np.full(self.n, -1, dtype=np.int64)
        _, first, inverse = _unique_inverse(doc_key[nonempty])
        order = np.argsort(first, kind="stable")             # number representatives by first text
        renumber = np.empty(len(order), dtype=np.int64)
        renumber[order] = np.arange(len(order))
        rep_of[nonempty] = renumber[inverse]
        self.rep_doc = nonempty[first[order]]
        self.rep_of = rep_of
        self.n_reps = len(self.rep_doc)
        self.n_empty = int(self.n - len(nonempty))

        # shingles of the representatives: n-grams of texts with >= n tokens ...
        r_len = length[self.rep_doc]
        r_start = start[self.rep_doc]
        full = np.flatnonzero(r_len >= ngram)
        n_full = r_len[full] - ngram + 1
        sh_pos = _ranges(r_start[full], n_full)
        h = tok[sh_pos]
        for k in range(1, ngram):
            h *= _GOLD
            h += tok[sh_pos + k]
            h = _fmix64(h)
        del sh_pos
        h ^= _U64(ngram << 56)
        h = _fmix64(h)
        sh_rep = np.repeat(full.astype(np.int64), n_full)
        # ... and the whole token sequence of shorter texts
        short = np.flatnonzero(r_len < ngram)
        if len(short):
            hs = tok[r_start[short]].copy()
            for k in range(1, ngram - 1):
                use = r_len[short] > k
                hs = np.where(use, _fmix64(hs * _GOLD + tok[np.where(use, r_start[short] + k, r_start[short])]), hs)
            hs = _fmix64(hs ^ (r_len[short].astype(np.uint64) << _U64(56)))
            h = np.concatenate((h, hs))
            sh_rep = np.concatenate((sh_rep, short.astype(np.int64)))
        del tok
        uniq, _, inv = _unique_inverse(h, stable=False)
        del h
        key = sh_rep.astype(np.uint64)
        del sh_rep
        key <<= _U64(32)
        key |= inv.astype(np.uint64)
        del inv
        key = _unique(key)                                     # sorted by (rep, id), distinct
        self.rep_elem = (key >> _U64(32)).astype(np.int32)
        self.ids = (key & _U64(0xFFFFFFFF)).astype(np.int32)
        del key
        self.sizes = np.bincount(self.rep_elem, minlength=self.n_reps).astype(np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes))).astype(np.int64)
        self.hashes = uniq

    # ---------------------------------------------------------------------------- members
    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """(texts ordered by representative, number of texts per representative)."""
        docs = np.flatnonzero(self.rep_of >= 0)
        order = docs[np.argsort(self.rep_of[docs], kind="stable")]
        return order, np.bincount(self.rep_of[docs], minlength=self.n_reps).astype(np.int64)

    def exact_duplicate_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every pair (i, j), i < j, of texts that are exact duplicates after normalisation."""
        order, counts = self.members()
        a, b = _pairs_within(order, counts)
        return np.minimum(a, b), np.maximum(a, b)

    # ---------------------------------------------------------------------------- MinHash
    def signatures(self, num_perm: int = NUM_PERM, seed: int = MINHASH_SEED, columns: int | None = None,
                   block: int = 4096) -> np.ndarray:
        """MinHash signatures of the representatives, ``(n_reps, columns)`` uint32.

        Equal to datasketch's ``MinHash(num_perm, seed)`` (``affine32`` scheme) updated with each
        shingle's ``hash >> 32``; ``columns`` keeps only the first permutations (the ones the
        bands use). Blocks of about ``block`` shingles keep the work in the CPU cache (4096 is
        about 4x faster than 262144 here)."""
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed).permutations
        cols = num_perm if columns is None else int(columns)
        a = np.ascontiguousarray(a[:cols], dtype=np.uint32)
        b = np.ascontiguousarray(b[:cols], dtype=np.uint32)
        hv = _fmix32((self.hashes >> _U64(32)).astype(np.uint32))
        sig = np.empty((self.n_reps, cols), dtype=np.uint32)
        buf = np.empty((2 * block, cols), dtype=np.uint32)
        offsets, ids = self.offsets, self.ids
        r0 = 0
        while r0 < self.n_reps:
            # as many representatives as fit in `block` shingles (at least one)
            r1 = int(np.searchsorted(offsets, offsets[r0] + block, side="right")) - 1
            r1 = min(max(r1, r0 + 1), self.n_reps)
            e0, e1 = offsets[r0], offsets[r1]
            if e1 - e0 > len(buf):
                buf = np.empty((e1 - e0, cols), dtype=np.uint32)
            permuted = buf[:e1 - e0]
            np.multiply(hv[ids[e0:e1]][:, None], a[None, :], out=permuted)
            permuted += b
            sig[r0:r1] = np.minimum.reduceat(permuted, offsets[r0:r1] - e0, axis=0)
            r0 = r1
        return sig

    # ---------------------------------------------------------------------------- exact Jaccard
    def jaccard_pairs(self, ri: np.ndarray, rj: np.ndarray, chunk: int = 4_000_000) -> np.ndarray:
        """Exact Jaccard similarity of representative pairs (vectorised set intersection)."""
        ri = np.asarray(ri, dtype=np.int64)
        rj = np.asarray(rj, dtype=np.int64)
        out = np.zeros(len(ri), dtype=np.float64)
        if len(ri) == 0:
            return out
        cum = np.cumsum(self.sizes[ri] + self.sizes[rj])
        p0 = 0
        while p0 < len(ri):
            base = int(cum[p0 - 1]) if p0 else 0
            p1 = max(int(np.searchsorted(cum, base + chunk, side="right")), p0 + 1)
            a, b = ri[p0:p1], rj[p0:p1]
            pair = np.arange(p1 - p0, dtype=np.uint64)
            ka = (np.repeat(pair, self.sizes[a]) << _U64(32)) | self.ids[_ranges(self.offsets[a], self.sizes[a])].astype(np.uint64)
            kb = (np.repeat(pair, self.sizes[b]) << _U64(32)) | self.ids[_ranges(self.offsets[b], self.sizes[b])].astype(np.uint64)
            # both key arrays are sorted (pairs in order, ids sorted inside a set)
            at = np.minimum(np.searchsorted(kb, ka), len(kb) - 1)
            hit = kb[at] == ka
            inter = np.bincount((ka[hit] >> _U64(32)).astype(np.int64), minlength=p1 - p0)
            union = self.sizes[a] + self.sizes[b] - inter
            out[p0:p1] = inter / union
            p0 = p1
        return out

    def shingle_pair_count(self) -> int:
        """How many (pair, shared shingle) items the exhaustive method would generate."""
        df = np.bincount(self.ids, minlength=len(self.hashes)).astype(np.int64)
        return int((df * (df - 1) // 2).sum())
