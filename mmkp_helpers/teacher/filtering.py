"""Judging a teacher's answer (Fine-tune-CoT filtering): F1 against the gold, leaks, no answer."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from ..data import Example
from ..metrics import filter_predictions, unique_targets
from ..text import is_present, stem_text
from .base import TeacherAnswer


def keyphrase_f1(predicted: Iterable[str], gold: Iterable[str]) -> float:
    """F1 of a keyphrase list against the gold list with the evaluator's stemmed matching."""
    preds = filter_predictions(predicted)
    targets = unique_targets(gold)
    if not preds or not targets:
        return 0.0
    hits = len(set(preds) & set(targets))
    if not hits:
        return 0.0
    p, r = hits / len(preds), hits / len(targets)
    return 2 * p * r / (p + r)


_STOP = {"the", "a", "an", "and", "or", "of", "are", "is", "key", "keyphrase", "keyphrases", "hashtags", "tags"}
_LABEL = re.compile(r"\b(?:key\s*-?\s*phrases?|hashtags?|keywords?|tags|answer)\b\s*(?:are|is)?\s*[:\-]", re.I)
_LABEL_START = re.compile(r"^\W*(?:the\s+)?(?:gold\s+|given\s+|final\s+)?(?:key\s*-?\s*phrases?|hashtags?|keywords?|"
                          r"tags|answer)\b", re.I)


def leaks_gold(rationale: str | None, gold: Sequence[str]) -> bool:
    """Whether a rationale lists the gold keyphrases before reasoning: its first sentence (up to
    the first ``.``, ``!``, ``?`` or newline) names a gold keyphrase after a label
    ("Keyphrases: ...", "The hashtags are ..."), or is little more than gold keyphrases (at least
    two of them, or the only one; >= 60% of its words, leaving out "the", "and" and the like, and
    the conclusion after a sentence's last ": " when reasoning comes before it)."""
    if not rationale:
        return False
    first = re.split(r"[.!?\n]", rationale.strip(), maxsplit=1)[0]
    words = re.sub(r"[^\w\s'-]", " ", first.lower()).split()
    stems = stem_text(" ".join(words))
    named = [g for g in unique_targets(gold) if is_present(g, stems)]
    if not named:
        return False
    if _LABEL_START.search(first) or _LABEL.search(first):
        return True
    # the share is read on the reasoning before a closing conclusion ("the text names a bike and a
    # trip: bike; trip" reasons from the text, then concludes: not a list of the gold keyphrases)
    if ": " in first and first.rsplit(": ", 1)[0].strip():
        words = re.sub(r"[^\w\s'-]", " ", first.rsplit(": ", 1)[0].lower()).split()
        stems = stem_text(" ".join(words))
    content = [s for w, s in zip(words, stems) if w not in _STOP]
    covered = {s for g in named for s in g}
    share = sum(1 for s in content if s in covered) / len(content) if content else 0.0
    return len(named) >= min(2, len(unique_targets(gold))) and share >= 0.6


def judge(answer: TeacherAnswer, example: Example, mode: str, min_f1: float) -> tuple[str, float, bool]:
    """(verdict "kept" | "filtered" | "no_answer", F1 of the answer's keyphrases, leaked)."""
    f1 = keyphrase_f1(answer.keyphrases, example.keyphrases)
    if not (answer.rationale or "").strip() or not answer.keyphrases:
        return "no_answer", f1, False
    if mode == "predict":
        return ("kept" if f1 >= min_f1 else "filtered"), f1, False
    return "kept", f1, leaks_gold(answer.rationale, example.keyphrases)
