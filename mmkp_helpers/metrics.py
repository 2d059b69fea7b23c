"""CMKP-compatible keyphrase scoring, and the ``mmkp-score`` command.

The rules are those of the upstream CMKP evaluator (``pred_evaluate_func.py`` and
``metric_utils.py`` of yuewang-cuhk/CMKP), so that numbers compare with the literature:

1. Texts, targets and predictions are lower-cased, split on whitespace and Porter-stemmed
   (:mod:`mmkp_helpers.text`). Two keyphrases are the same when their stem sequences are equal.
2. Predictions are deduplicated after stemming (the first occurrence keeps its rank); empty ones
   and those containing a ``<unk>``, ``,`` or ``.`` token are dropped (upstream's validity filter).
   Targets are deduplicated after stemming.
3. **present** / **absent**: a keyphrase is present when its stems occur contiguously in the
   stemmed post. Targets *and* predictions are split that way; the present scores use only the
   present predictions against the present targets (absent likewise), and are averaged only over
   posts with at least one target of that kind.
4. Per post: P@k = hits in the top k / min(k, number of predictions) (0 with no predictions),
   R@k = hits in the top k / number of targets; k in 1, 3, 5 and M (M = all the predictions).
   AP@5 = (sum over hit ranks i <= 5 of hits-so-far / i) / number of targets.
5. Over posts: P@k and R@k are macro-averaged, and **F1@k = 2·P·R / (P + R) of those averages**
   (not the mean of per-post F1s). MAP@5 is the mean AP@5.

Two small deviations, neither of which changes the published figures: runs of whitespace count
as one separator (upstream splits keyphrases on single spaces), so an empty prediction is
dropped rather than kept as a never-matching entry that takes a rank; and a subset with no post
scores 0.0 instead of dividing by zero.

Subsets beyond CMKP's three:

- **unseen** (given the training keyphrase list): a keyphrase is unseen when its stems are not
  those of any training keyphrase. As for present/absent, both targets and predictions are split
  by that predicate: unseen predictions are scored against unseen targets, over posts with at
  least one unseen target.
- **extra subsets** (e.g. the synthetic benchmark's keyphrase kinds): a subset is given only for
  targets, so predictions are not split by a predicate. The rule: per post, the subset's targets
  are scored against the post's predictions **minus those that match one of the post's other
  targets** (a hit on another kind neither helps nor hurts); wrong predictions stay and count
  against precision. Posts with no target in the subset are skipped.
- **unseen:<subset>** (given the training keyphrases and extra subsets): the unseen targets of
  that subset, scored by the same rule (predictions matching the post's other targets removed).
  Present only when some post has such a target, e.g. ``unseen:text+image`` (a colour x object
  pair never seen in training, both words seen) and ``unseen:tag`` on the synthetic benchmark.

Scores are floats in [0, 1]. Each subset also reports P@k and R@k and its counts: ``n`` (posts
scored), ``n_targets`` and ``n_predictions`` (after filtering, in that subset).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

from .data import DataError, Example, load_examples, read_cmkp_src, read_keyphrase_list, read_lines
from .text import is_present, stem_phrase, stem_text

METRIC_NAMES = ("F1@1", "F1@3", "F1@5", "F1@M", "MAP@5")
SUBSETS = ("all", "present", "absent", "unseen")
_KS = ("1", "3", "5", "M")
_INVALID_TOKENS = frozenset({"<unk>", ",", "."})


class _Accumulator:
    """Sums of per-post P@k, R@k and AP@5 for one subset."""

    __slots__ = ("n", "n_targets", "n_predictions", "p", "r", "ap")

    def __init__(self):
        self.n = 0
        self.n_targets = 0
        self.n_predictions = 0
        self.p = [0.0, 0.0, 0.0, 0.0]   # k = 1, 3, 5, M
        self.r = [0.0, 0.0, 0.0, 0.0]
        self.ap = 0.0

    def add(self, predictions: Sequence[tuple], targets: set) -> None:
        """Score one post: ``predictions`` ranked stem tuples, ``targets`` a non-empty set."""
        n_targets = len(targets)
        m = len(predictions)
        self.n += 1
        self.n_targets += n_targets
        self.n_predictions += m
        if m == 0:
            return
        hits = 0
        ap = 0.0
        cumulative = []
        for rank, prediction in enumerate(predictions, 1):
            if prediction in targets:
                hits += 1
                if rank <= 5:
                    ap += hits / rank
            cumulative.append(hits)
        for j, k in enumerate((1, 3, 5, m)):
            kk = k if k < m else m
            h = cumulative[kk - 1]
            self.p[j] += h / kk
            self.r[j] += h / n_targets
        self.ap += ap / n_targets

    def result(self) -> dict:
        out = {}
        n = self.n
        precision = [p / n if n else 0.0 for p in self.p]
        recall = [r / n if n else 0.0 for r in self.r]
        for k, p, r in zip(_KS, precision, recall):
            out[f"F1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out["MAP@5"] = self.ap / n if n else 0.0
        for k, p, r in zip(_KS, precision, recall):
            out[f"P@{k}"] = p
            out[f"R@{k}"] = r
        out.update(n=self.n, n_targets=self.n_targets, n_predictions=self.n_predictions)
        return out


def filter_predictions(predictions: Iterable[str]) -> list[tuple[str, ...]]:
    """Stemmed predictions in rank order, deduplicated, without empty or invalid ones (rule 2)."""
    seen = set()
    out = []
    for prediction in predictions:
        stems = stem_phrase(prediction)
        if stems in seen:
            continue
        seen.add(stems)
        if not stems or not _INVALID_TOKENS.isdisjoint(stems):
            continue
        out.append(stems)
    return out


def unique_targets(targets: Iterable[str]) -> list[tuple[str, ...]]:
    """Stemmed targets, deduplicated, in order, without empty ones."""
    seen = set()
    out = []
    for target in targets:
        stems = stem_phrase(target)
        if stems and stems not in seen:
            seen.add(stems)
            out.append(stems)
    return out


def score(predictions: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], texts: Sequence[str],
          train_keyphrases: Iterable[str] | None = None,
          extra_subsets: dict[str, Sequence[Sequence[str]]] | None = None) -> dict:
    """Score ranked predictions against targets, CMKP style (see the module docstring).

    ``predictions[i]``, ``targets[i]`` and ``texts[i]`` belong to post i. Returns
    ``{"n": posts, "all": {...}, "present": {...}, "absent": {...}}`` plus ``"unseen"`` when
    ``train_keyphrases`` is given and one entry per ``extra_subsets`` name; every subset holds
    F1@1, F1@3, F1@5, F1@M, MAP@5, P@k, R@k and the counts ``n``, ``n_targets``,
    ``n_predictions``. A post without any (non-empty) target is not scored in any subset."""
    n = len(texts)
    if len(predictions) != n or len(targets) != n:
        raise ValueError(f"{len(predictions)} prediction lists, {len(targets)} target lists and {n} texts: "
                         "one of each per post expected")
    extra_subsets = dict(extra_subsets or {})
    for name, subset in extra_subsets.items():
        if name in SUBSETS or name == "n":
            raise ValueError(f"extra subset name {name!r} clashes with a standard subset")
        if len(subset) != n:
            raise ValueError(f"extra subset {name!r} has {len(subset)} entries for {n} posts")
    seen = None if train_keyphrases is None else {s for s in map(stem_phrase, train_keyphrases) if s}
    acc = {name: _Accumulator() for name in (*SUBSETS[:3], *(("unseen",) if seen is not None else ()),
                                             *extra_subsets)}
    for i in range(n):
        gold = unique_targets(targets[i])
        if not gold:
            continue
        preds = filter_predictions(predictions[i])
        text = stem_text(texts[i])
        gold_set = set(gold)
        acc["all"].add(preds, gold_set)

        present_gold = {t for t in gold if is_present(t, text)}
        absent_gold = gold_set - present_gold
        if present_gold or absent_gold:
            present_flags = [is_present(p, text) for p in preds]
            if present_gold:
                acc["present"].add([p for p, f in zip(preds, present_flags) if f], present_gold)
            if absent_gold:
                acc["absent"].add([p for p, f in zip(preds, present_flags) if not f], absent_gold)
        if seen is not None:
            unseen_gold = {t for t in gold if t not in seen}
            if unseen_gold:
                acc["unseen"].add([p for p in preds if p not in seen], unseen_gold)
        for name, subset in extra_subsets.items():
            wanted = {s for s in map(stem_phrase, subset[i]) if s}
            if not wanted:
                continue
            others = gold_set - wanted
            acc[name].add([p for p in preds if p not in others], wanted)
            unseen_wanted = wanted - seen if seen is not None and not name.startswith(POST_SUBSET_PREFIX) else set()
            if unseen_wanted:  # e.g. unseen:text+image, the held-out colour x object pairs
                acc.setdefault(f"unseen:{name}", _Accumulator()).add(
                    [p for p in preds if p not in gold_set - unseen_wanted], unseen_wanted)
    result: dict = {"n": n}
    result.update({name: a.result() for name, a in acc.items()})
    return result


#: Subsets of posts rather than of keyphrases (every keyphrase of the posts a label marks), e.g.
#: ``needs:composition``; they get no ``unseen:`` companion (``unseen:<kind>`` covers that).
POST_SUBSET_PREFIX = "needs:"


def needs_subsets(examples: Sequence[Example]) -> dict[str, list[list[str]]]:
    """Per label in the examples' ``meta["needs"]`` (the synthetic benchmark's ``text`` and
    ``composition`` posts), ``needs:<label>``: every keyphrase of the posts with that label
    (others get none, so they are not scored in it)."""
    labels = sorted({str(ex.meta["needs"]) for ex in examples if isinstance(ex.meta, dict) and ex.meta.get("needs")})
    return {f"{POST_SUBSET_PREFIX}{label}": [list(ex.keyphrases) if isinstance(ex.meta, dict)
                                             and ex.meta.get("needs") == label else [] for ex in examples]
            for label in labels}


def kind_subsets(examples: Sequence[Example]) -> dict[str, list[list[str]]]:
    """Per kind name in the examples' ``meta["kinds"]``, each post's keyphrases of that kind.

    A kind named like a standard subset (``present``...) becomes ``kind:<name>`` so that the
    evaluator's own present/absent scores are never replaced."""
    names: list[str] = []
    for ex in examples:
        for kind in ex.kinds.values():
            if kind not in names:
                names.append(str(kind))
    out = {}
    for name in names:
        key = f"kind:{name}" if name in SUBSETS or name == "n" else name
        out[key] = [[kp for kp in ex.keyphrases if ex.kinds.get(kp) == name] for ex in examples]
    return out


def score_examples(predictions: Sequence[Sequence[str]], examples: Sequence[Example],
                   train_keyphrases: Iterable[str] | None = None) -> dict:
    """:func:`score` with texts and targets taken from ``examples``; when examples carry
    ``meta["kinds"]`` (keyphrase -> kind), one extra subset per kind (see :func:`kind_subsets`),
    and when they carry ``meta["needs"]``, one per label (:func:`needs_subsets`)."""
    return score(predictions, [ex.keyphrases for ex in examples], [ex.text for ex in examples],
                 train_keyphrases=train_keyphrases,
                 extra_subsets=(kind_subsets(examples) | needs_subsets(examples)) or None)


def parse_prediction_line(line: str) -> list[str]:
    """``"kp1;kp2;..."`` -> ``["kp1", "kp2", ...]`` (stripped, empty items left out)."""
    return [kp.strip() for kp in line.split(";") if kp.strip()]


def read_predictions(path: str | os.PathLike, expected_lines: int | None = None) -> list[list[str]]:
    """Ranked predictions, one post a line ``kp1;kp2;...`` (an empty line: no prediction).

    With ``expected_lines`` (the number of source posts) a different line count is a
    :class:`DataError` naming the first line that is missing or extra."""
    path = Path(path)
    lines = read_lines(path)
    if expected_lines is not None and len(lines) != expected_lines:
        if len(lines) < expected_lines:
            raise DataError(path, len(lines) + 1, f"predictions end after {len(lines)} lines but the source has "
                                                  f"{expected_lines} posts (one line per post, in order)")
        raise DataError(path, expected_lines + 1, f"extra line: {len(lines)} prediction lines but the source has "
                                                  f"{expected_lines} posts (one line per post, in order)")
    return [parse_prediction_line(line) for line in lines]


def format_table(result: dict) -> str:
    """A readable table of a :func:`score` result: one row per subset."""
    header = f"{'subset':<14}{'posts':>7}{'targets':>9}" + "".join(f"{m:>8}" for m in METRIC_NAMES)
    rows = [header, "-" * len(header)]
    for name, scores in result.items():
        if not isinstance(scores, dict):
            continue
        rows.append(f"{name:<14}{scores['n']:>7}{scores['n_targets']:>9}"
                    + "".join(f"{scores[m]:>8.4f}" for m in METRIC_NAMES))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``mmkp-score --pred PRED --src SRC [--train-keyphrases FILE] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="mmkp-score",
        description="Score ranked keyphrase predictions the way the CMKP evaluator does "
                    "(Porter-stemmed exact match; macro F1@1/3/5/M and MAP@5; all/present/absent[/unseen]).")
    parser.add_argument("--pred", required=True, help="predictions: one post a line, 'kp1;kp2;...' in rank order")
    parser.add_argument("--src", required=True,
                        help="the posts: a CMKP *_src.txt, a JSONL file of this project, or LLaVA JSON")
    parser.add_argument("--train-keyphrases", help="training keyphrases, one a line: adds the 'unseen' subset")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args(argv)
    try:
        src = Path(args.src)
        examples = read_cmkp_src(src) if src.name.endswith("_src.txt") else load_examples(src)
        predictions = read_predictions(args.pred, expected_lines=len(examples))
        train = read_keyphrase_list(args.train_keyphrases) if args.train_keyphrases else None
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"mmkp-score: error: {err}", file=sys.stderr)
        return 2
    result = score_examples(predictions, examples, train_keyphrases=train)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['n']} posts: {args.src}")
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
