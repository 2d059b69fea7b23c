"""Rationale quality: is a generated chain of thought closed, loop-free and consistent with its answer?

Plain text only (no model, no tokenizer): it reads what a generation wrote (``raw``, prefill
included) and whether the generation hit its token budget (``hit_limit``), so the same checks run
on fresh generations, on generation files read back, and on crafted texts in tests.

**The rationale convention of this project's teachers.** Sentences separated by ``". "`` (the last
one ends with ``"."``); a sentence that concludes keyphrases ends with ``": "`` followed by those
keyphrases separated by ``", "``::

    the text names a bike and a trip: bike, trip. the circle in the picture is green, so the bike
    is green: green bike. the background is dark blue: night.

:func:`conclusions` reads ``["bike", "trip", "green bike", "night"]`` from it.

**Properties** of a generation that opened ``<think>`` (:func:`check`):

- *closed*: ``</think>`` follows the ``<think`` opening.
- *loop-free* (:func:`repeated_ngram`): no word n-gram with n >= 3 occurs 3 or more times in the
  rationale; words are the lower-cased runs of letters and digits (punctuation is ignored), and
  occurrences may overlap. (Any longer n-gram repeated that often repeats its first three words
  too, so checking n = 3 suffices.) Both thresholds are parameters.
- *answer-consistent* (:func:`consistent`): the answer is the keyphrases parsed
  (:func:`~mmkp_helpers.prompts.parse_generation`) from the text after ``</think>``. When the
  rationale has conclusion markers, the set of answer keyphrases equals the set of its conclusions
  (order ignored; whether the order agrees too is recorded separately, as information). Without
  markers (another teacher's style), every answer keyphrase occurs in the rationale (as a run of
  whole words). An empty answer is inconsistent. Keyphrases are compared lower-cased, with
  whitespace collapsed and surrounding punctuation stripped.

**Failure kinds**, exactly one per generation that opened ``<think>``, the first that applies:

================ ===================================================================================
``cut_off``      it hit ``max_new_tokens`` (no end-of-turn token was generated), whatever it wrote
``unclosed``     it stopped on its own without ``</think>``
``no_answer``    closed, but no keyphrases after ``</think>``
``loop``         the rationale repeats itself (not loop-free)
``inconsistent`` the answer is not the one the rationale concludes
``well_formed``  none of the above
================ ===================================================================================

A generation whose ``hit_limit`` is unknown (``None``: files written before it was recorded) is
never counted as ``cut_off``; :func:`quality_stats` counts such generations (``limit_unknown``).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from .prompts import THINK_CLOSE, THINK_OPEN, parse_generation

FAILURE_KINDS = ("cut_off", "unclosed", "no_answer", "loop", "inconsistent")
KINDS = FAILURE_KINDS + ("well_formed",)
#: The keys of :func:`quality_stats` that are lists of ids (left out of metric records).
BULKY_KEYS = ("examples",)
EXAMPLES_PER_KIND = 3

_OPEN = THINK_OPEN[:-1].lower()  # "<think": a prefilled opening may lack its ">"
_CLOSE = THINK_CLOSE.lower()
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits
_SENTENCE_END = re.compile(r"\.(?:\s+|$)")
_MARKER = ": "
_STRIP = " \t\r\n\"'`“”‘’*_.,;:!?#()[]{}"


def _norm(keyphrase: str) -> str:
    return re.sub(r"\s+", " ", keyphrase.lower()).strip(_STRIP)


def opens_think(raw: str) -> bool:
    """Whether a generation starts with ``<think`` (prefilled or chosen at its first token)."""
    return (raw or "").lstrip().lower().startswith(_OPEN)


def split_cot(raw: str) -> tuple[str, str | None]:
    """``(rationale, answer text)`` of a generation that opened ``<think>``: the rationale runs
    from the opening (after its ``>``) to the first ``</think>``, the answer text is what follows
    it; ``None`` for the answer when ``</think>`` never comes (the rationale is then all the rest)."""
    text = (raw or "").lstrip()
    start = len(_OPEN) if text.lower().startswith(_OPEN) else 0
    if text[start:start + 1] == ">":
        start += 1
    close = text.lower().find(_CLOSE, start)
    if close < 0:
        return text[start:], None
    return text[start:close], text[close + len(_CLOSE):]


def conclusions(rationale: str) -> list[str] | None:
    """The keyphrases a rationale concludes, in order (lower-cased, stripped, repeats dropped), or
    None when no sentence has a conclusion marker.

    Sentences are separated by ``"."`` followed by white space or the end; a sentence concludes
    when it contains ``": "``, and its conclusions are what follows the last ``": "``, separated
    by ``","`` or ``";"``. (A keyphrase holding ``". "``, e.g. "st. louis", would be cut there.)"""
    found: list[str] = []
    marked = False
    for sentence in _SENTENCE_END.split(rationale or ""):
        if _MARKER not in sentence:
            continue
        marked = True
        for item in re.split(r"[,;]", sentence.rsplit(_MARKER, 1)[1]):
            kp = _norm(item)
            if kp and kp not in found:
                found.append(kp)
    return found if marked else None


def final_conclusion(rationale: str) -> list[str] | None:
    """The keyphrases the last concluding sentence lists (normalised as in :func:`conclusions`), or
    None without conclusion markers. In the ``running`` style, where each conclusion restates the
    answer so far, it is the whole answer when the rationale keeps every earlier item."""
    last = [s for s in _SENTENCE_END.split(rationale or "") if _MARKER in s]
    if not last:
        return None
    return list(dict.fromkeys(kp for kp in map(_norm, re.split(r"[,;]", last[-1].rsplit(_MARKER, 1)[1])) if kp))


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits (punctuation and ``_`` ignored)."""
    return _WORD.findall((text or "").lower())


def reasoning(rationale: str) -> str:
    """A rationale without its conclusion lists (what follows each sentence's last ``": "``): the
    text the loop check reads, so that a style that restates its running answer in every
    conclusion is not a loop (a list that repeats an item is, see :func:`list_repeat`)."""
    return ". ".join(s.rsplit(_MARKER, 1)[0] if _MARKER in s else s for s in _SENTENCE_END.split(rationale or ""))


def list_repeat(rationale: str) -> str | None:
    """An item that one conclusion list holds twice (a loop inside a list), or None."""
    for sentence in _SENTENCE_END.split(rationale or ""):
        if _MARKER in sentence:
            items = [_norm(i) for i in re.split(r"[,;]", sentence.rsplit(_MARKER, 1)[1]) if _norm(i)]
            dupes = [i for i, c in Counter(items).items() if c > 1]
            if dupes:
                return dupes[0]
    return None


def repeated_ngram(text: str, n: int = 3, repeats: int = 3) -> str | None:
    """The first word n-gram of ``text`` (``n`` words, see :func:`words`) that occurs ``repeats``
    or more times (overlapping occurrences count), or None: the text is loop-free. An n-gram longer
    than ``n`` repeated that often repeats its first ``n`` words too, so this covers every n' >= n."""
    w = words(text)
    counts = Counter(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    for i in range(len(w) - n + 1):
        if counts[tuple(w[i:i + n])] >= repeats:
            return " ".join(w[i:i + n])
    return None


def _occurs(keyphrase: str, text_words: list[str]) -> bool:
    kp = words(keyphrase)
    return bool(kp) and any(text_words[i:i + len(kp)] == kp for i in range(len(text_words) - len(kp) + 1))


def consistent(rationale: str, answer: Sequence[str]) -> bool:
    """Whether ``answer`` (keyphrases) is what ``rationale`` concludes: the same set as its
    :func:`conclusions` (order ignored); without conclusion markers, every answer keyphrase
    occurs in the rationale as whole words. An empty answer is inconsistent."""
    answer = [a for a in map(_norm, answer) if a]
    if not answer:
        return False
    concluded = conclusions(rationale)
    if concluded is not None:
        return set(answer) == set(concluded)
    text_words = words(rationale)
    return all(_occurs(a, text_words) for a in answer)


def order_agrees(rationale: str, answer: Sequence[str]) -> bool | None:
    """Whether a consistent answer lists the conclusions in the rationale's order; None when the
    rationale has no markers or the sets differ (information only: consistency ignores order)."""
    concluded = conclusions(rationale)
    answer = list(dict.fromkeys(a for a in map(_norm, answer) if a))
    if concluded is None or not answer or set(answer) != set(concluded):
        return None
    return answer == concluded


@dataclass
class RationaleCheck:
    """What :func:`check` found in one generation. ``kind`` is its failure kind (see the module
    docstring), or None when the generation did not open ``<think>`` (then the other fields are
    False/None). ``answer`` holds the keyphrases parsed after ``</think>``; ``loop_ngram`` the
    repeated n-gram when there is a loop."""
    opened: bool
    closed: bool
    hit_limit: bool | None
    has_answer: bool
    loop_free: bool
    consistent: bool
    order_agrees: bool | None
    kind: str | None
    answer: list[str]
    loop_ngram: str | None = None

    @property
    def well_formed(self) -> bool:
        return self.kind == "well_formed"

    def to_dict(self) -> dict:
        return asdict(self) | {"well_formed": self.well_formed}


def check(raw: str, hit_limit: bool | None = None, n: int = 3, repeats: int = 3) -> RationaleCheck:
    """The properties and failure kind of one generation's text (``raw``, prefill included);
    ``hit_limit``: whether it ran out of tokens (None: unknown, never counted as cut off)."""
    if not opens_think(raw):
        return RationaleCheck(False, False, hit_limit, False, True, False, None, None, [])
    rationale, answer_text = split_cot(raw)
    closed = answer_text is not None
    answer = parse_generation(answer_text, max_keyphrases=100).keyphrases if closed else []
    loop = repeated_ngram(reasoning(rationale), n, repeats) or list_repeat(rationale)
    is_consistent = consistent(rationale, answer)
    if hit_limit:
        kind = "cut_off"
    elif not closed:
        kind = "unclosed"
    elif not answer:
        kind = "no_answer"
    elif loop is not None:
        kind = "loop"
    elif not is_consistent:
        kind = "inconsistent"
    else:
        kind = "well_formed"
    return RationaleCheck(True, closed, hit_limit, bool(answer), loop is None, is_consistent,
                          order_agrees(rationale, answer), kind, answer, loop)


def check_generation(generation, n: int = 3, repeats: int = 3) -> RationaleCheck:
    """:func:`check` of anything with ``raw`` and (optionally) ``hit_limit`` attributes, e.g. an
    :class:`mmkp_helpers.inference.Generation`."""
    return check(generation.raw, getattr(generation, "hit_limit", None), n, repeats)


def quality_stats(generations: Iterable, n: int = 3, repeats: int = 3) -> dict:
    """Rationale quality over the generations that opened ``<think>``:

    ``n_cot``; one count per failure kind (``cut_off``, ``unclosed``, ``no_answer``, ``loop``,
    ``inconsistent``, ``well_formed``: they add up to ``n_cot``); per-property counts ``closed``,
    ``loop_free``, ``consistent`` (each over all ``n_cot``, whatever the kind) and
    ``order_agrees`` (consistent answers in the rationale's order); ``well_formed_share``
    (``well_formed / n_cot``, None when ``n_cot`` is 0); ``limit_unknown`` (CoT generations
    whose ``hit_limit`` was not recorded); ``examples``: up to 3 generation ids per kind."""
    stats: dict = {"n_cot": 0, **{k: 0 for k in KINDS}, "closed": 0, "loop_free": 0, "consistent": 0,
                   "order_agrees": 0, "limit_unknown": 0}
    examples: dict[str, list[str]] = {k: [] for k in KINDS}
    for g in generations:
        c = check_generation(g, n, repeats)
        if not c.opened:
            continue
        stats["n_cot"] += 1
        stats[c.kind] += 1
        stats["closed"] += c.closed
        stats["loop_free"] += c.loop_free
        stats["consistent"] += c.consistent
        stats["order_agrees"] += bool(c.order_agrees)
        stats["limit_unknown"] += c.hit_limit is None
        if len(examples[c.kind]) < EXAMPLES_PER_KIND:
            examples[c.kind].append(getattr(g, "id", None))
    stats["well_formed_share"] = stats["well_formed"] / stats["n_cot"] if stats["n_cot"] else None
    stats["examples"] = examples
    return stats


def compact(stats: dict) -> dict:
    """:func:`quality_stats` without its bulky fields (for metric records)."""
    return {k: v for k, v in stats.items() if k not in BULKY_KEYS}

