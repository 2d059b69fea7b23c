"""The ``mmkp-overlap`` command line (:func:`main`)::

    mmkp-overlap --train TRAIN --test TEST [--json] [--threshold 0.5] [--method lsh|exact|auto]

TRAIN/TEST: our JSONL, a CMKP ``*_src.txt``, or a folder with ``--train-split``/``--test-split``
(CMKP layout or ``{split}.jsonl``). A TRAIN ending in ``.txt`` but not ``_src.txt`` is a keyphrase
list (one a line): only the keyphrase overlap is reported then.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..data import load_examples, read_keyphrase_list
from .common import IMAGE_MAX_DISTANCE, METHODS, NGRAM, NUM_PERM, THRESHOLD
from .report import format_report, overlap_report


def _load(spec: str, split: str | None, role: str):
    """Examples from a path spec, or the keyphrase list for a plain ``.txt`` train file."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".txt" and not path.name.endswith("_src.txt"):
        if role != "train":
            raise ValueError(f"{spec}: a keyphrase list can only be the --train side")
        return read_keyphrase_list(path), True
    if path.is_dir() and split is None:
        split = role
    return load_examples(path, split=split, verbose=False), False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmkp-overlap",
        description="Train/test overlap of a keyphrase benchmark: keyphrases (exact and stemmed), present/absent "
                    "rates, exact and near-duplicate texts (MinHash-LSH), duplicate images (pHash).")
    parser.add_argument("--train", required=True, help="training posts: JSONL, CMKP *_src.txt, a folder (with "
                        "--train-split), or a keyphrase list (.txt, one a line: keyphrase overlap only)")
    parser.add_argument("--test", required=True, help="test posts: JSONL, CMKP *_src.txt, or a folder (with --test-split)")
    parser.add_argument("--train-split", default=None, help="split name when --train is a folder (default train)")
    parser.add_argument("--test-split", default=None, help="split name when --test is a folder (default test)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"near-duplicate Jaccard (default {THRESHOLD})")
    parser.add_argument("--ngram", type=int, default=NGRAM, help=f"word n-gram shingles (default {NGRAM})")
    parser.add_argument("--method", choices=METHODS, default="lsh",
                        help="near-duplicate search: lsh (default), datasketch, exact (exhaustive), auto (exact when "
                             "affordable)")
    parser.add_argument("--num-perm", type=int, default=NUM_PERM, help=f"MinHash permutations (default {NUM_PERM})")
    parser.add_argument("--image-distance", type=int, default=IMAGE_MAX_DISTANCE,
                        help=f"pHash Hamming distance for duplicate images (default {IMAGE_MAX_DISTANCE})")
    parser.add_argument("--no-images", action="store_true", help="skip the image overlap")
    parser.add_argument("--examples", type=int, default=5, help="near-duplicate pairs to show (default 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        train, _ = _load(args.train, args.train_split, "train")
        test, _ = _load(args.test, args.test_split, "test")
        report = overlap_report(train, test, threshold=args.threshold, method=args.method, ngram=args.ngram,
                                images=not args.no_images, image_max_distance=args.image_distance,
                                examples=args.examples, num_perm=args.num_perm)
    except (OSError, ValueError, MemoryError) as err:
        print(f"mmkp-overlap: {err}", file=sys.stderr)
        return 2
    report["train"]["source"] = args.train
    report["test"]["source"] = args.test
    if args.json:
        if report["text"]:
            report["text"].pop("best_jaccard", None)
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, args.train, args.test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
