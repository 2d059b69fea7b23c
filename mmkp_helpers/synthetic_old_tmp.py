"""A synthetic multi-modal keyphrase benchmark, small enough for a CPU and built so the image matters.

Why a synthetic benchmark? The real CMKP images are not public, and a tiny randomly initialised
Qwen2-VL trained for a few minutes on a CPU cannot learn real tweets. This generator makes posts
whose keyphrases follow simple, known rules, draws a real picture for each (PIL, PNG), and keeps
the ground truth, so that every question of the paper can be asked on a laptop:
does fine-tuning beat zero-shot, does the image help, does a rationale help two-step keyphrases,
and how much do train/test near-duplicates inflate the scores?

**A post.** Each post is about one *topic* object (``car``, ``bike``, ... 10 of them), sometimes at
an *event* (``party``, ``trip``, ... 5). Its text is a short lower-case sentence (at most 20
words, 22 with an account's signature) glued from independently drawn pieces::

    <opener> <topic> [<middle>] [<preposition> <event>] <tail> [<interjection>] [via <account>]
    "just got a new car on the way home ready for the party so happy right now"

**Its picture** (default 112 x 112 pixels) has two coarse cues, because a tiny model sees it as a
4 x 4 grid of 28-pixel tokens through a frozen random vision encoder, which keeps colours of
big regions apart but not fine detail:

- the *background* colour fills the whole image; six colours stand for six *scenes*
  (dark blue = ``night``, white = ``snow``, dark green = ``forest``, beige = ``sand``,
  teal = ``sea``, orange = ``fire``); grey means "no particular scene";
- a large *shape* (square or circle, the shape itself carries no meaning) covers the centre
  (about the middle 2 x 2 tokens); its colour (``red``, ``blue``, ``green``, ``yellow``,
  ``purple``, ``pink``) is the colour of the post's object. Some posts have no shape.

**Its keyphrases**, in this order, with their *kind* in ``meta["kinds"]``:

=============  ================  ===============================================================
keyphrase      kind              rule
=============  ================  ===============================================================
``car``        ``present``       the topic word, always, verbatim in the text
``party``      ``present``       the event word, when the text names an event
``red car``    ``text+image``    shape colour (image) + topic (text), when there is a shape: a
                                 two-step inference ("the post is about a car; the object drawn
                                 is red"), the kind where a rationale should help
``night``      ``image``         the scene of the background colour, when it is not grey; no
                                 scene or colour word ever appears in any text
``travel``     ``tag``           a tag of the account that posted it (series posts only, below):
                                 no rule gives it, only having seen the account's posts
=============  ================  ===============================================================

**Series (recurring accounts).** Much of Twitter's overlap comes from accounts that post the same
kind of message again and again (shops, bots, fan pages) with hashtags of their own. ``n_series``
accounts (default 8) share ``series_share`` of the training posts (default 40%: 30 posts each of
the 600), all alike within an account: one subject
(topic, object colour, scene), one text frame ending in the account's signature
(``... via maple``), a fresh event and interjection per post, and ``series_tags`` tags (default 3)
that no other account uses. An account's posts are near-duplicates of one another. A model can
learn an account's tags only by memorising its posts; on a post of an account it never saw, the
tags are unseen and no rule recovers them. This is where a split with train/test overlap pays.

With the defaults (event 30%, shape 85%, scene 85% of posts, 40% of training posts in series)
about 31% of training keyphrases are present, 20% text+image, 20% image-only and 29% tags
(``expected_kind_shares``); fresh valid and test posts have no tags: 43% present, 28% text+image,
28% image-only. A text-only model can get the
present ones, must guess the colour of a ``text+image`` one (1 in 6) and the scene of an ``image``
one (1 in 6, or by the most frequent scene); an image-only model cannot name the topic.

**Unseen keyphrases.** A few colour x topic combinations (``heldout_combos``, default 8 of 60)
never occur in training. In valid and test posts that have a shape, a share ``unseen_share``
(default 25%) use a held-out combination: the keyphrase (``green car``) was never seen, but both of
its words were (``green bike``, ``red car``...). Every colour and topic keeps seen combinations.

**Original and clean test splits.** CMKP's test set shares near-duplicate posts with its
training set (retweets, templates), which inflates scores. ``test`` (the "original" variant) mimics
that: ``dup_share`` (default 30%) of its posts are light edits of training posts (one word
swapped for a synonym and/or an interjection added or removed; the same objects redrawn with
fresh small jitter) with the same keyphrases (an account's tags included). ``test_clean`` has the same size and no near-
duplicate: its posts are all fresh, and every fresh (valid or test) post's text is redrawn until
its word-bigram Jaccard similarity with every training post is below ``fresh_max_jaccard``
(0.4), while a near-duplicate is >= ``near_duplicate_threshold`` (0.5) by construction.
Both test variants share the fresh posts (same ids), so their difference is exactly the
near-duplicates. ``train`` and ``valid`` are common to both variants.

**Ground truth for teachers.** ``meta`` keeps what is drawn (``drawing``: background and
shape colours, shape box), what it means (``truth``: topic, event, colour, scene), which cue gives
which keyphrase (``cues``: one entry per keyphrase, naming the text evidence and/or the image
evidence; for a tag, the account's signature), the account (``truth["series"]``, ``truth["tags"]``), whether the colour x topic was held out (``heldout``) and, for a near-duplicate, the
training post it copies (``near_duplicate_of``) and the edit. An offline teacher can write a
faithful rationale from it without looking at pixels.

**Files** (:func:`make_synthetic`): ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` (original),
``test_clean.jsonl``, ``train_keyphrases.txt`` (for the evaluator's "unseen" subset),
``images/<id>.png`` and ``manifest.json`` (parameters, counts, share of each kind, unseen and
overlap figures). The same seed and parameters give byte-identical files (PNG without metadata
or timestamps, JSON with a fixed key order). The default sizes (600/100/150) take seconds.
All keyphrase words are single tokens of the Qwen vocabulary, with and without a leading space.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .data import Example, train_keyphrases, write_jsonl
from .text import jaccard, present_in_text, tokenize, word_shingles

# --------------------------------------------------------------------------------------------
# The closed vocabulary
# --------------------------------------------------------------------------------------------
TOPICS = ("car", "bike", "boat", "bus", "hat", "shirt", "dress", "bag", "cup", "lamp")
EVENTS = ("birthday", "holiday", "party", "trip", "match")
#: Object colours (the central shape): name -> RGB.
COLOURS = {
    "red": (214, 39, 40), "blue": (31, 90, 220), "green": (44, 170, 60),
    "yellow": (245, 205, 30), "purple": (140, 60, 180), "pink": (247, 140, 200),
}
#: Scenes (the background): name -> (RGB, how the colour is described in a rationale).
SCENES = {
    "night": ((18, 22, 60), "dark blue"), "snow": ((238, 240, 246), "white"),
    "forest": ((22, 80, 38), "dark green"), "sand": ((222, 196, 140), "beige"),
    "sea": ((20, 130, 150), "teal"), "fire": ((235, 110, 20), "orange"),
}
NO_SCENE = ((128, 128, 128), "grey")
SHAPES = ("square", "circle")

# Text pieces. None of their words is a topic, event, colour or scene word (checked by
# _check_vocabulary), so a keyphrase's kind is exactly what the rules say.
OPENERS = ("just got a new", "finally picked up my", "look at this", "cannot stop staring at my",
           "my friend made me a", "we found an old", "so proud of my", "check out the",
           "here is my favourite", "nothing beats a good", "someone left a", "my dad bought a")
MIDDLES = ("", "with my sister", "after work", "on the way home", "from the market", "at last",
           "for my brother", "in the shop window", "from my aunt", "this morning", "with the kids",
           "near the station")
EVENT_PREPOSITIONS = ("for the", "ready for the", "just in time for the", "all set for the")
TAILS = ("and i love it", "what do you think", "best day ever", "so happy right now", "more photos soon",
         "this made my day", "thanks everyone", "could not be happier", "who wants one", "cannot wait",
         "life is good", "totally worth it")
INTERJECTIONS = ("lol", "wow", "yay", "omg", "haha")
INTERJECTION_RATE = 0.25
#: Light edits that make a near-duplicate: one filler word swapped for a synonym.
SYNONYMS = {"love": "adore", "happy": "glad", "photos": "pics", "favourite": "favorite", "sister": "sis",
            "friend": "buddy", "think": "reckon", "best": "greatest", "proud": "chuffed", "bought": "got",
            "found": "spotted", "morning": "afternoon", "kids": "children", "market": "shop",
            "good": "great", "thanks": "cheers", "new": "shiny"}

#: Series: recurring posts of one account (a shop, a bot, a fan page) that repeat one text frame,
#: end with the account's signature ("via <name>") and always carry the account's own tags.
SERIES_NAMES = ("river", "stone", "cloud", "pixel", "nova", "echo", "amber", "orbit", "delta", "ember",
                "maple", "lotus", "cedar", "coral", "falcon", "harbor", "willow", "meadow", "comet", "atlas",
                "aurora", "breeze", "canyon", "dune")
TAGS = ("goals", "family", "style", "music", "travel", "food", "art", "nature", "fitness", "summer", "winter",
        "spring", "local", "classic", "design", "daily", "sale", "deal", "gift", "coffee", "tea", "craft", "gold",
        "silver", "baby", "pets", "dogs", "cats", "fun", "school", "team", "news", "sport", "city", "street",
        "urban", "quote", "fan", "club", "crew", "grow", "plan")
SIGNATURE = "via"

KINDS = ("present", "text+image", "image", "tag")
SHINGLE = 2  # word bigrams for the near-duplicate measure


def shingles(text: str, n: int = SHINGLE) -> frozenset:
    """The set of word n-grams of a text (see :func:`mmkp_helpers.text.word_shingles`)."""
    return word_shingles(tokenize(text), n)


def _check_vocabulary() -> None:
    """Fail loudly if a filler word could turn a keyphrase into a present one."""
    from .text import stem_token as stem

    keywords = set(TOPICS) | set(EVENTS) | set(COLOURS) | set(SCENES) | set(TAGS)
    fillers = " ".join(OPENERS + MIDDLES + EVENT_PREPOSITIONS + TAILS + INTERJECTIONS + SERIES_NAMES
                       + (SIGNATURE,) + tuple(SYNONYMS.values())).split()
    clash = {stem(w) for w in keywords} & {stem(w) for w in fillers}
    if clash:
        raise AssertionError(f"filler words clash with keyphrase words: {sorted(clash)}")
    if len(set(TAGS)) != len(TAGS) or len(set(SERIES_NAMES)) != len(SERIES_NAMES):
        raise AssertionError("tags and series names must be distinct")


_check_vocabulary()


@dataclass
class SyntheticConfig:
    """Everything that shapes the benchmark; stored in ``manifest.json``."""
    seed: int = 0
    n_train: int = 600
    n_valid: int = 100
    n_test: int = 150
    image_size: tuple[int, int] = (112, 112)
    p_event: float = 0.3                 # share of posts naming an event (a 2nd present keyphrase)
    p_shape: float = 0.85                # share of posts with a coloured shape (-> text+image)
    p_scene: float = 0.85                # share of posts with a scene background (-> image)
    heldout_combos: int = 8              # colour x topic pairs never used in training
    unseen_share: float = 0.25           # share of valid/test shapes that use a held-out pair
    dup_share: float = 0.3               # share of the original test split that near-duplicates train
    n_series: int = 8                    # recurring accounts among the training posts ...
    series_share: float = 0.4            # ... that post this share of the training posts ...
    series_tags: int = 3                 # ... and this many tags of its own on every post
    near_duplicate_threshold: float = 0.5
    fresh_max_jaccard: float = 0.4

    def check(self) -> None:
        for name in ("p_event", "p_shape", "p_scene", "unseen_share", "dup_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must lie in [0, 1]")
        if not 0 <= self.heldout_combos <= len(TOPICS):
            raise ValueError(f"heldout_combos must lie in [0, {len(TOPICS)}]")
        if min(self.n_train, self.n_valid, self.n_test) < 0 or self.n_train < 1:
            raise ValueError("split sizes must be >= 0 (and n_train >= 1)")
        if round(self.dup_share * self.n_test) > self.n_train:
            raise ValueError("more near-duplicates asked for than there are training posts")
        if self.fresh_max_jaccard >= self.near_duplicate_threshold:
            raise ValueError("fresh_max_jaccard must be below near_duplicate_threshold")
        if not 0 <= self.n_series <= len(SERIES_NAMES):
            raise ValueError(f"n_series must lie in [0, {len(SERIES_NAMES)}]")
        if not 0.0 <= self.series_share <= 1.0:
            raise ValueError(f"series_share={self.series_share} must lie in [0, 1]")
        if self.n_series and not 0 <= self.series_tags <= len(TAGS) // self.n_series:
            raise ValueError(f"series_tags must lie in [0, {len(TAGS) // self.n_series}] for {self.n_series} accounts")
        if self.n_series and self.series_size < 1:
            raise ValueError(f"{self.n_series} accounts get no post from series_share={self.series_share} of "
                             f"n_train={self.n_train}: raise one, or set n_series=0")

    @property
    def series_size(self) -> int:
        """Training posts per account: ``series_share`` of ``n_train``, shared by the accounts."""
        return int(round(self.series_share * self.n_train / self.n_series)) if self.n_series else 0

    def expected_kind_shares(self) -> dict[str, float]:
        """The share of each keyphrase kind the rules give on average."""
        series = self.n_series * self.series_size / self.n_train if self.n_train else 0.0
        per_post = {"present": 1.0 + self.p_event, "text+image": self.p_shape, "image": self.p_scene,
                    "tag": series * self.series_tags}
        total = sum(per_post.values())
        return {k: v / total for k, v in per_post.items()}


def heldout_pairs(config: SyntheticConfig) -> list[tuple[str, str]]:
    """The held-out (colour, topic) pairs: distinct topics, colours spread evenly, so every word
    keeps seen combinations in training."""
    rng = random.Random(f"{config.seed}-heldout")
    topics = list(TOPICS)
    colours = list(COLOURS)
    rng.shuffle(topics)
    rng.shuffle(colours)
    return [(colours[j % len(colours)], topics[j]) for j in range(config.heldout_combos)]


# --------------------------------------------------------------------------------------------
# One post
# --------------------------------------------------------------------------------------------
def _jitter(rng: random.Random, rgb: Sequence[int], amount: int) -> list[int]:
    return [min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb]


def _drawing(rng: random.Random, truth: dict, size: tuple[int, int]) -> dict:
    """What to draw for a post: coarse colours with a little jitter, the shape over the centre."""
    width, height = size
    background = SCENES[truth["scene"]][0] if truth["scene"] else NO_SCENE[0]
    drawing = {"size": [width, height], "background": _jitter(rng, background, 8),
               "shape": None, "shape_box": None, "shape_fill": None}
    if truth["colour"]:
        shape = truth["shape"]
        base = 0.55 if shape == "square" else 0.64   # a circle covers less of its box
        side = round(base * min(width, height)) + rng.randint(-3, 3)
        cx = width // 2 + rng.randint(-3, 3)
        cy = height // 2 + rng.randint(-3, 3)
        drawing.update(shape=shape, shape_fill=_jitter(rng, COLOURS[truth["colour"]], 12),
                       shape_box=[cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side])
    return drawing


def render_image(drawing: dict):
    """The PIL image of a post's ``meta["drawing"]``."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", tuple(drawing["size"]), tuple(drawing["background"]))
    if drawing.get("shape"):
        draw = ImageDraw.Draw(img)
        box = tuple(drawing["shape_box"])
        fill = tuple(drawing["shape_fill"])
        if drawing["shape"] == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.ellipse(box, fill=fill)
    return img


def _compose_text(rng: random.Random, topic: str, event: str | None, series: dict | None = None) -> tuple[str, dict]:
    """A post's text from independently drawn pieces; a series post keeps its series' frame
    (opener, middle, tail) and ends with the series' signature."""
    frame = series["frame"] if series else None
    parts = {"opener": frame["opener"] if frame else rng.choice(OPENERS), "topic": topic,
             "middle": frame["middle"] if frame else rng.choice(MIDDLES),
             "event": f"{rng.choice(EVENT_PREPOSITIONS)} {event}" if event else "",
             "tail": frame["tail"] if frame else rng.choice(TAILS),
             "interjection": rng.choice(INTERJECTIONS) if rng.random() < INTERJECTION_RATE else ""}
    if series:
        parts["signature"] = f"{SIGNATURE} {series['name']}"
    return " ".join(p for p in parts.values() if p), parts


def _keyphrases(truth: dict) -> tuple[list[str], dict[str, str], list[dict]]:
    """The post's keyphrases in order, their kinds, and the cue behind each."""
    topic, event, colour, scene = truth["topic"], truth["event"], truth["colour"], truth["scene"]
    kps, kinds, cues = [topic], {topic: "present"}, [
        {"keyphrase": topic, "kind": "present", "text": f"the text names the {topic}", "image": None}]
    if event:
        kps.append(event)
        kinds[event] = "present"
        cues.append({"keyphrase": event, "kind": "present", "text": f"the text names the {event}", "image": None})
    if colour:
        kp = f"{colour} {topic}"
        kps.append(kp)
        kinds[kp] = "text+image"
        cues.append({"keyphrase": kp, "kind": "text+image", "text": f"the post is about a {topic}",
                     "image": f"the large {truth['shape']} in the centre is {colour}"})
    if scene:
        kps.append(scene)
        kinds[scene] = "image"
        cues.append({"keyphrase": scene, "kind": "image", "text": None,
                     "image": f"the {SCENES[scene][1]} background shows {scene}"})
    for tag in truth.get("tags") or ():
        kps.append(tag)
        kinds[tag] = "tag"
        cues.append({"keyphrase": tag, "kind": "tag", "image": None,
                     "text": f"the post is signed '{SIGNATURE} {truth['series']}', an account that tags every post {tag}"})
    return kps, kinds, cues


def _make_example(ex_id: str, split: str, text: str, parts: dict, truth: dict, drawing: dict,
                  heldout: bool, seed: int) -> Example:
    kps, kinds, cues = _keyphrases(truth)
    for kp, kind in kinds.items():  # the rules hold under the evaluator's own presence test
        if present_in_text(kp, text) != (kind == "present"):
            raise AssertionError(f"{ex_id}: keyphrase {kp!r} of kind {kind} vs text {text!r}")
    meta = {"kinds": kinds, "truth": dict(truth), "drawing": drawing, "cues": cues, "text_parts": parts,
            "heldout": heldout, "split": split}
    return Example(id=ex_id, text=text, keyphrases=kps, image=None, source=f"synthetic(seed={seed}):{ex_id}",
                   meta=meta)


class _Generator:
    """Draws posts from one random stream, in a fixed order (so a seed fixes everything)."""

    def __init__(self, config: SyntheticConfig):
        config.check()
        self.config = config
        self.rng = random.Random(config.seed)
        self.heldout = heldout_pairs(config)
        held = set(self.heldout)
        self.seen_colours = {t: [c for c in COLOURS if (c, t) not in held] for t in TOPICS}
        self.train_shingles: list[frozenset] = []
        self.series = self._draw_series()

    def _draw_series(self) -> list[dict]:
        """The recurring accounts: a name, tags of their own, one subject (topic, object colour,
        scene, shape) and one text frame each. Their posts differ only in the event, an
        interjection and the image's jitter, so they are near-duplicates of one another."""
        rng, cfg = self.rng, self.config
        names = rng.sample(SERIES_NAMES, cfg.n_series)
        tags = rng.sample(TAGS, cfg.n_series * cfg.series_tags)
        series = []
        for k, name in enumerate(names):
            truth, _ = self.truth(allow_heldout=False)
            truth.update(event=None, series=name, tags=tags[k * cfg.series_tags:(k + 1) * cfg.series_tags])
            frame = {"opener": rng.choice(OPENERS), "middle": rng.choice(MIDDLES), "tail": rng.choice(TAILS)}
            series.append({"name": name, "tags": truth["tags"], "truth": truth, "frame": frame, "first": None})
        return series

    def truth(self, allow_heldout: bool) -> tuple[dict, bool]:
        rng, cfg = self.rng, self.config
        has_shape = rng.random() < cfg.p_shape
        heldout = False
        if has_shape and allow_heldout and self.heldout and rng.random() < cfg.unseen_share:
            colour, topic = rng.choice(self.heldout)
            heldout = True
        else:
            topic = rng.choice(TOPICS)
            colour = rng.choice(self.seen_colours[topic]) if has_shape else None
        event = rng.choice(EVENTS) if rng.random() < cfg.p_event else None
        scene = rng.choice(list(SCENES)) if rng.random() < cfg.p_scene else None
        shape = rng.choice(SHAPES) if has_shape else None
        return {"topic": topic, "event": event, "colour": colour, "scene": scene, "shape": shape,
                "series": None, "tags": []}, heldout

    def series_post(self, ex_id: str, series: dict) -> Example:
        """A training post of a series: its subject and frame, a fresh event and interjection,
        within near-duplicate distance of the series' first post."""
        rng, cfg = self.rng, self.config
        truth = dict(series["truth"])
        for _ in range(50):
            truth["event"] = rng.choice(EVENTS) if rng.random() < cfg.p_event else None
            text, parts = _compose_text(rng, truth["topic"], truth["event"], series)
            if series["first"] is None or jaccard(shingles(text), series["first"]) >= cfg.near_duplicate_threshold:
                break
        else:  # (rare) the first post's own text again: an exact duplicate, as reposts are
            truth["event"] = series["first_event"]
            parts = dict(series["first_parts"])
            text = " ".join(p for p in parts.values() if p)
        if series["first"] is None:
            series.update(first=shingles(text), first_parts=parts, first_event=truth["event"])
        drawing = _drawing(rng, truth, cfg.image_size)
        ex = _make_example(ex_id, "train", text, parts, truth, drawing, False, cfg.seed)
        self.train_shingles.append(shingles(text))
        return ex

    def post(self, ex_id: str, split: str, fresh: bool) -> Example:
        """A new post; ``fresh`` ones (valid/test) keep away from every training text."""
        truth, heldout = self.truth(allow_heldout=fresh)
        for _ in range(200):
            text, parts = _compose_text(self.rng, truth["topic"], truth["event"])
            if not fresh:
                break
            sh = shingles(text)
            if all(jaccard(sh, other) < self.config.fresh_max_jaccard for other in self.train_shingles):
                break
        else:
            raise RuntimeError(f"could not draw a text for {ex_id} unlike every training post; "
                               "lower n_train or raise fresh_max_jaccard")
        drawing = _drawing(self.rng, truth, self.config.image_size)
        ex = _make_example(ex_id, split, text, parts, truth, drawing, heldout, self.config.seed)
        if split == "train":
            self.train_shingles.append(shingles(text))
        return ex

    def near_duplicate(self, ex_id: str, original: Example) -> Example:
        """A light edit of a training post: a synonym swap and/or an interjection changed.

        The copy keeps the original's truth, keyphrases and ``text_parts`` (those describe the
        original text); ``meta["edit"]`` lists what was changed."""
        rng = self.rng
        source = shingles(original.text)
        for attempt in range(50):
            words = original.text.split()
            edits = []
            candidates = [i for i, w in enumerate(words) if w in SYNONYMS]
            # a swap, an interjection changed, or both; short texts may only take the interjection
            swap = bool(candidates) and (attempt < 25 or rng.random() < 0.5)
            if swap:
                i = rng.choice(candidates)
                edits.append(f"{words[i]} -> {SYNONYMS[words[i]]}")
                words[i] = SYNONYMS[words[i]]
            if not swap or rng.random() < 0.5:
                if words[-1] in INTERJECTIONS:
                    edits.append(f"- {words[-1]}")
                    words.pop()
                else:
                    extra = rng.choice(INTERJECTIONS)
                    edits.append(f"+ {extra}")
                    words.append(extra)
            text = " ".join(words)
            if text != original.text and jaccard(shingles(text), source) >= self.config.near_duplicate_threshold:
                break
        else:
            raise RuntimeError(f"could not edit {original.id} into a near-duplicate")
        truth = dict(original.meta["truth"])
        drawing = _drawing(rng, truth, self.config.image_size)
        ex = _make_example(ex_id, "test", text, dict(original.meta["text_parts"]), truth, drawing,
                           False, self.config.seed)
        ex.meta["near_duplicate_of"] = original.id
        ex.meta["edit"] = edits
        return ex


def generate(seed: int = 0, n_train: int = 600, n_valid: int = 100, n_test: int = 150,
             image_size: tuple[int, int] = (112, 112), **options) -> dict[str, list[Example]]:
    """The benchmark in memory: ``{"train", "valid", "test", "test_clean"}`` -> examples.

    ``test`` is the original variant (with near-duplicates of training posts), ``test_clean`` the
    variant without. Images are not drawn here: ``image`` is None and ``meta["drawing"]`` says
    what :func:`render_image` will draw. ``options`` are the other :class:`SyntheticConfig`
    fields (``p_event``, ``p_shape``, ``p_scene``, ``heldout_combos``, ``unseen_share``,
    ``dup_share``, ...)."""
    config = SyntheticConfig(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test,
                             image_size=tuple(image_size), **options)
    return _generate(config)


def _generate(config: SyntheticConfig) -> dict[str, list[Example]]:
    gen = _Generator(config)
    slots = [s for s in gen.series for _ in range(config.series_size)]
    slots += [None] * (config.n_train - len(slots))
    if gen.series:  # (without accounts the random stream is that of version 1 of the benchmark)
        gen.rng.shuffle(slots)
    train = [gen.series_post(f"syn-train-{i:04d}", s) if s else gen.post(f"syn-train-{i:04d}", "train", fresh=False)
             for i, s in enumerate(slots, 1)]
    valid = [gen.post(f"syn-valid-{i:04d}", "valid", fresh=True) for i in range(1, config.n_valid + 1)]
    fresh = [gen.post(f"syn-test-{i:04d}", "test", fresh=True) for i in range(1, config.n_test + 1)]
    n_dup = round(config.dup_share * config.n_test)
    sources = gen.rng.sample(train, n_dup)
    dups = [gen.near_duplicate(f"syn-testdup-{i:04d}", src) for i, src in enumerate(sources, 1)]
    original = fresh[:config.n_test - n_dup] + dups
    gen.rng.shuffle(original)
    return {"train": train, "valid": valid, "test": original, "test_clean": fresh}


# --------------------------------------------------------------------------------------------
# Statistics and files
# --------------------------------------------------------------------------------------------
def kind_shares(examples: Sequence[Example]) -> dict[str, float]:
    """The share of keyphrase occurrences of each kind."""
    counts = {k: 0 for k in KINDS}
    for ex in examples:
        for kp in ex.keyphrases:
            counts[ex.kinds[kp]] += 1
    total = sum(counts.values())
    return {k: round(v / total, 4) if total else 0.0 for k, v in counts.items()}


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
        "version": 2,
        "params": {**asdict(config), "image_size": list(config.image_size)},
        "files": {name: f"{name}.jsonl" for name in splits} | {"train_keyphrases": "train_keyphrases.txt",
                                                               "images": "images/"},
        "variants": {"original": {"train": "train", "valid": "valid", "test": "test"},
                     "clean": {"train": "train", "valid": "valid", "test": "test_clean"}},
        "counts": {name: len(exs) for name, exs in splits.items()},
        "keyphrases_per_post": {name: round(sum(len(e.keyphrases) for e in exs) / len(exs), 4) if exs else 0.0
                                for name, exs in splits.items()},
        "expected_kind_shares": {k: round(v, 4) for k, v in config.expected_kind_shares().items()},
        "kind_shares": {name: kind_shares(exs) for name, exs in splits.items()},
        "vocabulary": {"topics": list(TOPICS), "events": list(EVENTS), "tags": list(TAGS),
                       "colours": {k: list(v) for k, v in COLOURS.items()},
                       "scenes": {k: {"rgb": list(v[0]), "looks": v[1]} for k, v in SCENES.items()},
                       "no_scene": {"rgb": list(NO_SCENE[0]), "looks": NO_SCENE[1]}, "shapes": list(SHAPES)},
        "heldout_combos": [f"{c} {t}" for c, t in heldout_pairs(config)],
        "series": [{"name": f"{SIGNATURE} {s['name']}", "tags": s["tags"], "subject": {
            k: s["truth"][k] for k in ("topic", "colour", "scene")}, "frame": s["frame"],
            "train_posts": config.series_size} for s in _Generator(config).series],
        "unseen": {name: unseen_stats(train, exs) for name, exs in splits.items() if name != "train"},
        "overlap": {"measure": f"word {SHINGLE}-gram Jaccard with the most similar training post",
                    "threshold": config.near_duplicate_threshold,
                    **{name: near_duplicate_stats(train, exs, config.near_duplicate_threshold)
                       for name, exs in splits.items() if name != "train"}},
    }


def make_synthetic(out_dir, seed: int = 0, n_train: int = 600, n_valid: int = 100, n_test: int = 150,
                   image_size: tuple[int, int] = (112, 112), overwrite: bool = True,
                   **options) -> dict[str, Path]:
    """Write the benchmark under ``out_dir`` and return ``{split: path of its JSONL}`` for
    ``train``, ``valid``, ``test`` (original) and ``test_clean``.

    Also writes ``images/<id>.png``, ``train_keyphrases.txt`` and ``manifest.json``. An existing
    ``images/`` folder is emptied first (``overwrite``), so the folder holds exactly this run."""
    config = SyntheticConfig(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test,
                             image_size=tuple(image_size), **options)
    splits = _generate(config)
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
