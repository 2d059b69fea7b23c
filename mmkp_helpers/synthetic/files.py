"""Statistics of the synthetic benchmark and its files (JSONL splits, PNG images, manifest)."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..data import Example, train_keyphrases, write_jsonl
from ..text import jaccard
from .drawing import render_image
from .generator import SHINGLE, Generator, SyntheticConfig, generate_from, heldout_pairs, shingles
from .vocabulary import (COLOURS, EVENTS, KINDS, MIXES, NEEDS, NO_SCENE, PRIMARIES, SCENES, SHAPES, SIGNATURE, TAGS,
                         TOPICS)

#: 3: text, image and composition posts (one shape; two shapes whose colours mix), the needs label,
#: the held-out pairs on an exact share of fresh composition posts, scene "space" for "fire".
VERSION = 3


def kind_shares(examples: Sequence[Example]) -> dict[str, float]:
    """The share of keyphrase occurrences of each kind."""
    counts = {k: 0 for k in KINDS}
    for ex in examples:
        for kp in ex.keyphrases:
            counts[ex.kinds[kp]] += 1
    total = sum(counts.values())
    return {k: round(v / total, 4) if total else 0.0 for k, v in counts.items()}


def needs_counts(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """Per ``needs`` label (``text``, ``composition``): posts and keyphrase occurrences."""
    out = {n: {"posts": 0, "keyphrases": 0} for n in NEEDS}
    for ex in examples:  # (a study's combine posts get a row of their own when there are any)
        row = out.setdefault(ex.meta["needs"], {"posts": 0, "keyphrases": 0})
        row["posts"] += 1
        row["keyphrases"] += len(ex.keyphrases)
    return out


def near_duplicate_stats(train: Sequence[Example], test: Sequence[Example], threshold: float) -> dict:
    """How many test posts have a training post at word-bigram Jaccard >= ``threshold``."""
    train_sh = [shingles(ex.text) for ex in train]
    best = [max((jaccard(shingles(ex.text), t) for t in train_sh), default=0.0) for ex in test]
    hits = sum(1 for b in best if b >= threshold)
    return {"posts": len(test), "near_duplicates": hits, "share": round(hits / len(test), 4) if test else 0.0,
            "max_jaccard": round(max(best, default=0.0), 4),
            "mean_max_jaccard": round(sum(best) / len(best), 4) if best else 0.0}


def unseen_stats(train: Sequence[Example], examples: Sequence[Example]) -> dict:
    """Keyphrase occurrences (and distinct keyphrases) never seen in training."""
    seen = set(train_keyphrases(train))
    unseen = [kp for ex in examples for kp in ex.keyphrases if kp not in seen]
    total = sum(len(ex.keyphrases) for ex in examples)
    return {"occurrences": len(unseen), "share": round(len(unseen) / total, 4) if total else 0.0,
            "distinct": sorted(set(unseen))}


def manifest(config: SyntheticConfig, splits: dict[str, list[Example]]) -> dict:
    """The summary written as ``manifest.json``."""
    train = splits["train"]
    return {
        "name": "mmkp-synthetic",
        "version": VERSION,
        "params": {**asdict(config), "image_size": list(config.image_size)},
        "files": {name: f"{name}.jsonl" for name in splits} | {"train_keyphrases": "train_keyphrases.txt",
                                                               "images": "images/"},
        "variants": {"original": {"train": "train", "valid": "valid", "test": "test"},
                     "clean": {"train": "train", "valid": "valid", "test": "test_clean"}},
        "counts": {name: len(exs) for name, exs in splits.items()},
        "needs": {name: needs_counts(exs) for name, exs in splits.items()},
        "keyphrases_per_post": {name: round(sum(len(e.keyphrases) for e in exs) / len(exs), 4) if exs else 0.0
                                for name, exs in splits.items()},
        "expected_kind_shares": {k: round(v, 4) for k, v in config.expected_kind_shares().items()},
        "kind_shares": {name: kind_shares(exs) for name, exs in splits.items()},
        "vocabulary": {"topics": list(TOPICS), "events": list(EVENTS), "tags": list(TAGS),
                       "primaries": {k: list(v) for k, v in PRIMARIES.items()}, "colours": list(COLOURS),
                       "mixes": [{"primaries": sorted(pair), "colour": colour} for pair, colour in MIXES.items()],
                       "scenes": {k: {"rgb": list(v[0]), "looks": v[1]} for k, v in SCENES.items()},
                       "no_scene": {"rgb": list(NO_SCENE[0]), "looks": NO_SCENE[1]}, "shapes": list(SHAPES)},
        "heldout_combos": [f"{c} {t}" for c, t in heldout_pairs(config)],
        "series": [{"name": f"{SIGNATURE} {s['name']}", "tags": s["tags"], "subject": {
            k: s["truth"][k] for k in ("topic", "needs", "colour", "primaries", "scene")}, "frame": s["frame"],
            "train_posts": config.series_size} for s in Generator(config).series],
        "unseen": {name: unseen_stats(train, exs) for name, exs in splits.items() if name != "train"},
        "overlap": {"measure": f"word {SHINGLE}-gram Jaccard with the most similar training post",
                    "threshold": config.near_duplicate_threshold,
                    **{name: near_duplicate_stats(train, exs, config.near_duplicate_threshold)
                       for name, exs in splits.items() if name != "train"}},
    }


def make_synthetic(out_dir, seed: int = 0, n_train: int = 600, n_valid: int = 100, n_test: int = 550,
                   image_size: tuple[int, int] = (112, 112), overwrite: bool = True,
                   **options) -> dict[str, Path]:
    """Write the benchmark under ``out_dir`` and return ``{split: path of its JSONL}`` for
    ``train``, ``valid``, ``test`` (original) and ``test_clean``.

    Also writes ``images/<id>.png``, ``train_keyphrases.txt`` and ``manifest.json``. An existing
    ``images/`` folder is emptied first (``overwrite``), so the folder holds exactly this run."""
    config = SyntheticConfig(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test,
                             image_size=tuple(image_size), **options)
    splits = generate_from(config)
    out = Path(out_dir)
    images = out / "images"
    if images.exists():
        if not overwrite:
            raise FileExistsError(f"{images} exists (pass overwrite=True to replace it)")
        shutil.rmtree(images)
    images.mkdir(parents=True)
    for exs in splits.values():
        for ex in exs:
            path = images / f"{ex.id}.png"
            if not path.exists():  # test and test_clean share their fresh posts
                render_image(ex.meta["drawing"]).save(path, format="PNG", optimize=False, compress_level=9)
            ex.image = str(path)
    paths = {name: write_jsonl(exs, out / f"{name}.jsonl") for name, exs in splits.items()}
    (out / "train_keyphrases.txt").write_text("".join(kp + "\n" for kp in train_keyphrases(splits["train"])),
                                              encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps(manifest(config, splits), indent=2) + "\n", encoding="utf-8")
    return paths
