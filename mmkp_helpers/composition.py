"""A difference between two test sets with their composition held fixed (direct standardisation).

Two runs scored on two test sets (the original split and the clean one) differ for two reasons:
what the model can do (here: memorisation pays only on the original split) and *which posts*
each test set holds. On the synthetic benchmark an account post (one carrying an account's
tags, which only memorisation gives) is much harder than any other post, and the clean test set
holds more of them (77 of 150 against 36 of 150), so the clean split scores lower even before
any overlap acts.

Direct standardisation removes the second reason: each post gets a weight so that every *kind
of post* has the same share in both test sets (by default the pooled share of the two), and
the score is computed from the reweighted per-post values. The scores are CMKP's: per post
P@k and R@k (:mod:`mmkp_helpers.metrics`, rule 4), macro-averaged over posts, and F1@k =
2PR/(P+R) of the averages. A macro average is a mean over posts, so reweighting is exact: with
kind shares ``w`` the standardised P@k is ``sum_kind w[kind] * mean P@k over the kind's
posts`` (R@k and AP@5 alike) and F1@k comes from those P and R. With each split's own shares
it gives back the raw score of :func:`mmkp_helpers.metrics.score` exactly.

The per-kind means and counts (:func:`kind_stats`) are all the measurement needs, so a run can
store them (a few numbers) and two runs scored in different processes (the seed sweep,
:mod:`mmkp_helpers.bench.sft_seeds`) can be compared afterwards (:func:`standardised_difference`).

    stats_o = kind_stats(generations["original"], original_test)
    stats_c = kind_stats(generations["text+image"], clean_test)
    d = standardised_difference(stats_o, stats_c)   # original minus clean
    d["raw_difference"], d["controlled_difference"], d["kinds"]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .data import Example, read_jsonl
from .metrics import _Accumulator, filter_predictions, unique_targets

ACCOUNT, OTHER = "account", "other"
_KS = ("1", "3", "5", "M")
STAT_KEYS = tuple(f"{pr}@{k}" for k in _KS for pr in ("P", "R")) + ("AP@5",)
METRICS = ("F1@1", "F1@3", "F1@5", "F1@M", "MAP@5")


def post_kind(example: Example) -> str:
    """``"account"`` for a post carrying an account's tags (a keyphrase of kind ``tag``, see
    :mod:`mmkp_helpers.synthetic`), else ``"other"``."""
    return ACCOUNT if "tag" in example.kinds.values() else OTHER


def _prediction_lists(predictions: Sequence[Any], examples: Sequence[Example]) -> list[list[str]]:
    """Keyphrase lists aligned with ``examples``: generations (objects with ``id`` and
    ``keyphrases``, or dicts with ``id`` and ``prediction``) are matched by id; plain lists
    are taken in order."""
    if len(predictions) and not isinstance(predictions[0], (list, tuple)):
        def key(p):
            return p["id"] if isinstance(p, Mapping) else p.id
        by_id = {key(p): p for p in predictions}
        missing = [ex.id for ex in examples if ex.id not in by_id]
        if missing:
            raise ValueError(f"no generation for {len(missing)} examples (first ids {missing[:3]})")
        out = []
        for ex in examples:
            p = by_id[ex.id]
            out.append(list(p["prediction"] if isinstance(p, Mapping) else p.keyphrases))
        return out
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} prediction lists for {len(examples)} examples")
    return [list(p) for p in predictions]


def kind_stats(predictions: Sequence[Any], examples: Sequence[Example],
               kind_of: Callable[[Example], str] = post_kind) -> dict[str, dict]:
    """Per kind of post: ``posts`` (scored posts: those with a target) and the means over them of
    the per-post P@k, R@k (k = 1, 3, 5, M) and AP@5 of the ``all`` subset, computed exactly as
    :func:`mmkp_helpers.metrics.score` does. ``predictions``: generations or keyphrase lists
    (see :func:`_prediction_lists`). Kinds in order of first appearance."""
    preds = _prediction_lists(predictions, examples)
    sums: dict[str, dict] = {}
    for ex, pred in zip(examples, preds):
        gold = unique_targets(ex.keyphrases)
        if not gold:
            continue  # score() does not score a post without a target either
        acc = _Accumulator()
        acc.add(filter_predictions(pred), set(gold))
        row = sums.setdefault(kind_of(ex), {"posts": 0} | {k: 0.0 for k in STAT_KEYS})
        row["posts"] += 1
        for j, k in enumerate(_KS):
            row[f"P@{k}"] += acc.p[j]
            row[f"R@{k}"] += acc.r[j]
        row["AP@5"] += acc.ap
    return {kind: {"posts": row["posts"]} | {k: row[k] / row["posts"] for k in STAT_KEYS}
            for kind, row in sums.items()}


def score_from_stats(stats: Mapping[str, Mapping], metric: str = "F1@M",
                     weights: Mapping[str, float] | None = None) -> float | None:
    """``metric`` (F1@1/3/5/M or MAP@5) from per-kind means: each kind weighted by ``weights``
    (shares summing to 1, kinds missing from ``stats`` not allowed), or by its own post count
    when ``weights`` is None (then it equals the raw score). None when no post is scored."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    if weights is None:
        total = sum(s["posts"] for s in stats.values())
        if not total:
            return None
        weights = {k: s["posts"] / total for k, s in stats.items()}
    else:
        absent = [k for k, w in weights.items() if w and not stats.get(k, {}).get("posts")]
        if absent:
            raise ValueError(f"weights given to kinds with no post: {absent}")
        if abs(sum(weights.values()) - 1) > 1e-9:
            raise ValueError(f"weights must sum to 1, not {sum(weights.values())}")

    def mean(key):
        return sum(w * stats[k][key] for k, w in weights.items() if w)

    if metric == "MAP@5":
        return mean("AP@5")
    k = metric.split("@")[1]
    p, r = mean(f"P@{k}"), mean(f"R@{k}")
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def standardised_difference(stats_a: Mapping[str, Mapping], stats_b: Mapping[str, Mapping], metric: str = "F1@M",
                            weights: str | Mapping[str, float] = "pooled") -> dict:
    """``a`` minus ``b``, raw and with the kinds of post given the same shares in both.

    ``weights``: ``"pooled"`` (each kind's share of the two test sets together), ``"a"`` or
    ``"b"`` (one test set's shares) or a mapping kind -> share. Only kinds with posts in both
    test sets can be standardised; the others are listed in ``dropped_kinds`` and left out of
    the controlled scores (the raw ones keep every post). Returns::

        {"metric", "raw_a", "raw_b", "raw_difference", "controlled_a", "controlled_b",
         "controlled_difference", "weights": {kind: share}, "dropped_kinds": [...],
         "posts_a", "posts_b",
         "kinds": {kind: {"posts_a", "posts_b", "share_a", "share_b", "a", "b", "difference"}}}

    (a per-kind score is None where that test set has no post of the kind; the controlled
    values are None when no kind is common to both)."""
    posts_a = sum(s["posts"] for s in stats_a.values())
    posts_b = sum(s["posts"] for s in stats_b.values())
    kinds = list(dict.fromkeys([*stats_a, *stats_b]))
    common = [k for k in kinds if stats_a.get(k, {}).get("posts") and stats_b.get(k, {}).get("posts")]
    dropped = [k for k in kinds if k not in common]
    if isinstance(weights, str):
        if weights == "pooled":
            raw = {k: stats_a[k]["posts"] + stats_b[k]["posts"] for k in common}
        elif weights in ("a", "b"):
            raw = {k: (stats_a if weights == "a" else stats_b)[k]["posts"] for k in common}
        else:
            raise ValueError(f"weights {weights!r}: 'pooled', 'a', 'b' or a mapping kind -> share")
        total = sum(raw.values())
        shares = {k: v / total for k, v in raw.items()} if total else {}
    else:
        extra = [k for k in weights if k not in common]
        if extra:
            raise ValueError(f"weights for kinds not in both test sets: {extra}")
        total = sum(weights.values())
        shares = {k: weights[k] / total for k in common if k in weights}

    raw_a, raw_b = score_from_stats(stats_a, metric), score_from_stats(stats_b, metric)
    ctrl_a = score_from_stats(stats_a, metric, shares) if shares else None
    ctrl_b = score_from_stats(stats_b, metric, shares) if shares else None

    def share(stats, k, total):
        return stats[k]["posts"] / total if k in stats and total else 0.0

    per_kind = {}
    for k in kinds:
        a = score_from_stats({k: stats_a[k]}, metric) if k in stats_a else None
        b = score_from_stats({k: stats_b[k]}, metric) if k in stats_b else None
        per_kind[k] = {"posts_a": stats_a.get(k, {}).get("posts", 0), "posts_b": stats_b.get(k, {}).get("posts", 0),
                       "share_a": share(stats_a, k, posts_a), "share_b": share(stats_b, k, posts_b),
                       "a": a, "b": b, "difference": None if a is None or b is None else a - b}
    diff = (lambda x, y: None if x is None or y is None else x - y)
    return {"metric": metric, "raw_a": raw_a, "raw_b": raw_b, "raw_difference": diff(raw_a, raw_b),
            "controlled_a": ctrl_a, "controlled_b": ctrl_b, "controlled_difference": diff(ctrl_a, ctrl_b),
            "weights": shares, "dropped_kinds": dropped, "posts_a": posts_a, "posts_b": posts_b, "kinds": per_kind}


def composition_difference(predictions_a: Sequence[Any], examples_a: Sequence[Example],
                           predictions_b: Sequence[Any], examples_b: Sequence[Example], metric: str = "F1@M",
                           kind_of: Callable[[Example], str] = post_kind,
                           weights: str | Mapping[str, float] = "pooled") -> dict:
    """:func:`standardised_difference` of two scored runs (generations or keyphrase lists and
    their test examples): run a minus run b."""
    return standardised_difference(kind_stats(predictions_a, examples_a, kind_of),
                                   kind_stats(predictions_b, examples_b, kind_of), metric, weights)


def read_generations(path: str | os.PathLike) -> list[dict]:
    """``{"id", "prediction"}`` per line of a generations file
    (:func:`mmkp_helpers.inference.write_generations_jsonl`), read without importing torch."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append({"id": d["id"], "prediction": list(d["prediction"])})
    return out


def composition_difference_from_files(generations_a: str | os.PathLike, test_a: str | os.PathLike,
                                      generations_b: str | os.PathLike, test_b: str | os.PathLike,
                                      metric: str = "F1@M", kind_of: Callable[[Example], str] = post_kind,
                                      weights: str | Mapping[str, float] = "pooled") -> dict:
    """:func:`composition_difference` from saved generations (JSONL, matched by id) and the test
    splits' JSONL files."""
    return composition_difference(read_generations(generations_a), read_jsonl(test_a),
                                  read_generations(generations_b), read_jsonl(test_b), metric, kind_of, weights)


def format_difference(d: Mapping, a: str = "original", b: str = "clean", digits: int = 3) -> str:
    """One line for a notebook or a log: raw and controlled difference, and the kinds' shares."""
    def f(x):
        return "n/a" if x is None else f"{x:+.{digits}f}"
    kinds = "; ".join(f"{k}: {v['posts_a']} vs {v['posts_b']} posts, {d['metric']} {f(v['difference'])}"
                      for k, v in d["kinds"].items())
    return (f"{d['metric']} {a} minus {b}: raw {f(d['raw_difference'])}, composition held fixed "
            f"{f(d['controlled_difference'])} ({kinds})")
