"""Samples with known near-duplicates, for recall checks: :func:`edited_copies` makes them,
:func:`recall` compares found pairs with the truth (e.g. :func:`brute_force_pairs`)."""
from __future__ import annotations

import random
from typing import Sequence

from .common import _share
from .search import Pairs


def edited_copies(texts: Sequence[str], n: int, seed: int = 0, max_edit_share: float = 0.6) -> list[str]:
    """``n`` texts made by editing random texts of ``texts`` (or earlier copies, so chains and
    clusters form): each copy changes a random share (0 to ``max_edit_share``) of the source's
    words by deleting, substituting, inserting or swapping words, so copies land at every
    similarity from identical to unrelated. Words for substitutions come from the texts."""
    rng = random.Random(seed)
    vocab = [w for t in texts[:5000] for w in t.split()] or ["word"]
    pool = list(texts)
    out = []
    for _ in range(n):
        src = rng.choice(pool).split()
        if not src:
            src = [rng.choice(vocab)]
        words = list(src)
        edits = int(round(rng.random() * max_edit_share * len(words)))
        for _ in range(edits):
            op = rng.random()
            if op < 0.3 and len(words) > 1:
                del words[rng.randrange(len(words))]
            elif op < 0.6:
                words[rng.randrange(len(words))] = rng.choice(vocab)
            elif op < 0.9:
                words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
            elif len(words) > 1:
                k = rng.randrange(len(words) - 1)
                words[k], words[k + 1] = words[k + 1], words[k]
        text = " ".join(words)
        if rng.random() < 0.1:
            text = text.upper() if rng.random() < 0.5 else text + " !"   # the same after normalisation
        out.append(text)
        pool.append(text)
    return out


def recall(found: Pairs, truth: Pairs) -> dict:
    """Share of ``truth``'s pairs that ``found`` has, and how many it has beyond them."""
    f, t = found.as_set(), truth.as_set()
    hit = len(f & t)
    return {"truth_pairs": len(t), "found_pairs": len(f), "found_true": hit, "recall": _share(hit, len(t)),
            "extra": len(f - t)}
