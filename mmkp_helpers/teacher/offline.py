"""Teachers that need no API: the synthetic benchmark's oracle and a template teacher for CMKP.

- :class:`OracleTeacher` writes a faithful, short rationale from a synthetic example's recorded
  ground truth (``meta["truth"]`` and ``meta["cues"]``), one step per cue in the answer's order::

      the text names a bike. the square in the picture is green, so the bike is green: green bike.
      the background is dark blue: night. it is signed via dune, an account that tags travel, food.

  With ``noise`` > 0 that share of the examples (drawn from a hash of ``seed`` and the example id,
  so a run is reproducible and independent of the order of the examples) gets an unfaithful
  rationale instead: ``"colour"`` states a wrong colour for the shape (and names the colour +
  object keyphrase with it), ``"drop"`` leaves one reasoning step out.
- :class:`TemplateTeacher` explains a real post's gold keyphrases from its text, image wordings
  and OCR: present keyphrases are pointed out in the text, absent ones are tied to a wording or
  the OCR when a word overlaps, else stated as the topic of the post.
- :func:`check_oracle_rationale` lists what a rationale gets wrong against a synthetic example's
  ground truth (an empty list: faithful).

Both teachers answer in the format asked of an API teacher (``<think>...</think>`` then
``Keyphrases: ...``), cost nothing (0 tokens) and report their (tiny) latency.
"""
from __future__ import annotations

import hashlib
import re

from ..data import Example
from ..synthetic import COLOURS, SCENES, SIGNATURE
from ..text import is_present, present_in_text, stem_phrase, stem_text
from .base import Teacher, format_answer

NOISE_KINDS = ("colour", "drop")


def _unit(*parts) -> float:
    """A number in [0, 1) fixed by ``parts`` (SHA-256; the same on every machine and run)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class OracleTeacher(Teacher):
    """Rationales from the synthetic benchmark's ground truth (see the module docstring).

    In *predict* mode the answer's keyphrases follow the (possibly noisy) rationale; in
    *rationalize* mode they are the gold ones whatever the rationale says."""

    name = "oracle"
    model = "ground-truth"

    def __init__(self, mode: str = "rationalize", noise: float = 0.0, noise_kinds=NOISE_KINDS, seed: int = 0,
                 count_tokens: bool = False):
        super().__init__(mode, count_tokens)
        if not 0.0 <= float(noise) <= 1.0:
            raise ValueError(f"noise={noise} must lie in [0, 1]")
        noise_kinds = (noise_kinds,) if isinstance(noise_kinds, str) else tuple(noise_kinds)
        unknown = set(noise_kinds) - set(NOISE_KINDS)
        if unknown or not noise_kinds:
            raise ValueError(f"noise_kinds must be a non-empty subset of {NOISE_KINDS}, not {noise_kinds!r}")
        self.noise = float(noise)
        self.noise_kinds = noise_kinds
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (f"OracleTeacher(mode={self.mode!r}, noise={self.noise}, noise_kinds={self.noise_kinds!r}, "
                f"seed={self.seed}, count_tokens={self.count_tokens})")

    def _key_parts(self) -> list[str]:
        return super()._key_parts() + [f"noise{self.noise:g}", "+".join(self.noise_kinds), f"seed{self.seed}"]

    # ---------------------------------------------------------------- steps
    @staticmethod
    def _cues(example: Example) -> list[dict]:
        cues = example.meta.get("cues") if isinstance(example.meta, dict) else None
        if not cues:
            raise ValueError(f"example {example.id!r} has no meta['cues'] (ground truth of the synthetic benchmark): "
                             "the oracle teacher only works on synthetic examples; use TemplateTeacher or "
                             "OpenAITeacher for other posts")
        return cues

    def steps(self, example: Example) -> list[tuple[str, list[str]]]:
        """The faithful reasoning steps: (sentence, keyphrases it justifies), in answer order."""
        truth = example.meta.get("truth") or {}
        steps: list[tuple[str, list[str]]] = []
        present: list[str] = []
        tags: list[str] = []

        def flush():
            if present:
                steps.append((f"the text names {_join([_a(k) for k in present])}", list(present)))
                present.clear()
            if tags:
                signer = f"{SIGNATURE} {truth.get('series')}"
                steps.append((f"it is signed {signer}, an account that tags {', '.join(tags)}", list(tags)))
                tags.clear()

        for cue in self._cues(example):
            kp, kind = cue["keyphrase"], cue["kind"]
            if kind == "present":
                if tags:
                    flush()
                present.append(kp)
                continue
            if kind == "tag":
                if present:
                    flush()
                tags.append(kp)
                continue
            flush()
            if kind == "text+image":
                colour = truth.get("colour") or kp.split()[0]
                topic = truth.get("topic") or kp.split(maxsplit=1)[-1]
                shape = truth.get("shape") or "shape"
                steps.append((f"the {shape} in the picture is {colour}, so the {topic} is {colour}: {kp}", [kp]))
            elif kind == "image":
                looks = SCENES[kp][1] if kp in SCENES else "coloured"
                steps.append((f"the background is {looks}: {kp}", [kp]))
            else:
                raise ValueError(f"example {example.id!r}: unknown cue kind {kind!r}")
        flush()
        return steps

    def planned_noise(self, example: Example) -> str | None:
        """The unfaithfulness this example gets ("colour", "drop") or None (a faithful rationale).

        An example is drawn with probability ``noise`` (hash of seed and id); its kind is drawn
        from ``noise_kinds``, falling back to another kind when the drawn one cannot apply
        ("colour" needs a shape, "drop" needs at least two steps). An example where none applies
        stays faithful."""
        if self.noise <= 0 or _unit("oracle-noise", self.seed, example.id) >= self.noise:
            return None
        steps = self.steps(example)
        applicable = {"colour": any(" in the picture is " in s for s, _ in steps), "drop": len(steps) >= 2}
        start = int(_unit("oracle-kind", self.seed, example.id) * len(self.noise_kinds))
        for i in range(len(self.noise_kinds)):
            kind = self.noise_kinds[(start + i) % len(self.noise_kinds)]
            if applicable[kind]:
                return kind
        return None

    def rationale_and_keyphrases(self, example: Example) -> tuple[str, list[str], str | None]:
        """(rationale, the keyphrases it leads to, the noise applied or None)."""
        steps = self.steps(example)
        noise = self.planned_noise(example)
        if noise == "drop":
            del steps[int(_unit("oracle-drop", self.seed, example.id) * len(steps))]
        elif noise == "colour":
            truth = example.meta.get("truth") or {}
            right = truth.get("colour")
            others = [c for c in COLOURS if c != right]
            wrong = others[int(_unit("oracle-colour", self.seed, example.id) * len(others))]
            for i, (sentence, kps) in enumerate(steps):
                if " in the picture is " in sentence:
                    wrong_kp = f"{wrong} {truth.get('topic')}"
                    sentence = f"the {truth.get('shape') or 'shape'} in the picture is {wrong}, so the " \
                               f"{truth.get('topic')} is {wrong}: {wrong_kp}"
                    steps[i] = (sentence, [wrong_kp])
        rationale = ". ".join(s for s, _ in steps) + "."
        return rationale, [k for _, kps in steps for k in kps], noise

    def _answer_text(self, example: Example) -> tuple[str, int, int]:
        rationale, keyphrases, _ = self.rationale_and_keyphrases(example)
        if self.mode == "rationalize":
            keyphrases = list(example.keyphrases)
        return format_answer(rationale, keyphrases), 0, 0


# ------------------------------------------------------------------------------------------------
# Checking a rationale against the synthetic ground truth
# ------------------------------------------------------------------------------------------------
def _sentences(rationale: str) -> list[list[str]]:
    """The rationale's sentences as lower-case word lists."""
    parts = re.split(r"[.!?;\n]+", rationale.lower())
    return [re.findall(r"[a-z0-9]+", p) for p in parts if re.findall(r"[a-z0-9]+", p)]


def _has(words: list[str], phrase: str) -> bool:
    target = phrase.lower().split()
    n = len(target)
    return any(words[i:i + n] == target for i in range(len(words) - n + 1))


def check_oracle_rationale(example: Example, rationale: str | None) -> list[str]:
    """The problems of ``rationale`` against a synthetic example's ground truth ([] = faithful).

    Every keyphrase must be named in a sentence that states its cue, and those sentences must
    come in the answer's order:

    - a present keyphrase (topic, event): a sentence with the word "text" and the keyphrase;
    - the colour + object keyphrase: a sentence about the shape / picture naming the true colour
      and the keyphrase; a sentence about the shape that names another colour is a problem too;
    - a scene: a sentence with "background", the background's colour name (``dark blue``) and
      the scene word;
    - a tag: a sentence with the account's signature name and the tag.
    """
    cues = OracleTeacher._cues(example)
    truth = example.meta.get("truth") or {}
    if not rationale or not rationale.strip():
        return ["empty rationale"]
    sentences = _sentences(rationale)
    problems: list[str] = []
    positions: list[tuple[int, str]] = []
    shape_words = {"picture", "image", "shape", str(truth.get("shape") or "shape")}
    for cue in cues:
        kp, kind = cue["keyphrase"], cue["kind"]
        if kind == "present":
            found = [i for i, w in enumerate(sentences) if "text" in w and _has(w, kp)]
            why = f"'{kp}' (present): no sentence says the text names it"
        elif kind == "text+image":
            colour = truth.get("colour") or kp.split()[0]
            found = [i for i, w in enumerate(sentences) if shape_words & set(w) and colour in w and _has(w, kp)]
            why = f"'{kp}' (text+image): no sentence says the shape in the picture is {colour}"
            for i, w in enumerate(sentences):
                wrong = [c for c in COLOURS if c != colour and c in w]
                if shape_words & set(w) and wrong:
                    problems.append(f"'{kp}' (text+image): sentence {i + 1} gives the shape the wrong colour "
                                    f"{', '.join(wrong)} (truth: {colour})")
        elif kind == "image":
            looks = SCENES[kp][1] if kp in SCENES else ""
            found = [i for i, w in enumerate(sentences) if "background" in w and _has(w, looks) and _has(w, kp)]
            why = f"'{kp}' (image): no sentence says the background is {looks}"
        elif kind == "tag":
            signer = str(truth.get("series") or "")
            found = [i for i, w in enumerate(sentences) if signer and signer in w and _has(w, kp)]
            why = f"'{kp}' (tag): no sentence ties it to the signature '{SIGNATURE} {signer}'"
        else:
            found, why = [], f"'{kp}': unknown kind {kind!r}"
        if found:
            positions.append((found[0], kp))
        else:
            problems.append(why)
    order = [i for i, _ in positions]
    if order != sorted(order):
        problems.append("keyphrases are justified out of the answer's order: "
                        + ", ".join(kp for _, kp in sorted(positions)))
    return problems


# ------------------------------------------------------------------------------------------------
# The template teacher (CMKP posts, no API)
# ------------------------------------------------------------------------------------------------
class TemplateTeacher(Teacher):
    """Rule-based rationales for real posts from the text, the image wordings and the OCR.

    In *rationalize* mode every gold keyphrase gets a step, in order: a present one is pointed out
    in the text ("the text mentions 'game of thrones'"), an absent one is tied to the wordings or
    the OCR when one of its words (stemmed) is there ("the image wordings include 'crowd': 'concert'"),
    else stated as the topic of the post ("the post is about 'concert'"). In *predict* mode the
    answer keeps only the keyphrases the evidence supports (present, wordings, OCR): the others
    would be guesses."""

    name = "template"
    model = "rules"

    def steps(self, example: Example) -> list[tuple[str, str, str]]:
        """(sentence, keyphrase, support) per gold keyphrase; support is "text", "wordings",
        "ocr" or "topic"."""
        text_stems = stem_text(example.text)
        words = [w for w in (a.strip() for a in example.attributes) if w]
        ocr_words = example.ocr.split() if example.ocr else []
        out = []
        for kp in (k.strip() for k in example.keyphrases):
            if not kp:
                continue
            stems = set(stem_phrase(kp))
            if is_present(stem_phrase(kp), text_stems) or present_in_text(kp, example.text):
                out.append((f"the text mentions '{kp}'", kp, "text"))
                continue
            hits = [w for w in words if set(stem_phrase(w)) & stems]
            if hits:
                shown = ", ".join(f"'{w}'" for w in dict.fromkeys(hits))
                out.append((f"the image wordings include {shown}: '{kp}'", kp, "wordings"))
                continue
            hits = [w for w in ocr_words if set(stem_phrase(w)) & stems]
            if hits:
                shown = " ".join(dict.fromkeys(hits))
                out.append((f"the text in the image reads '{shown}': '{kp}'", kp, "ocr"))
                continue
            out.append((f"the post is about '{kp}'", kp, "topic"))
        return out

    def _answer_text(self, example: Example) -> tuple[str, int, int]:
        steps = self.steps(example)
        if self.mode == "predict":
            steps = [s for s in steps if s[2] != "topic"]
            if not steps:
                return format_answer("nothing in the post points to a keyphrase.", []), 0, 0
        rationale = ". ".join(s for s, _, _ in steps) + "."
        keyphrases = [kp for _, kp, _ in steps] if self.mode == "predict" else list(example.keyphrases)
        return format_answer(rationale, keyphrases), 0, 0
