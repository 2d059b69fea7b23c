"""Image overlap: perceptual hashes (``imagehash.phash``, 64 bits); two images are duplicates when the
Hamming distance of their hashes is at most ``max_distance`` (default 6): resizing, re-encoding and
small edits keep the hash, a different picture changes it."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..data import Example
from .common import IMAGE_MAX_DISTANCE, _share


def image_hash(path: str | os.PathLike, hash_size: int = 8) -> int | None:
    """The perceptual hash (``imagehash.phash``) of an image file as an int; None when the file
    cannot be read."""
    import imagehash
    from PIL import Image

    try:
        with Image.open(path) as im:
            bits = imagehash.phash(im, hash_size=hash_size).hash.flatten()
    except (OSError, ValueError, SyntaxError):
        return None
    return int("".join("1" if b else "0" for b in bits), 2)


def _hashes(examples: Sequence[Example], hash_size: int) -> tuple[np.ndarray, np.ndarray]:
    idx, values = [], []
    for k, ex in enumerate(examples):
        if ex.image:
            h = image_hash(ex.image, hash_size)
            if h is not None:
                idx.append(k)
                values.append(h)
    return np.asarray(idx, dtype=np.int64), np.asarray(values, dtype=np.uint64)


def image_overlap(train: Sequence[Example], test: Sequence[Example], max_distance: int = IMAGE_MAX_DISTANCE,
                  hash_size: int = 8, examples: int = 5) -> dict:
    """Test images whose pHash lies within ``max_distance`` bits of a training image's.

    Posts without a readable image are skipped (counted). Returns counts, the share of test
    images with a duplicate, the distribution of nearest distances and a few example pairs."""
    if hash_size != 8:
        raise ValueError("only 64-bit hashes (hash_size=8) are supported")
    tr_idx, tr_h = _hashes(train, hash_size)
    te_idx, te_h = _hashes(test, hash_size)
    out = {"train_images": len(tr_idx), "test_images": len(te_idx), "max_distance": max_distance,
           "test_without_image": len(test) - len(te_idx)}
    if len(tr_idx) == 0 or len(te_idx) == 0:
        return out | {"duplicates": 0, "duplicate_share": 0.0, "nearest_distance": [], "examples": []}
    nearest = np.empty(len(te_h), dtype=np.int64)
    which = np.empty(len(te_h), dtype=np.int64)
    for s in range(0, len(te_h), 1024):
        d = np.bitwise_count(te_h[s:s + 1024, None] ^ tr_h[None, :]).astype(np.int64)
        which[s:s + 1024] = d.argmin(axis=1)
        nearest[s:s + 1024] = d.min(axis=1)
    dup = nearest <= max_distance
    shown = [{"test": int(te_idx[k]), "train": int(tr_idx[which[k]]), "distance": int(nearest[k])}
             for k in np.argsort(nearest, kind="stable")[:examples] if dup[k]]
    return out | {"duplicates": int(dup.sum()), "duplicate_share": _share(int(dup.sum()), len(te_idx)),
                  "nearest_distance": nearest.tolist(), "examples": shown}
