"""The whole overlap report of a training and a test set (:func:`overlap_report`) and its
human-readable form (:func:`format_report`)."""
from __future__ import annotations

import time
from typing import Sequence

from ..data import Example
from .common import IMAGE_MAX_DISTANCE, NGRAM, THRESHOLD, _pct
from .images import image_overlap
from .keyphrases import _train_keyphrase_strings, keyphrase_overlap, normalize_keyphrase, present_absent
from .texts import text_overlap


def overlap_report(train, test: Sequence[Example], threshold: float = THRESHOLD, method: str = "lsh",
                   ngram: int = NGRAM, images: bool = True, image_max_distance: int = IMAGE_MAX_DISTANCE,
                   examples: int = 5, **options) -> dict:
    """Everything between a training set and a test set: keyphrase overlap, present/absent rates,
    text overlap and (where images exist) image overlap.

    ``train`` may be examples or a list of training keyphrases (strings): then only the keyphrase
    overlap and the test's present/absent rates are measured (``text``/``images`` are None)."""
    train = list(train)
    is_list = not train or not isinstance(train[0], Example)
    t0 = time.perf_counter()
    report = {"train": {"posts": None if is_list else len(train),
                        "keyphrases": len({normalize_keyphrase(k) for k in _train_keyphrase_strings(train)})},
              "test": {"posts": len(test)},
              "keyphrases": keyphrase_overlap(train, test),
              "present_absent": {"test": present_absent(test)} | ({} if is_list else {"train": present_absent(train)}),
              "text": None, "images": None}
    if not is_list:
        report["text"] = text_overlap([e.text for e in train], [e.text for e in test], threshold, method, ngram,
                                      examples=examples, **options)
        for ex in report["text"]["examples"]:
            ex["test_id"], ex["train_id"] = test[ex["test"]].id, train[ex["train"]].id
        if images and any(e.image for e in test) and any(e.image for e in train):
            report["images"] = image_overlap(train, test, image_max_distance, examples=examples)
            report["images"].pop("nearest_distance")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def format_report(report: dict, train_name: str = "train", test_name: str = "test") -> str:
    """A human-readable version of :func:`overlap_report`'s result."""
    kp = report["keyphrases"]
    tr = report["train"]
    lines = [f"train: {train_name} ({'keyphrase list' if tr['posts'] is None else str(tr['posts']) + ' posts'}, "
             f"{tr['keyphrases']} distinct keyphrases)",
             f"test:  {test_name} ({report['test']['posts']} posts)", "",
             "keyphrase overlap                                exact     stemmed"]
    for label, key, num, den in (("test keyphrase occurrences seen in train", "occurrence_share", "seen_occurrences", "occurrences"),
                                 ("distinct test keyphrases seen in train", "distinct_share", "seen_distinct", "distinct"),
                                 ("test posts with only seen keyphrases", "posts_all_seen_share", "posts_all_seen", "posts")):
        lines.append(f"  {label:<45}{_pct(kp['exact'][key]):>8} {_pct(kp['stemmed'][key]):>10}   "
                     f"({kp['exact'][num]}/{kp['exact'][den]} exact)")
    pa = report["present_absent"]
    for split in ("train", "test"):
        if split in pa:
            lines.append(f"present keyphrases ({split}): {_pct(pa[split]['present_share'])} of occurrences; "
                         f"posts with an absent one: {_pct(pa[split]['posts_with_absent_share'])}")
    text = report.get("text")
    if text:
        how = (f"MinHash-LSH, {text['bands']} bands x {text['rows']} rows" if text["method"] != "exact"
               else "exhaustive") + ", confirmed by exact Jaccard"
        lines += ["", f"text overlap (word {text['ngram']}-gram Jaccard >= {text['threshold']}; {how})",
                  f"  test posts with an exact duplicate in train: {text['exact_duplicates']} "
                  f"({_pct(text['exact_duplicate_share'])})",
                  f"  test posts with a near-duplicate in train:   {text['near_duplicates']} "
                  f"({_pct(text['near_duplicate_share'])})"]
        for ex in text["examples"]:
            lines.append(f"    {ex.get('test_id', ex['test'])} ~ {ex.get('train_id', ex['train'])}  "
                         f"Jaccard {ex['jaccard']:.2f}")
    img = report.get("images")
    if img:
        lines += ["", f"image overlap (pHash, Hamming distance <= {img['max_distance']}): "
                      f"{img['duplicates']} of {img['test_images']} test images ({_pct(img['duplicate_share'])})"]
    elif text:
        lines += ["", "image overlap: no images on one side"]
    return "\n".join(lines)
