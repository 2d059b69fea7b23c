"""Does a CoT generation read the picture truly, and does its answer use what it read? Per kind of post.

Well-formed (closed, loop-free, answer-consistent; :mod:`mmkp_helpers.rationale`) says nothing
about whether a rationale's evidence is true. On the synthetic benchmark the ground truth is
known, so each CoT generation is also judged against it with the oracle's own checker
(:func:`mmkp_helpers.teacher.oracle.check_oracle_rationale`: every gold keyphrase concluded by a
sentence that states its true cue, e.g. both shapes with their primaries and the mixed colour on a
composition post, in the answer's order). Per kind of post (``needs``) it counts:

- ``well_formed``: the generation's failure kind is ``well_formed``;
- ``reads_truly``: the rationale passes the ground-truth check (it reasons from true evidence);
- ``concludes_gold``: the rationale's conclusions are the gold keyphrases (however it got there);
- ``answer_follows``: the answer after ``</think>`` is what the rationale concludes;
- ``answer_gold``: the answer is the gold set;
- ``answer_gold_without_true_reading``: right answers whose rationale did not read truly;
- ``coherent`` / ``incoherent``: well-formed, and its colour chain (:func:`chain`) agrees / does
  not agree with itself: judged against the rationale's own reading, not the truth, so a chain
  from a misread picture can be coherent, and "red and red ... red and yellow make orange, so the
  car is purple: orange car" is well-formed but not coherent. Text posts (no colour to read) and
  rationales that read no colour are neither, so a text post's ``coherent`` share is 0 by
  construction (:mod:`mmkp_helpers.bench.chain_coherence` counts the same per run);
- ``shapes_right`` / ``shapes_wrong``: it names shapes at places in the picture ("a red circle on the
  left", "a green square in the centre") and every one is / not every one is the shape there
  (:func:`mmkp_helpers.teacher.oracle.misread_shapes`; a rationale that names no shape, e.g. the
  compact style's "centre red" or a text post's, is neither). The synthetic pictures have two
  shapes only, so a rationale that guessed would be right on about half of the image posts. A
  misread shape also fails ``reads_truly``; this flag isolates it, since a shape never changes
  a keyphrase and so never changes a score.

And how an answer that does not follow its rationale departs from it (a closed rationale with
conclusions and a non-empty answer; at most one applies; keyphrases normalised as
:func:`mmkp_helpers.rationale.consistent` does):

- ``answer_is_final_list``: it is the last concluding sentence's list, which lost an item the
  rationale concluded earlier (the ``running`` style restates the answer in every conclusion);
- ``answer_drops``: otherwise, it is a strict subset of the conclusions (it leaves some out);
- ``answer_adds``: otherwise, it holds a keyphrase the rationale never concluded.

:func:`summarize` gives these shares per kind of post (and, given the training posts' accounts,
per :func:`account_group`: a post signed by an account that has no training post carries tags no
model can learn, and a rationale about them can only guess); :func:`mmkp_helpers.experiment.record` adds
them to every record of a synthetic run (``rationale_reading``), and
``python -m mmkp_helpers.bench.rationale_reading`` computes them for generation files.
:func:`verdicts` gives each generation one verdict, the first check it fails (notebook 04,
sections 6 and 9), with the intervention on a changed reading as the last check.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable, Sequence

KEYS = ("opened", "well_formed", "reads_truly", "concludes_gold", "answer_follows", "answer_gold",
        "answer_gold_without_true_reading", "answer_is_final_list", "answer_drops", "answer_adds",
        "coherent", "incoherent", "shapes_right", "shapes_wrong")

#: How a rationale reads colours (:func:`chain`): two shapes by side or as a set, one in the centre,
#: a combine post's text primary; its rule step; one colour kept.
SIDED = re.compile(r"a (\w+) \w+ on the left and a (\w+) \w+ on the right|left (\w+), right (\w+)")
AS_SET = re.compile(r"the colours (\w+) and (\w+)")
CENTRE = re.compile(r"a (\w+) \w+ in the centre|centre (\w+)")
TINT = re.compile(r"the text names (red|blue|yellow)\b|\btext (red|blue|yellow),")
RULE = re.compile(r"(\w+) and (\w+) make (\w+)")
SAME = re.compile(r"both are (\w+)|(\w+) stays (\w+)")


def chain(text: str, topic: str) -> bool | None:
    """Whether the colour chain of rationale ``text`` about object ``topic`` agrees with itself; None
    when it reads no colour. The colours it reads (two shapes, sided or as a set; one in the centre;
    or a combine post's primary of the text and its one shape), its rule step (``X and Y make Z``
    over exactly the colours it read, with Z their mix; ``both are X`` / ``X stays Z`` when it read
    one colour twice), its claim ``the <object> is Z`` and its colour keyphrase conclusion must all
    agree. Checked against itself, not the ground truth."""
    from . import rationale
    from .synthetic import COLOURS, PRIMARIES, mix

    two = SIDED.search(text) or AS_SET.search(text)
    one = CENTRE.search(text)
    tint = TINT.search(text)
    if two or (tint and one):
        read = [c for c in (two or tint).groups() if c] + ([] if two else [next(c for c in one.groups() if c)])
        rule, same = RULE.search(text), SAME.search(text)
        if rule and rule.group(1) in PRIMARIES and rule.group(2) in PRIMARIES:
            if sorted(rule.group(1, 2)) != sorted(read) or mix(*rule.group(1, 2)) != rule.group(3):
                return False
            made = rule.group(3)
        elif same:
            said = [c for c in same.groups() if c]
            if len(set(read)) != 1 or any(c != read[0] for c in said):
                return False
            made = read[0]
        else:
            return False
    elif one:
        made = next(c for c in one.groups() if c)
    else:
        return None
    claim = re.search(rf"the {re.escape(topic)} is (\w+)", text)
    if claim and claim.group(1) != made:
        return False
    concluded = [k for k in rationale.conclusions(text) or [] if k.endswith(" " + topic) and k.split()[0] in COLOURS]
    return all(k.split()[0] == made for k in concluded)


def has_truth(example) -> bool:
    """Whether ``example`` carries the synthetic benchmark's ground truth (its rationales can be judged)."""
    meta = getattr(example, "meta", None) or {}
    return bool(meta.get("truth")) and "needs" in meta


def _norm(items: Iterable[str]) -> set[str]:
    return {" ".join(i.lower().split()) for i in items if i.strip()}


def judge(raw: str, example, hit_limit: bool | None = None) -> dict[str, bool]:
    """The counts' flags for one generation of ``example`` (a synthetic post with its truth)."""
    from . import rationale
    from .teacher.oracle import SHAPE_READ, check_oracle_rationale, misread_shapes

    check = rationale.check(raw, hit_limit)
    text = rationale.split_cot(raw)[0] if check.opened else ""
    gold = _norm(example.keyphrases)
    concluded = rationale.conclusions(text) or []
    reads = check.opened and not check_oracle_rationale(example, text)
    answer_gold = _norm(check.answer) == gold
    answer = {kp for kp in map(rationale._norm, check.answer or []) if kp}
    final = set(rationale.final_conclusion(text) or [])
    departs = bool(check.opened and concluded and answer and not check.consistent)
    is_final = departs and answer == final
    drops = departs and not is_final and answer < set(concluded)
    names_shapes = check.opened and bool(SHAPE_READ.search(text.lower()))
    shapes_right = names_shapes and not misread_shapes(example, text)
    coherent = (chain(text, example.meta["truth"]["topic"])
                if check.kind == "well_formed" and example.meta.get("needs") != "text" else None)
    return {"opened": check.opened, "well_formed": check.kind == "well_formed", "reads_truly": reads,
            "concludes_gold": _norm(concluded) == gold, "answer_follows": bool(check.consistent),
            "answer_gold": answer_gold, "answer_gold_without_true_reading": answer_gold and not reads,
            "answer_is_final_list": is_final, "answer_drops": drops,
            "answer_adds": departs and not is_final and not drops and not answer <= set(concluded),
            "coherent": coherent is True, "incoherent": coherent is False,
            "shapes_right": shapes_right, "shapes_wrong": names_shapes and not shapes_right}


def accounts(examples: Iterable) -> set[str]:
    """The accounts that sign at least one of ``examples`` (``meta["truth"]["series"]``)."""
    return {ex.meta["truth"]["series"] for ex in examples
            if isinstance(getattr(ex, "meta", None), dict) and (ex.meta.get("truth") or {}).get("series")}


def account_group(example, seen_accounts: set[str]) -> str:
    """``signed:seen`` (signed by an account in ``seen_accounts``, e.g. the training posts'
    :func:`accounts`), ``signed:unseen`` (signed by another: its tags cannot be learned, since
    only an account's posts show which tags it uses) or ``unsigned``."""
    series = ((getattr(example, "meta", None) or {}).get("truth") or {}).get("series")
    return "unsigned" if not series else "signed:seen" if series in seen_accounts else "signed:unseen"


def summarize(generations: Sequence, examples: dict, seen_accounts: set[str] | None = None) -> dict:
    """Shares of :func:`judge`'s flags per ``needs`` kind and over all posts, with post counts;
    given ``seen_accounts`` (the training posts' :func:`accounts`), also per :func:`account_group`.
    ``generations``: dicts or objects with ``id``, ``raw`` and ``hit_limit``; ``examples``: id -> example."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for g in generations:
        get = g.get if isinstance(g, dict) else lambda k, d=None: getattr(g, k, d)
        ex = examples[get("id")]
        flags = judge(get("raw"), ex, get("hit_limit"))
        groups = ["all", f"needs:{(ex.meta or {}).get('needs', '-')}"]
        if seen_accounts is not None:
            groups.append(account_group(ex, seen_accounts))
        for group in groups:
            counts[group]["posts"] += 1
            counts[group].update(k for k, v in flags.items() if v)
    return {group: {"posts": c["posts"], **{k: round(c[k] / c["posts"], 4) for k in KEYS}}
            for group, c in sorted(counts.items())}


def own_answers(generations: Sequence, baseline: Sequence, examples: dict) -> dict:
    """Does a CoT model answer on its own, or write one template and a direct model's answer? Per
    ``needs`` kind and over ``all`` posts: ``posts``; ``same_answer``, on how many its keyphrases
    are the ``baseline`` generation's of the same post (the same list in the same order, e.g. SFT's
    answer); ``distinct``, how many different texts its generations are (``raw``, rationale and
    answer together); ``largest``, how many posts share its most frequent text. ``generations``
    and ``baseline``: dicts or objects with ``id``, ``raw`` and ``keyphrases`` (or ``prediction``,
    as generation files store them); ``examples``: id -> example. Plain counts, not shares."""
    def get(g, key):
        return g.get(key) if isinstance(g, dict) else getattr(g, key, None)

    def answer(g):
        kps = get(g, "keyphrases")
        return list(kps if kps is not None else get(g, "prediction") or [])

    base = {get(b, "id"): answer(b) for b in baseline}
    texts: dict[str, Counter] = defaultdict(Counter)
    same: Counter = Counter()
    for g in generations:
        ex = examples[get(g, "id")]
        for group in ("all", f"needs:{(ex.meta or {}).get('needs', '-')}"):
            texts[group][get(g, "raw")] += 1
            same[group] += answer(g) == base[get(g, "id")]
    return {group: {"posts": sum(c.values()), "same_answer": same[group], "distinct": len(c),
                    "largest": max(c.values())} for group, c in sorted(texts.items())}


#: The verdicts of :func:`verdicts`, in the order they are tried: the first that applies is given.
VERDICTS = ("no rationale", "not well-formed", "reads the post wrongly", "ignores a changed reading",
            "follows a changed reading", "reads truly, nothing changed")


def verdicts(generations: Sequence, baseline: Sequence, examples: dict,
             followed: dict[str, bool] | None = None) -> list[dict]:
    """Does this generation reason, by the records? One row per generation of a CoT model, with
    what each check found and one verdict (:data:`VERDICTS`, the first that applies):

    - ``no rationale``: it did not open ``<think>``;
    - ``not well-formed``: closed, loop-free and answer-consistent it is not (``kind`` says how);
    - ``reads the post wrongly``: it fails the ground-truth check (:func:`judge`'s ``reads_truly``;
      e.g. a misread shape, or a cue left out);
    - ``ignores a changed reading`` / ``follows a changed reading``: it reads truly, and when the
      same student continues a prefill that reads the post otherwise (the picture of a post with
      shapes, the topic the text names on a text post:
      :func:`mmkp_helpers.bench.rationale_intervention.changed_reading`, given as ``followed``:
      id -> whether the answer holds the keyphrase the changed reading implies) its answer does
      not / does follow that reading;
    - ``reads truly, nothing changed``: it reads truly and ``followed`` has no entry for the post
      (no intervention was run on it).

    Beside the verdict: ``answer_is_baseline`` (the answer line is the ``baseline`` generation's,
    e.g. SFT's, as in :func:`own_answers`), ``copies`` (how many of ``generations`` are this
    exact text), ``shape`` (``right``, ``wrong`` or ``-`` when no shape is named) and
    ``answer_gold``. ``generations`` and ``baseline``: dicts or objects with ``id``, ``raw``,
    ``hit_limit`` and ``keyphrases`` (or ``prediction``); ``examples``: id -> synthetic example."""
    from . import rationale

    def get(g, key):
        return g.get(key) if isinstance(g, dict) else getattr(g, key, None)

    def answer(g):
        kps = get(g, "keyphrases")
        return list(kps if kps is not None else get(g, "prediction") or [])

    followed = followed or {}
    base = {get(b, "id"): answer(b) for b in baseline}
    copies = Counter(get(g, "raw") for g in generations)
    rows = []
    for g in generations:
        i, raw = get(g, "id"), get(g, "raw")
        ex = examples[i]
        flags = judge(raw, ex, get(g, "hit_limit"))
        kind = rationale.check(raw, get(g, "hit_limit")).kind
        if not flags["opened"]:
            verdict = VERDICTS[0]
        elif not flags["well_formed"]:
            verdict = VERDICTS[1]
        elif not flags["reads_truly"]:
            verdict = VERDICTS[2]
        elif i in followed:
            verdict = VERDICTS[4] if followed[i] else VERDICTS[3]
        else:
            verdict = VERDICTS[5]
        rows.append({"id": i, "needs": (ex.meta or {}).get("needs", "-"), "kind": kind or "-",
                     "shape": "right" if flags["shapes_right"] else "wrong" if flags["shapes_wrong"] else "-",
                     "answer_gold": flags["answer_gold"], "answer_is_baseline": answer(g) == base.get(i),
                     "copies": copies[raw], "follows_changed": followed.get(i), "verdict": verdict})
    return rows


def verdict_counts(rows: Sequence[dict]) -> dict:
    """:func:`verdicts`' rows counted per group: ``all``, ``shaped`` (the posts with a picture to
    read, every kind but text) and ``needs:<kind>``; each ``{"posts": n, <verdict>: count, ...}``
    over all :data:`VERDICTS`."""
    groups: dict[str, list[dict]] = {"all": list(rows), "shaped": [r for r in rows if r["needs"] != "text"]}
    for r in rows:
        groups.setdefault(f"needs:{r['needs']}", []).append(r)
    return {g: {"posts": len(part), **{v: sum(r["verdict"] == v for r in part) for v in VERDICTS}}
            for g, part in sorted(groups.items())}

