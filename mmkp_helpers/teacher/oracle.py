"""The synthetic benchmark's oracle teacher: faithful (or deliberately noisy) rationales from a post's
recorded ground truth, in one of its styles, and the check of a rationale against that truth.

**Styles** (``style``; each follows the project's rationale convention, see
:mod:`mmkp_helpers.rationale`: sentences separated by ``. ``, a concluding sentence ends with
``: `` and the keyphrases it gives, separated by ``, ``):

``verbose`` (the default; the kind of rationale a GPT-4o-class teacher writes: whole sentences,
every post explained, the image too when it adds nothing)::

    the text names: bike, trip. the square on the left is blue and the circle on the right is
    yellow; blue and yellow make green, so the bike is green: green bike. the background is dark
    blue, which shows night: night.
    the text names: hat. the circle in the centre is red, so the hat is red: red hat.
    the text names: cup. it is signed via maple, an account whose posts carry its own tags: art,
    food, travel. the picture is plain grey and adds nothing.

Each keyphrase is named once, in the conclusion of the step that gives it (a step whose evidence
is the keyphrase itself, a word of the text or an account's tag, states it only there).

``compact`` (evidence-copying: each step copies its evidence words and concludes; nothing is said
where there is nothing to conclude)::

    text: bike, trip. left blue, right yellow, blue and yellow make green, bike: green bike.
    background dark blue: night.
    text: hat. centre red, hat: red hat.
    text: cup.

``unordered`` (a study's style: ``verbose`` except that a composition post's two shapes are read
as the set of their colours, in a fixed order, with no side: "the picture shows the colours red
and yellow; red and yellow make orange, so the car is orange: orange car"; the mix does not depend
on which side a colour is on)::

    the text names: bike. the picture shows the colours blue and yellow; blue and yellow make
    green, so the bike is green: green bike.

``described`` (describe, then reason: the rationale opens with the picture's plain description,
in the words the tiny base's pretraining captions use (:func:`mmkp_helpers.synthetic.caption`),
and each later step reasons from what it wrote; the colour mix is always stated as a rule, "red
and red make red" too)::

    the picture shows a blue square on the left and a yellow circle on the right, on a dark blue
    background. the text names a bike: bike. blue and yellow make green, so the bike is green:
    green bike. the dark blue background shows night: night.

A stranger post (:func:`mmkp_helpers.counterfactual.stranger_posts`: an account's post signed by a
name of no account, its truth marked ``stranger``, no tags) gets "it is signed via <name>, an
account no training post shows" (compact: "via <name>, no tags") where the account step would be,
concluding nothing.

With ``noise`` > 0 that share of the examples (drawn from a hash of ``seed`` and the example id,
so a run is reproducible and independent of the order of the examples) gets an unfaithful
rationale instead: ``"colour"`` states a wrong colour for the object (and concludes the wrong
colour + object keyphrase), ``"drop"`` leaves one reasoning step out.

:func:`check_oracle_rationale` lists what a rationale gets wrong against the ground truth, in
either style (an empty list: faithful).
"""
from __future__ import annotations

import hashlib
import re

from ..data import Example
from ..synthetic import COLOURS, PRIMARIES, SCENES, SHAPES, SIGNATURE, mix
from .base import Teacher, format_answer

NOISE_KINDS = ("colour", "drop")
STYLES = ("verbose", "compact", "running", "unordered", "described")
#: Bumped whenever a style's wording changes, so that cached rationales of an older wording are not reused.
WORDING_VERSION = 2


def _unit(*parts) -> float:
    """A number in [0, 1) fixed by ``parts`` (SHA-256; the same on every machine and run)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check_style(style: str) -> str:
    """``style`` when it is one of :data:`STYLES`, else a ``ValueError`` naming them."""
    if style not in STYLES:
        raise ValueError(f"unknown rationale style {style!r}; choose one of {STYLES}")
    return style


def _colour_step(truth: dict, kp: str, colour: str, style: str) -> str:
    """The step to the colour + object keyphrase: one shape read (an image post), two shapes
    read and their colours mixed (a composition post), or the text's primary and the one shape's
    mixed (a combine post: "the text names blue and the picture shows a yellow square in the
    centre; blue and yellow make green, so the car is green: green car")."""
    topic = truth.get("topic") or kp.split(maxsplit=1)[-1]
    if truth.get("needs") == "combine":
        (tint, paint), form = truth["primaries"], truth["shapes"][0]
        made = f"{tint} and {paint} make {colour}"
        if style == "compact":
            return f"text {tint}, centre {paint}, {made}, {topic}: {kp}"
        if style == "described":  # the shape was read in the opening description
            return f"the text names {tint}; {made}, so the {topic} is {colour}: {kp}"
        return (f"the text names {tint} and the picture shows a {paint} {form} in the centre; {made}, so the "
                f"{topic} is {colour}: {kp}")
    if style == "described":  # the shapes were read in the opening description
        if truth.get("needs") != "composition":
            return f"the {(truth.get('shapes') or ['shape'])[0]} is {colour}, so the {topic} is {colour}: {kp}"
        left, right = truth["primaries"]
        return f"{left} and {right} make {colour}, so the {topic} is {colour}: {kp}"
    if truth.get("needs") != "composition":
        form = (truth.get("shapes") or ["shape"])[0]
        if style == "compact":
            return f"centre {colour}, {topic}: {kp}"
        return f"the picture shows a {colour} {form} in the centre, so the {topic} is {colour}: {kp}"
    (left, right), (f_left, f_right) = truth["primaries"], truth["shapes"]
    if style == "compact":
        made = f"{left} and {right} make {colour}" if left != right else f"{left} stays {colour}"
        return f"left {left}, right {right}, {made}, {topic}: {kp}"
    if style == "unordered":  # the colours as a set, in PRIMARIES order: no side to bind
        left, right = sorted((left, right), key=list(PRIMARIES).index)
        shapes = f"the picture shows the colours {left} and {right}"
    else:
        shapes = f"the picture shows a {left} {f_left} on the left and a {right} {f_right} on the right"
    made = f"{left} and {right} make {colour}" if left != right else f"both are {left}"
    return f"{shapes}; {made}, so the {topic} is {colour}: {kp}"


def _description(truth: dict) -> str:
    """The ``described`` style's opening: the picture in the tiny base's caption words."""
    from ..synthetic import caption

    return f"the picture shows {caption(truth).rstrip('.')}"


class OracleTeacher(Teacher):
    """Rationales from the synthetic benchmark's ground truth (see the module docstring).

    In *predict* mode the answer's keyphrases follow the (possibly noisy) rationale; in
    *rationalize* mode they are the gold ones whatever the rationale says."""

    name = "oracle"
    model = "ground-truth"

    def __init__(self, mode: str = "rationalize", noise: float = 0.0, noise_kinds=NOISE_KINDS, seed: int = 0,
                 count_tokens: bool = False, style: str = "running"):
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
        self.style = check_style(style)

    def __repr__(self) -> str:
        return (f"OracleTeacher(mode={self.mode!r}, style={self.style!r}, noise={self.noise}, "
                f"noise_kinds={self.noise_kinds!r}, seed={self.seed}, count_tokens={self.count_tokens})")

    def _key_parts(self) -> list[str]:
        return super()._key_parts() + [f"noise{self.noise:g}", "+".join(self.noise_kinds), f"seed{self.seed}",
                                       f"style-{self.style}", f"wording{WORDING_VERSION}"]

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
        """The faithful reasoning steps in this teacher's style: (sentence, keyphrases it
        concludes), in answer order; a sentence that concludes nothing has an empty list."""
        truth = example.meta.get("truth") or {}
        compact = self.style == "compact"
        wording = self.style if self.style in ("compact", "unordered", "described") else "verbose"
        steps: list[tuple[str, list[str]]] = []
        present: list[str] = []
        tags: list[str] = []

        def flush():
            if present:
                head = "text" if compact else f"the text names {_join([_a(k) for k in present])}"
                steps.append((f"{head}: {', '.join(present)}", list(present)))
                present.clear()
            if tags:
                signer = f"{SIGNATURE} {truth.get('series')}"
                head = (signer if compact else f"it is signed {signer}, an account whose posts carry its own tags"
                        if self.style == "running" else f"it is signed {signer}, an account that tags {_join(tags)}")
                steps.append((f"{head}: {', '.join(tags)}", list(tags)))
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
                steps.append((_colour_step(truth, kp, truth.get("colour") or kp.split()[0], wording), [kp]))
            elif kind == "image":
                looks = SCENES[kp][1] if kp in SCENES else "coloured"
                sentence = (f"background {looks}: {kp}" if compact else f"the {looks} background shows {kp}: {kp}"
                            if self.style == "described" else f"the background is {looks}, which shows {kp}: {kp}")
                steps.append((sentence, [kp]))
            else:
                raise ValueError(f"example {example.id!r}: unknown cue kind {kind!r}")
        flush()
        if truth.get("stranger"):  # a stranger post (counterfactual.stranger_posts): an account no post shows, no tags
            signer = f"{SIGNATURE} {truth.get('series')}"
            steps.append((f"{signer}, no tags" if compact else f"it is signed {signer}, an account no training post shows",
                          []))
        if self.style == "described":  # the description first; it says a text post's picture is plain grey
            return [(_description(truth), [])] + steps
        if not compact and truth.get("needs") == "text":  # (running: first, so the whole answer ends the rationale)
            grey = ("the picture is plain grey and adds nothing", [])
            steps = [grey] + steps if self.style == "running" else steps + [grey]
        return steps

    def planned_noise(self, example: Example) -> str | None:
        """The unfaithfulness this example gets ("colour", "drop") or None (a faithful rationale).

        An example is drawn with probability ``noise`` (hash of seed and id); its kind is drawn
        from ``noise_kinds``, falling back to another kind when the drawn one cannot apply
        ("colour" needs a shape, "drop" needs at least two concluding steps). An example
        where none applies stays faithful."""
        if self.noise <= 0 or _unit("oracle-noise", self.seed, example.id) >= self.noise:
            return None
        steps = self.steps(example)
        kinds = {c["kind"] for c in self._cues(example)}
        applicable = {"colour": "text+image" in kinds, "drop": sum(bool(k) for _, k in steps) >= 2}
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
            concluding = [i for i, (_, kps) in enumerate(steps) if kps]
            del steps[concluding[int(_unit("oracle-drop", self.seed, example.id) * len(concluding))]]
        elif noise == "colour":
            truth = example.meta.get("truth") or {}
            others = [c for c in COLOURS if c != truth.get("colour")]
            wrong = others[int(_unit("oracle-colour", self.seed, example.id) * len(others))]
            for i, (_, kps) in enumerate(steps):
                if kps and kps[0] == f"{truth.get('colour')} {truth.get('topic')}":
                    wrong_kp = f"{wrong} {truth.get('topic')}"
                    steps[i] = (_colour_step(truth, wrong_kp, wrong, self.style if self.style in ("compact", "unordered",
                                                                                       "described") else "verbose"),
                                [wrong_kp])
        if self.style == "running":  # each conclusion restates the answer so far
            running: list[str] = []
            for i, (sentence, kps) in enumerate(steps):
                if kps:
                    running += kps
                    steps[i] = (f"{sentence.rsplit(': ', 1)[0]}: {'; '.join(running)}", kps)
        rationale = ". ".join(s for s, _ in steps) + "."
        return rationale, [k for _, kps in steps for k in kps], noise

    def reread(self, example: Example, seed: int = 0, avoid=()) -> tuple[str, list[str], str] | None:
        """An *evidence counterfactual* of ``example`` (see :func:`mmkp_helpers.counterfactual.reread_records`):
        ``(rationale, keyphrases, context)`` for the same post read differently, or None for a post
        without a shape (a text post). A composition post's two primaries become another pair whose mix
        is another colour, an image post's shape another colour, a combine post's primary of the text
        another primary whose mix with the shape's is another colour (drawn from a hash of ``seed``
        and the id); the rationale, faithful and in this teacher's style, follows the changed reading to its
        colour keyphrase, and ``context`` is the rationale up to the end of that reading (the part that
        contradicts the picture, so it is context and carries no loss). ``avoid``: colours the
        changed reading must not lead to (a study's held-out mixes stay out of training)."""
        from dataclasses import replace

        from ..synthetic import keyphrases_of, mix

        truth = dict(example.meta.get("truth") or {})
        needs, colour = truth.get("needs"), truth.get("colour")
        if needs not in ("image", "composition", "combine") or not colour:
            return None
        u = _unit("oracle-reread", seed, example.id)
        if needs == "combine":
            paint = truth["primaries"][1]
            tints = [t for t in PRIMARIES if mix(t, paint) not in {colour, *avoid}]
            if not tints:
                return None
            tint = tints[int(u * len(tints))]
            truth.update(primaries=[tint, paint], colour=mix(tint, paint))
        elif needs == "composition":
            pairs = [(a, b) for a in PRIMARIES for b in PRIMARIES if mix(a, b) not in {colour, *avoid}]
            left, right = pairs[int(u * len(pairs))]
            truth.update(primaries=[left, right], colour=mix(left, right))
        else:
            others = [c for c in COLOURS if c not in {colour, *avoid}]
            truth["colour"] = others[int(u * len(others))]
        keyphrases, kinds, cues = keyphrases_of(truth)
        changed = replace(example, keyphrases=keyphrases,
                          meta=dict(example.meta, truth=truth, kinds=kinds, cues=cues))
        rationale, concluded, _ = OracleTeacher(style=self.style).rationale_and_keyphrases(changed)
        return rationale, concluded, self._up_to_reading(changed.id, rationale, truth)

    def opening(self, example: Example) -> str | None:
        """This teacher's faithful rationale of ``example`` up to the end of its reading of the
        picture (the shape's colour, or the two shapes' colours), or None for a post without a shape."""
        truth = example.meta.get("truth") or {}
        if truth.get("needs") not in ("image", "composition", "combine") or not truth.get("colour"):
            return None
        rationale, _, _ = OracleTeacher(style=self.style).rationale_and_keyphrases(example)
        return self._up_to_reading(example.id, rationale, truth)

    def _up_to_reading(self, example_id: str, rationale: str, truth: dict) -> str:
        if truth["needs"] == "combine":  # up to the text's primary and the shape's (or the description's)
            tint, paint = truth["primaries"]
            reading = (f"the text names {tint}" if self.style == "described" else f"text {tint}, centre {paint}"
                       if self.style == "compact" else
                       f"the text names {tint} and the picture shows a {paint} {truth['shapes'][0]} in the centre")
        elif self.style == "described":
            reading = _description(truth)
        elif truth["needs"] == "composition":
            (left, right), (f_left, f_right) = truth["primaries"], truth["shapes"]
            if self.style == "unordered":
                a, b = sorted((left, right), key=list(PRIMARIES).index)
                reading = f"the picture shows the colours {a} and {b}"
            else:
                reading = (f"left {left}, right {right}" if self.style == "compact" else
                           f"the picture shows a {left} {f_left} on the left and a {right} {f_right} on the right")
        else:
            reading = (f"centre {truth['colour']}" if self.style == "compact" else
                       f"the picture shows a {truth['colour']} {truth['shapes'][0]} in the centre")
        end = rationale.find(reading)
        if end < 0:
            raise AssertionError(f"{example_id}: the reading {reading!r} is not in its rationale {rationale!r}")
        return rationale[:end + len(reading)]

    def _answer_text(self, example: Example) -> tuple[str, int, int]:
        rationale, keyphrases, _ = self.rationale_and_keyphrases(example)
        if self.mode == "rationalize":
            keyphrases = list(example.keyphrases)
        return format_answer(rationale, keyphrases), 0, 0


# ------------------------------------------------------------------------------------------------
# Checking a rationale against the synthetic ground truth
# ------------------------------------------------------------------------------------------------
def _sentences(rationale: str) -> list[tuple[list[str], list[str]]]:
    """The rationale's sentences as (lower-case words, concluded keyphrases)."""
    out = []
    for part in re.split(r"(?<=[.!?])\s+|\n+", rationale.lower().strip()):
        part = part.strip().rstrip(".!?")
        if not re.findall(r"[a-z0-9]+", part):
            continue
        concluded = [c.strip() for c in re.split(r"[,;]", part.rsplit(": ", 1)[1])] if ": " in part else []
        out.append((re.findall(r"[a-z0-9]+", part), [c for c in concluded if c]))
    return out


#: A shape read at a place in the picture, as every style that names shapes writes it ("a red circle
#: on the left", "a green square in the centre"): (said colour, shape, place).
SHAPE_READ = re.compile(r"\b(\w+) ({}) (in the centre|on the left|on the right)\b".format("|".join(SHAPES)))
_PLACE = {"in the centre": 0, "on the left": 0, "on the right": 1}


def misread_shapes(example: Example, rationale: str | None) -> list[tuple[str, str, str | None]]:
    """The shapes ``rationale`` names wrongly, as (place, shape said, true shape or None): every
    ":data:`SHAPE_READ`" phrase must name the shape the picture has at that place (the centre and
    the left are a post's first shape, the right its second; a place with no shape, e.g. on a text
    post's plain picture, has None). The colour said there is checked elsewhere (the colour cue)."""
    true = list((example.meta.get("truth") or {}).get("shapes") or [])
    wrong = []
    for _, shape, place in SHAPE_READ.findall((rationale or "").lower()):
        index = _PLACE[place]
        truth = true[index] if index < len(true) else None
        if shape != truth:
            wrong.append((place, shape, truth))
    return wrong


def check_oracle_rationale(example: Example, rationale: str | None) -> list[str]:
    """The problems of ``rationale`` against a synthetic example's ground truth ([] = faithful).

    Every keyphrase must be concluded (after a sentence's ``: ``) by a sentence that states its
    cue, and those sentences must come in the answer's order:

    - a present keyphrase (topic, event): the sentence has the word "text";
    - the colour + object keyphrase: the sentence names the true colour and, on a composition
      post, each shape with its own primary ("left blue" or "a blue circle on the left"), on a
      combine post the text's primary and the shape's ("the text names blue" and "a yellow square
      in the centre", the latter possibly in a described opening); every
      rule step it states ("X and Y make Z", "both are X", "X stays Z") and every "the <object or
      shape> is Z" in it must be right (the post's primaries, their mix, the true colour); a
      sentence concluding another colour for the object is a problem too;
    - a scene: the sentence has "background" and the background's colour words (``dark blue``);
    - a tag: the sentence has the account's name;
    - anywhere: every shape it names at a place is the one there (:func:`misread_shapes`), so "a
      orange square in the centre" on a post whose picture has an orange circle is a problem even
      where the colour it concludes is right.
    Works for every style of :class:`OracleTeacher`."""
    cues = OracleTeacher._cues(example)
    truth = example.meta.get("truth") or {}
    if not rationale or not rationale.strip():
        return ["empty rationale"]
    sentences = _sentences(rationale)
    problems: list[str] = []
    positions: list[tuple[int, str]] = []

    def has(words: list[str], phrase: str) -> bool:
        target = phrase.lower().split()
        return any(words[i:i + len(target)] == target for i in range(len(words) - len(target) + 1))

    for cue in cues:
        kp, kind = cue["keyphrase"], cue["kind"]
        concluding = [(i, w) for i, (w, c) in enumerate(sentences) if kp in c]
        if kind == "present":
            found = [i for i, w in concluding if "text" in w]
            why = f"'{kp}' (present): no sentence says the text names it"
        elif kind == "text+image":
            colour, primaries = truth.get("colour"), truth.get("primaries") or []
            shapes = truth.get("shapes") or [""] * len(primaries)

            def reads_shapes(w: list[str]) -> bool:  # each shape read with its side's primary, or the set
                if truth.get("needs") == "combine":  # the text's primary, and the shape's (or the description's)
                    tint, paint = primaries
                    return (has(w, f"text names {tint}") or has(w, f"text {tint}")) and (
                        has(w, f"{paint} {shapes[0]} in the centre") or has(w, f"centre {paint}") or bool(described))
                if len(primaries) == 2 and has(w, "the colours {} and {}".format(
                        *sorted(primaries, key=list(PRIMARIES).index))):
                    return True
                return all(has(w, f"{side} {p}") or has(w, f"{p} {shape} on the {side}")
                           for side, p, shape in zip(("left", "right"), primaries, shapes))

            # the described style reads the shapes in its opening description and states the mix after it
            if truth.get("needs") == "combine":
                described = [i for i, (w, c) in enumerate(sentences) if not c and has(w, "the picture shows")
                             and has(w, f"{primaries[1]} {shapes[0]} in the centre")]
            else:
                described = [i for i, (w, c) in enumerate(sentences) if not c and has(w, "the picture shows")
                             and reads_shapes(w)]

            def mixes(i: int, w: list[str]) -> bool:
                return (bool(described) and described[0] < i and len(primaries) == 2 and truth.get("needs") != "combine"
                        and any(has(w, f"{a} and {b} make {colour}") for a, b in (primaries, primaries[::-1])))

            def rule_agrees(w: list[str]) -> bool:  # every rule step and colour claim of the sentence is right
                text = " ".join(w)
                for a, b, made in re.findall(r"\b(\w+) and (\w+) make (\w+)", text):
                    if a in PRIMARIES and b in PRIMARIES and (made != colour or mix(a, b) != colour
                                                              or sorted((a, b)) != sorted(primaries)):
                        return False
                claims = re.findall(r"\bboth are (\w+)|\bstays (\w+)|\bthe (?:{}) is (\w+)".format(
                    "|".join(map(re.escape, [str(truth.get("topic")), *SHAPES]))), text)
                return all(c == colour for claim in claims for c in claim if c)

            found = [i for i, w in concluding if colour in w and (reads_shapes(w) or mixes(i, w)) and rule_agrees(w)]
            why = (f"'{kp}' (text+image): no sentence names the shapes' {' and '.join(primaries)} and makes {colour}"
                   if primaries else f"'{kp}' (text+image): no sentence says the shape is {colour}")
            topic = truth.get("topic")
            for i, (w, c) in enumerate(sentences):
                wrong = [x for x in c if x != kp and x.endswith(f" {topic}") and x.split()[0] in COLOURS]
                if wrong:
                    problems.append(f"'{kp}' (text+image): sentence {i + 1} concludes the wrong colour {', '.join(wrong)}")
        elif kind == "image":
            looks = SCENES[kp][1] if kp in SCENES else ""
            found = [i for i, w in concluding if "background" in w and has(w, looks)]
            why = f"'{kp}' (image): no sentence says the background is {looks}"
        elif kind == "tag":
            signer = str(truth.get("series") or "")
            found = [i for i, w in concluding if signer and signer in w]
            why = f"'{kp}' (tag): no sentence ties it to the signature '{SIGNATURE} {signer}'"
        else:
            found, why = [], f"'{kp}': unknown kind {kind!r}"
        if found:
            positions.append((found[0], kp))
        else:
            problems.append(why)
    for place, said, truth in misread_shapes(example, rationale):
        problems.append(f"it reads a {said} {place}, where the picture has "
                        + (f"a {truth}" if truth else "no shape"))
    order = [i for i, _ in positions]
    if order != sorted(order):
        problems.append("keyphrases are justified out of the answer's order: "
                        + ", ".join(kp for _, kp in sorted(positions)))
    return problems
