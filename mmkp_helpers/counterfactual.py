"""Counterfactual rationales: training examples that teach a CoT student to answer what its
rationale concludes (SCOTT's counterfactual reasoning objective, Wang et al., ACL 2023).

A Fine-tune-CoT student can fit its targets two ways: copy the keyphrases its rationale concluded,
or predict them from the post as a direct (SFT) answer would, ignoring the rationale. Faithful
teacher rationales always conclude the gold keyphrases, so both ways fit the training data equally
well, and a small student tends to the second: when its own rationale concludes "purple shirt" it
may still answer "red shirt" (an *inconsistent* generation, :mod:`mmkp_helpers.rationale`).

A counterfactual example breaks that tie. It is a copy of a CoT training example whose rationale
concludes one keyphrase changed into another (:func:`perturb`), and whose answer follows the
changed rationale; it trains **only its answer line** (the rationale is context, its tokens carry
no loss, :attr:`mmkp_helpers.collate.TrainRecord.answer_only`), so the student never learns to
write a wrong rationale, only that the answer is read from the rationale. On the counterfactual
examples the direct way predicts the wrong answer; copying is the one way that fits all targets.

:func:`counterfactual_records` adds them to a training set: ``share`` of the records with a
rationale get one, chosen by a seeded hash of their id; ids get the suffix ``#cf``.

**The change** (:func:`perturb`): one of the rationale's concluded keyphrases that is also an
answer keyphrase, picked at random, becomes another keyphrase of the training pool (not one of the
post's), preferably one with the same number of words and the same last word (head noun), so a
colour changes ("purple shirt" -> "red shirt") or an occasion does ("holiday" -> "match"): the
confusions a student makes. It is replaced in every conclusion list (the text after each
sentence's last ``": "``) and in the answer; the sentences' reasoning stays as it was.

**Evidence counterfactuals** (:func:`reread_records`) change the *reading* instead: the same post
(and picture) with a rationale that reads its shapes differently ("a red square on the left and a
blue circle on the right" where the picture has red and yellow) and follows that reading, by the
rule, to its conclusion and answer ("red and blue make purple ... purple car"). The changed
reading is context (no loss: the student never learns to misread); the rule step, the conclusions
and the answer train. A student that answers from the picture, ignoring what its rationale read,
fits these examples badly; one that applies the rule to the colours written before it fits them.
The teacher writes them (:meth:`mmkp_helpers.teacher.oracle.OracleTeacher.reread`: the synthetic
benchmark's ground truth says what a reading is).
"""
from __future__ import annotations

import hashlib
import random
import re
from typing import Iterable, Sequence

from .rationale import _MARKER, _SENTENCE_END, _norm, conclusions

SUFFIX = "#cf"


def _draw(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``key`` (the same on every machine and run)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def replacement(keyphrase: str, pool: Sequence[str], avoid: Iterable[str], rng: random.Random) -> str | None:
    """Another keyphrase of ``pool`` for ``keyphrase``, none of ``avoid``: one with the same number
    of words and last word when there is one, else the same number of words, else any; None when
    the pool offers nothing."""
    avoid = {_norm(a) for a in avoid} | {_norm(keyphrase)}
    words = _norm(keyphrase).split()
    candidates = sorted({_norm(p) for p in pool} - avoid - {""})
    same_len = [c for c in candidates if len(c.split()) == len(words)]
    same_head = [c for c in same_len if c.split()[-1] == words[-1]] if words else []
    for choice in (same_head, same_len, candidates):
        if choice:
            return rng.choice(choice)
    return None


def _replace_in_conclusions(rationale: str, old: str, new: str) -> str:
    """``rationale`` with the item ``old`` of each conclusion list changed into ``new``."""
    parts = re.split(f"({_SENTENCE_END.pattern})", rationale)
    out = []
    for part in parts:
        if _MARKER in part and not _SENTENCE_END.fullmatch(part):
            head, tail = part.rsplit(_MARKER, 1)
            items = re.split(r"([,;])", tail)
            items = [re.sub(re.escape(i.strip()), new, i) if _norm(i) == old else i for i in items]
            part = head + _MARKER + "".join(items)
        out.append(part)
    return "".join(out)


def perturb(rationale: str, keyphrases: Sequence[str], pool: Sequence[str],
            rng: random.Random) -> tuple[str, list[str]] | None:
    """``(rationale, keyphrases)`` with one concluded keyphrase changed (see the module docstring),
    or None when the rationale has no conclusion that is an answer keyphrase, or the pool offers no
    replacement."""
    concluded = conclusions(rationale) or []
    answer = [_norm(k) for k in keyphrases]
    changeable = [k for k in concluded if k in answer]
    if not changeable:
        return None
    old = rng.choice(changeable)
    new = replacement(old, pool, set(answer) | set(concluded), rng)
    if new is None:
        return None
    changed = _replace_in_conclusions(rationale, old, new)
    if new not in (conclusions(changed) or []):
        return None
    return changed, [new if _norm(k) == old else k for k in keyphrases]


def counterfactual_records(records: Sequence, share: float, seed: int = 0,
                           pool: Sequence[str] | None = None) -> list:
    """Counterfactual copies (:class:`~mmkp_helpers.collate.TrainRecord`, ``answer_only``) of
    ``share`` of ``records`` that have a CoT target, chosen by a seeded hash of their ids; ``pool``:
    the keyphrases replacements come from (default: all keyphrases of ``records``)."""
    from dataclasses import replace

    from .collate import TrainRecord
    from .prompts import direct_target, cot_target

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"counterfactual share must be in [0, 1], not {share}")
    if share == 0:
        return []
    pool = sorted({k for r in records for k in r.example.keyphrases}) if pool is None else list(pool)
    out = []
    for r in records:
        if r.cot is None or r.rationale is None or _draw(seed, r.id) >= share:
            continue
        changed = perturb(r.rationale, r.example.keyphrases, pool, random.Random(f"{seed}:{r.id}:cf"))
        if changed is None:
            continue
        rationale, keyphrases = changed
        example = replace(r.example, id=r.id + SUFFIX, keyphrases=list(keyphrases))
        out.append(TrainRecord(example, direct_target(keyphrases), cot_target(rationale, keyphrases),
                               rationale=rationale, answer_only=True))
    return out


REREAD_SUFFIX = "#rr"


def reread_records(records: Sequence, share: float, rewrite, seed: int = 0) -> list:
    """Evidence counterfactuals (see the module docstring) of ``share`` of ``records`` that have a
    CoT target, chosen by a seeded hash of their ids: ``rewrite(example, seed)`` gives
    ``(rationale, keyphrases, context)`` or None (a post it cannot reread); the copy's id gets
    ``#rr``, its CoT target is the rewritten rationale and answer, and the ``context`` opening of that
    target carries no loss (:attr:`mmkp_helpers.collate.TrainRecord.context`)."""
    from dataclasses import replace

    from .collate import TrainRecord
    from .prompts import THINK_OPEN, cot_target, direct_target

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"reread share must be in [0, 1], not {share}")
    if share == 0:
        return []
    if rewrite is None:
        raise ValueError("a reread share needs a rewrite function (a teacher's reread)")
    out = []
    for r in records:
        if r.cot is None or r.rationale is None or _draw(seed, r.id + ":reread") >= share:
            continue
        changed = rewrite(r.example, seed)
        if changed is None:
            continue
        rationale, keyphrases, context = changed
        target = cot_target(rationale, keyphrases)
        if not target.startswith(THINK_OPEN + context):
            raise ValueError(f"{r.id}: the context is not the opening of the rewritten rationale")
        example = replace(r.example, id=r.id + REREAD_SUFFIX, keyphrases=list(keyphrases))
        out.append(TrainRecord(example, direct_target(keyphrases), target, rationale=rationale,
                               context=THINK_OPEN + context))
    return out


STRANGER_SUFFIX = "#st"


def resign(example, name: str):
    """A copy of a signed synthetic post (an account's, with its tags) signed by ``name`` instead, an
    account no training post shows: the text's signature is ``name``'s (nothing else changes in it), the tags are gone from the
    keyphrases (no post shows which tags that account uses), the truth says ``stranger``; the rest
    (text, picture, other keyphrases) is the post's. Its id gets ``#st``."""
    from dataclasses import replace

    from .synthetic import SIGNATURE, keyphrases_of

    truth = dict(example.meta.get("truth") or {})
    parts = dict(example.meta.get("text_parts") or {})
    old = parts.get("signature")
    if not truth.get("series") or not old or old not in example.text:
        raise ValueError(f"{example.id}: not a signed synthetic post")
    truth.update(series=name, tags=[], stranger=True)
    parts["signature"] = f"{SIGNATURE} {name}"
    keyphrases, kinds, cues = keyphrases_of(truth)
    head, tail = example.text.rsplit(old, 1)  # (a near-duplicate may end with an interjection after it)
    return replace(example, id=example.id + STRANGER_SUFFIX, text=head + parts["signature"] + tail,
                   keyphrases=keyphrases, meta=dict(example.meta, truth=truth, kinds=kinds, cues=cues, text_parts=parts))


def stranger_posts(examples: Sequence, share: float, strangers: Sequence[str], seed: int = 0) -> list:
    """Posts of accounts no training post shows, for a training set: ``share`` of the signed posts
    of ``examples`` (chosen by a seeded hash of their ids) re-signed by one of ``strangers`` (names
    of no account of the benchmark, drawn the same way) with :func:`resign`. Both SFT and a CoT
    student train on them (the oracle teacher's rationale says no training post shows the account
    and concludes no tags), so that a post of an unseen account is answered without guessing tags."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"stranger share must be in [0, 1], not {share}")
    names = sorted(set(strangers))
    out = []
    for ex in examples:
        truth = (ex.meta or {}).get("truth") or {}
        if not truth.get("series") or not truth.get("tags") or _draw(seed, ex.id + ":stranger") >= share:
            continue
        if not names:
            raise ValueError("stranger posts need stranger names")
        out.append(resign(ex, names[int(_draw(seed, ex.id + ":stranger-name") * len(names))]))
    return out


def with_stranger_posts(train: Sequence, others: Iterable, share: float, seed: int = 0) -> list:
    """``train`` followed by its :func:`stranger_posts` (``share`` of its signed posts), re-signed by
    names of no account of the benchmark: the generator's account names that sign none of ``train``
    and ``others`` (the valid and test posts). What notebooks 03-05 (their ``stranger_share``) and
    the sweeps train on; posts without a synthetic signature (CMKP's) get none."""
    from .reading import accounts
    from .synthetic import SERIES_NAMES

    train = list(train)
    strangers = sorted(set(SERIES_NAMES) - accounts([*train, *others]))
    return train + stranger_posts(train, share, strangers, seed=seed)
