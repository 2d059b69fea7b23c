"""The splits the notebooks read: :func:`prepare_splits` writes the original and clean splits of a
dataset (with a manifest of their overlap figures) under ``<results_dir>/data/splits/<dataset>/``
once, and does nothing when the manifest already matches; :func:`read_manifest` reads it back.
For CMKP, the original split is the authors' one when their training files are there, and the
manifest's ``dataset_label`` says which (``cmkp`` or ``cmkp-public-resplit``)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

from ..data import Example
from .common import NGRAM, THRESHOLD, _pct
from .splits import _sizes, build_clean_split, random_split, split_figures, write_split


DATASETS = ("synthetic", "cmkp")
VARIANTS = ("original", "clean")
#: The clean split's unseen test keyphrase share when none is asked for (None: no steering, the
#: share is what keeping clusters whole gives). The synthetic pool's recurring accounts are large
#: near-duplicate clusters whose tags nobody else uses, so the tags of the accounts that land in
#: test are unseen; the held-out colour x object pairs are kept unseen too (``hold_out``). Steering
#: would hold further keyphrases out (seen pairs, accounts' tags) and skew the test set's mix of
#: posts, so the synthetic split does not steer.
UNSEEN_SHARE = {"synthetic": None, "cmkp": 0.1}
#: The test split's share of the pool. The synthetic pool's test split is large (30%) so that the
#: subsets the claims rest on (the held-out colour x object pairs, the composition posts) hold
#: enough keyphrases to measure; generating posts is cheap, training on them is what costs.
TEST_SHARE = {"synthetic": 0.3, "cmkp": 0.15}
#: The valid split's share of the pool (the synthetic one is small: valid posts only score
#: checkpoints and choose the auto-thinking threshold, and the held-out pairs go to test first).
VALID_SHARE = {"synthetic": 0.06, "cmkp": 0.1}
#: 3: the clean split keeps the held-out colour x object pairs unseen; 4: CMKP's official split when
#: train_src.txt is there, images_dir, the dataset label, files used, image counts and inputs; 5: the
#: synthetic benchmark version 3 (text and composition posts) and its larger test split.
SPLITS_VERSION = 5


def splits_dir(results_dir: str | os.PathLike, dataset: str) -> Path:
    """``<results_dir>/data/splits/<dataset>`` (results_dir relative to the project root)."""
    from ..paths import resolve

    return resolve(results_dir) / "data" / "splits" / dataset


def _synthetic_pool(folder: Path, seed: int, synthetic: dict) -> list[Example]:
    from ..data import read_jsonl
    from ..synthetic import make_synthetic

    paths = make_synthetic(folder / "source", seed=seed, **synthetic)
    seen, pool = set(), []
    for name in ("train", "valid", "test_clean", "test"):
        for ex in read_jsonl(paths[name]):
            if ex.id not in seen:
                seen.add(ex.id)
                pool.append(ex)
    return pool


def _cmkp_parts(sources: dict, images_dir: str | None) -> tuple[dict[str, list[Example]], dict[str, dict]]:
    """The CMKP posts of each split :func:`cmkp.cmkp_sources` found (``train`` only with the
    authors' training files), with their images from ``images_dir``, and each split's
    :class:`data.LoadReport` as a dict."""
    from .. import data

    parts, reports = {}, {}
    for split, folder in sources["folders"].items():
        parts[split] = data.load_cmkp(folder, split, images_dir=images_dir, verbose=False)
        reports[split] = data.last_load_report.to_dict()
    return parts, reports


def _images_summary(reports: dict[str, dict], images_dir: str | None) -> dict:
    keys = ("n_posts", "n_images", "n_missing_images", "n_corrupt_images", "n_fallback")
    return {"images_dir": images_dir, **{k: sum(r[k] for r in reports.values()) for k in keys},
            "by_split": {split: {k: r[k] for k in keys} for split, r in reports.items()}}


def _reachable_unseen(pool: Sequence[Example]) -> list[str]:
    """The synthetic generator's held-out colour x object keyphrases (``meta["heldout"]`` posts):
    unseen in training on both splits' generator, and kept unseen by the clean split."""
    return sorted({kp for ex in pool if (ex.meta or {}).get("heldout")
                   for kp, kind in ex.kinds.items() if kind == "text+image"})


def prepare_splits(dataset: str, results_dir: str | os.PathLike, seed: int = 0, valid_share: float | None = None,
                   test_share: float | None = None, unseen_share: float | None = None, threshold: float = THRESHOLD,
                   ngram: int = NGRAM, synthetic: dict | None = None, cmkp_root: str | os.PathLike | None = None,
                   images_dir: str | os.PathLike | None = None, force: bool = False,
                   verbose: bool = True) -> dict[str, dict[str, Path]]:
    """Write (once) the splits later notebooks train and evaluate on, and return their paths:
    ``{"original": {"train", "valid", "test"}, "clean": {...}}`` -> JSONL paths.

    - ``synthetic``: the pool is every post of the synthetic generator (train, valid, fresh test
      and the near-duplicates of training posts; ``synthetic`` holds generator options, default
      ``{"n_train": 600, "n_valid": 100, "n_test": 550, "dup_share": 1.0}`` and the generator's
      series defaults), images under ``source/images/`` (absolute paths in the JSONL);
      ``original`` is :func:`random_split` of the pool with ``valid_share`` and ``test_share``
      (defaults: :data:`VALID_SHARE` and :data:`TEST_SHARE` of the dataset).
    - ``cmkp`` (folder ``cmkp_root`` or :func:`cmkp.cmkp_dir`; :func:`cmkp.cmkp_sources` says what
      it gives): with ``tw_mm_s1/train_src.txt`` there, ``original`` is the authors' split (train =
      train_src, valid = valid_src, test = test_src: 42,959 / 5,370 / 5,372 posts) and the pool is
      the union of the three, labelled ``cmkp``; without it, the pool is the 10,742 public
      valid+test posts, ``original`` a :func:`random_split` of them with the two shares, labelled
      ``cmkp-public-resplit``. Posts carry text, image wordings and OCR, and their image when
      ``images_dir`` holds it (``images_dir/<URL basename>``); posts without one are counted
      and fall back to text + wordings + OCR.
    - ``clean``: :func:`build_clean_split` of the pool with the part sizes of ``original`` (its
      ``unseen_share`` by default :data:`UNSEEN_SHARE` of the dataset).
    - files: ``<results_dir>/data/splits/<dataset>/{original,clean}/{train,valid,test}.jsonl`` (+
      ``train_keyphrases.txt``) and ``manifest.json``: parameters, ``dataset_label`` (what records
      carry as ``dataset``), ``original_split`` (``official`` or ``random``), ``cmkp`` (the files
      used and their checksum state; None for synthetic), ``images`` (posts with an image, missing,
      corrupted, per source split), ``inputs`` (:func:`cmkp.inputs_label` of the pool and of each
      part), overlap figures of both splits.
    When ``manifest.json`` holds the same parameters and every file exists, nothing is recomputed
    (milliseconds); ``force`` rebuilds."""
    from ..cmkp import cmkp_sources, inputs_label
    from ..synthetic import SyntheticConfig

    series = {k: getattr(SyntheticConfig, k) for k in ("n_series", "series_share", "series_tags")}
    synthetic = {"n_train": 600, "n_valid": 100, "n_test": 550, "dup_share": 1.0} | series | dict(synthetic or {})
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: expected one of {DATASETS}")
    if dataset != "cmkp" and images_dir is not None:
        raise ValueError(f"images_dir is for CMKP's images; the {dataset} pool brings its own")
    images_dir = None if images_dir is None else str(Path(images_dir).expanduser().resolve())
    sources = cmkp_sources(cmkp_root) if dataset == "cmkp" else None
    unseen_share = UNSEEN_SHARE[dataset] if unseen_share is None else unseen_share  # None: no steering
    test_share = TEST_SHARE[dataset] if test_share is None else test_share
    valid_share = VALID_SHARE[dataset] if valid_share is None else valid_share
    folder = splits_dir(results_dir, dataset)
    params = {"version": SPLITS_VERSION, "dataset": dataset, "seed": seed, "valid_share": valid_share,
              "test_share": test_share, "unseen_share": unseen_share, "threshold": threshold, "ngram": ngram,
              "synthetic": synthetic if dataset == "synthetic" else None,
              "cmkp_root": None if dataset != "cmkp" else str(Path(cmkp_root) if cmkp_root else ""),
              "cmkp_folders": sources and sources["folders"], "images_dir": images_dir}
    paths = {v: {s: folder / v / f"{s}.jsonl" for s in ("train", "valid", "test")} for v in VARIANTS}
    manifest_path = folder / "manifest.json"
    if not force and manifest_path.is_file() and all(p.is_file() for v in paths.values() for p in v.values()):
        try:
            if json.loads(manifest_path.read_text())["params"] == json.loads(json.dumps(params)):
                return paths
        except (ValueError, KeyError):
            pass
    t0 = time.perf_counter()
    if sources is None:
        pool = _synthetic_pool(folder, seed, synthetic)
        label, reports = dataset, {"pool": {"n_posts": len(pool), "n_images": sum(1 for ex in pool if ex.image),
                                            "n_missing_images": 0, "n_corrupt_images": 0,
                                            "n_fallback": sum(1 for ex in pool if not ex.image)}}
    else:
        parts, reports = _cmkp_parts(sources, images_dir)
        pool = [ex for split in ("train", "valid", "test") for ex in parts.get(split, [])]
        label = sources["dataset"]
    if sources is not None and "train" in parts:
        original, kind = {s: parts[s] for s in ("train", "valid", "test")}, "official"
        sizes = {s: len(original[s]) for s in ("train", "valid", "test")}
    else:
        sizes, kind = _sizes(len(pool), valid_share, test_share), "random"
        original = random_split(pool, sizes, seed)
    clean, info = build_clean_split(pool, sizes, seed, unseen_share, threshold, ngram, hold_out=_reachable_unseen(pool))
    manifest = {"params": params, "dataset_label": label, "original_split": kind, "cmkp": sources,
                "pool": len(pool), "sizes": sizes,
                "files": {v: {s: f"{v}/{s}.jsonl" for s in ("train", "valid", "test")} | {
                    "train_keyphrases": f"{v}/train_keyphrases.txt"} for v in VARIANTS},
                "images": _images_summary(reports, images_dir), "inputs": {"pool": inputs_label(pool)},
                "clean_split": info, "figures": {}}
    for variant, split in (("original", original), ("clean", clean)):
        write_split(split, folder / variant)
        manifest["figures"][variant] = split_figures(split, threshold, ngram)
        manifest["inputs"][variant] = {part: inputs_label(split[part]) for part in ("train", "valid", "test")}
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    from ..results import write_json

    write_json(manifest_path, manifest)
    if verbose:
        f, im = manifest["figures"], manifest["images"]
        print(f"{label} splits in {folder} ({manifest['seconds']:.1f} s): pool {len(pool)}, {kind} original split, "
              f"sizes {sizes}; inputs {manifest['inputs']['pool']} ({im['n_images']} images, "
              f"{im['n_missing_images']} missing, {im['n_corrupt_images']} corrupted); test "
              f"near-duplicates of train original {_pct(f['original']['text']['test_vs_train']['near_duplicate_share'])}"
              f" / clean {_pct(f['clean']['text']['test_vs_train']['near_duplicate_share'])}; unseen test keyphrases "
              f"original {_pct(f['original']['unseen_share']['test'])} / clean {_pct(f['clean']['unseen_share']['test'])}")
    return paths


def read_manifest(results_dir: str | os.PathLike, dataset: str) -> dict:
    """The ``manifest.json`` of :func:`prepare_splits` (``dataset_label``, ``original_split``,
    ``cmkp``, ``images``, ``inputs``, ``sizes``, ``figures``, ...)."""
    return json.loads((splits_dir(results_dir, dataset) / "manifest.json").read_text())
