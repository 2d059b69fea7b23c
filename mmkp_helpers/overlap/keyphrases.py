"""Keyphrase overlap (:func:`keyphrase_overlap`), present/absent rates (:func:`present_absent`) and
the (present|absent) x (seen|unseen) labels of test keyphrases (:func:`keyphrase_labels`).

For the test keyphrase *occurrences* (a keyphrase of a post; the same keyphrase on two posts
counts twice), the *distinct* test keyphrases and the test *posts*: which share is seen among the
training targets. Two matchings: ``exact`` (lower-cased, whitespace-normalised strings; CMKP's
targets are already lower-case) and ``stemmed`` (the evaluator's Porter stems,
:func:`mmkp_helpers.text.stem_phrase`). The training side may be examples or a keyphrase list
(CMKP ships ``train_keyphrases.txt``; its training texts are not public).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..data import Example
from ..text import is_present, stem_phrase, stem_text
from .common import _share


def normalize_keyphrase(phrase: str) -> str:
    """Lower case, single spaces: the ``exact`` matching of keyphrases."""
    return " ".join(phrase.lower().split())


def _keyphrase_keys(stemmed: bool):
    return (lambda kp: stem_phrase(kp)) if stemmed else normalize_keyphrase


def _train_keyphrase_strings(train) -> list[str]:
    """Keyphrase strings from examples or from an iterable of strings (a keyphrase list)."""
    items = list(train)
    if items and isinstance(items[0], Example):
        return [kp for ex in items for kp in ex.keyphrases]
    return [str(kp) for kp in items]


def keyphrase_overlap(train, test: Sequence[Example]) -> dict:
    """How much of the test keyphrases the training targets already contain.

    ``train``: training examples, or the training keyphrases as strings. Returns
    ``{"exact": {...}, "stemmed": {...}}``, each with

    - ``occurrences`` / ``seen_occurrences`` / ``occurrence_share``: test keyphrase occurrences
      (one per keyphrase per post) found among the training keyphrases;
    - ``distinct`` / ``seen_distinct`` / ``distinct_share``: the same over distinct test keyphrases;
    - ``posts`` / ``posts_all_seen`` / ``posts_all_seen_share``: test posts whose keyphrases are
      all seen;
    - ``unseen_occurrence_share``: 1 - ``occurrence_share``; ``train_distinct``: distinct training
      keyphrases under this matching.
    """
    train_kps = _train_keyphrase_strings(train)
    out = {}
    for name, stemmed in (("exact", False), ("stemmed", True)):
        key = _keyphrase_keys(stemmed)
        seen = {key(kp) for kp in train_kps}
        occurrences = seen_occ = posts_all = 0
        distinct: set = set()
        for ex in test:
            keys = [key(kp) for kp in ex.keyphrases]
            hits = sum(k in seen for k in keys)
            occurrences += len(keys)
            seen_occ += hits
            posts_all += hits == len(keys)
            distinct.update(keys)
        seen_distinct = sum(k in seen for k in distinct)
        out[name] = {
            "occurrences": occurrences, "seen_occurrences": seen_occ,
            "occurrence_share": _share(seen_occ, occurrences),
            "unseen_occurrence_share": _share(occurrences - seen_occ, occurrences),
            "distinct": len(distinct), "seen_distinct": seen_distinct,
            "distinct_share": _share(seen_distinct, len(distinct)),
            "posts": len(test), "posts_all_seen": posts_all, "posts_all_seen_share": _share(posts_all, len(test)),
            "train_distinct": len(seen),
        }
    return out


def present_absent(examples: Sequence[Example]) -> dict:
    """The evaluator's present/absent rates: a keyphrase is *present* when its Porter stems occur
    contiguously in the post's stemmed text (OCR and image wordings do not count)."""
    occ = present = posts_present = posts_absent = 0
    for ex in examples:
        stems = stem_text(ex.text)
        flags = [is_present(stem_phrase(kp), stems) for kp in ex.keyphrases]
        occ += len(flags)
        present += sum(flags)
        posts_present += any(flags)
        posts_absent += not all(flags)
    n = len(examples)
    return {"posts": n, "occurrences": occ, "present": present, "absent": occ - present,
            "present_share": _share(present, occ), "absent_share": _share(occ - present, occ),
            "posts_with_present_share": _share(posts_present, n), "posts_with_absent_share": _share(posts_absent, n),
            "keyphrases_per_post": round(occ / n, 4) if n else 0.0}


def keyphrase_labels(train, test: Sequence[Example]) -> dict[str, int]:
    """Test keyphrase occurrences by (present|absent) x (seen|unseen) (exact matching of seen)."""
    seen = {normalize_keyphrase(kp) for kp in _train_keyphrase_strings(train)}
    counts = Counter()
    for ex in test:
        stems = stem_text(ex.text)
        for kp in ex.keyphrases:
            where = "present" if is_present(stem_phrase(kp), stems) else "absent"
            known = "seen" if normalize_keyphrase(kp) in seen else "unseen"
            counts[f"{where}, {known}"] += 1
    return {k: counts.get(k, 0) for k in ("present, seen", "present, unseen", "absent, seen", "absent, unseen")}
