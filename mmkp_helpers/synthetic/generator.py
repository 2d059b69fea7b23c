"""Drawing the posts: the configuration, one post's truth, text and keyphrases, the splits."""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..data import Example
from ..text import jaccard, present_in_text, tokenize, word_shingles
from .drawing import draw_plan, looks
from .vocabulary import (COLOURS, EVENT_PREPOSITIONS, EVENTS, INTERJECTION_RATE, INTERJECTIONS, MIDDLES, OPENERS,
                         PRIMARIES, SCENES, SERIES_NAMES, SHAPES, SIDES, SIGNATURE, SYNONYMS, TAGS, TAILS, TOPICS, mix,
                         pairs_for)

SHINGLE = 2  # word bigrams for the near-duplicate measure


def shingles(text: str, n: int = SHINGLE) -> frozenset:
    """The set of word n-grams of a text (see :func:`mmkp_helpers.text.word_shingles`)."""
    return word_shingles(tokenize(text), n)


@dataclass
class SyntheticConfig:
    """Everything that shapes the benchmark; stored in ``manifest.json``."""
    seed: int = 0
    n_train: int = 600
    n_valid: int = 100
    n_test: int = 550
    image_size: tuple[int, int] = (112, 112)
    p_event: float = 0.3                 # share of posts naming an event (a 2nd present keyphrase)
    p_image: float = 0.35                # share of image posts (one shape); ...
    p_composition: float = 0.25          # ... of composition posts (two shapes); the others are text posts
    p_combine: float = 0.0               # a study's kind (off by default): the text names a primary, the one
                                         # shape is another, the object's colour is their mix
    p_scene: float = 0.85                # share of image and composition posts with a scene background
    heldout_combos: int = 30             # colour x topic pairs never used in training (3 of the 6 colours of each topic)
    unseen_share: float = 0.9            # share of valid/test composition posts that use a held-out pair
    dup_share: float = 0.3               # share of the original test split that near-duplicates train
    n_series: int = 8                    # recurring accounts among the training posts ...
    series_share: float = 0.4            # ... that post this share of the training posts ...
    series_tags: int = 3                 # ... and this many tags of its own on every post
    near_duplicate_threshold: float = 0.5
    fresh_max_jaccard: float = 0.4

    def check(self) -> None:
        for name in ("p_event", "p_image", "p_composition", "p_combine", "p_scene", "unseen_share", "dup_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must lie in [0, 1]")
        if self.p_image + self.p_composition + self.p_combine > 1.0:
            raise ValueError(f"p_image + p_composition + p_combine = "
                             f"{self.p_image + self.p_composition + self.p_combine} must be at most 1")
        most = len(TOPICS) * (len(COLOURS) // 2)  # three rounds of topics: each keeps three seen colours
        if not 0 <= self.heldout_combos <= most:
            raise ValueError(f"heldout_combos must lie in [0, {most}]")
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
        shaped = self.p_image + self.p_composition + self.p_combine
        per_post = {"present": 1.0 + self.p_event, "text+image": shaped,
                    "image": shaped * self.p_scene, "tag": series * self.series_tags}
        total = sum(per_post.values())
        return {k: v / total for k, v in per_post.items()}


def heldout_pairs(config: SyntheticConfig) -> list[tuple[str, str]]:
    """The held-out (colour, topic) pairs, spread evenly: the topics in turn (a shuffled order),
    each new round of topics taking colours two steps further along a shuffled colour order, so no
    pair repeats, every topic keeps at least one seen colour and every colour seen topics."""
    rng = random.Random(f"{config.seed}-heldout")
    topics = list(TOPICS)
    colours = list(COLOURS)
    rng.shuffle(topics)
    rng.shuffle(colours)
    n = len(topics)
    return [(colours[(j % n + 2 * (j // n)) % len(colours)], topics[j % n]) for j in range(config.heldout_combos)]


def exact_flags(rng: random.Random, n: int, share: float) -> list[bool]:
    """``n`` flags of which exactly ``round(share * n)`` are True, in a random order."""
    k = int(round(share * n))
    flags = [True] * k + [False] * (n - k)
    rng.shuffle(flags)
    return flags


def exact_needs(rng: random.Random, n: int, config: SyntheticConfig) -> list[str]:
    """``n`` post kinds: exactly ``round(p_image * n)`` image, ``round(p_composition * n)``
    composition and ``round(p_combine * n)`` combine posts, the rest text posts, in a random order."""
    n_image, n_comp = int(round(config.p_image * n)), int(round(config.p_composition * n))
    n_comb = int(round(config.p_combine * n))
    labels = (["image"] * n_image + ["composition"] * n_comp + ["combine"] * n_comb
              + ["text"] * (n - n_image - n_comp - n_comb))
    rng.shuffle(labels)
    return labels


def draw_needs(rng: random.Random, config: SyntheticConfig) -> str:
    """One post kind drawn with the configured shares (an account's subject)."""
    u = rng.random()
    return "image" if u < config.p_image else "composition" if u < config.p_image + config.p_composition else "text"


# --------------------------------------------------------------------------------------------
# One post
# --------------------------------------------------------------------------------------------
def compose_text(rng: random.Random, topic: str, event: str | None, series: dict | None = None,
                 tint: str | None = None) -> tuple[str, dict]:
    """A post's text from independently drawn pieces; a series post keeps its series' frame
    (opener, middle, tail) and ends with the series' signature; a combine post names its ``tint``
    (a primary) right after the object ("look at this car in blue ...")."""
    frame = series["frame"] if series else None
    parts = {"opener": frame["opener"] if frame else rng.choice(OPENERS), "topic": topic,
             **({"tint": f"in {tint}"} if tint else {}),
             "middle": frame["middle"] if frame else rng.choice(MIDDLES),
             "event": f"{rng.choice(EVENT_PREPOSITIONS)} {event}" if event else "",
             "tail": frame["tail"] if frame else rng.choice(TAILS),
             "interjection": rng.choice(INTERJECTIONS) if rng.random() < INTERJECTION_RATE else ""}
    if series:
        parts["signature"] = f"{SIGNATURE} {series['name']}"
    return " ".join(p for p in parts.values() if p), parts


def keyphrases_of(truth: dict) -> tuple[list[str], dict[str, str], list[dict]]:
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
        if truth["needs"] == "combine":
            tint, paint = truth["primaries"]
            cues.append({"keyphrase": kp, "kind": "text+image", "text": f"the text names {tint}",
                         "image": f"the {truth['shapes'][0]} in the centre is {paint}",
                         "rule": f"{tint} and {paint} make {colour}"})
        elif truth["needs"] == "composition":
            (left, right), (f_left, f_right) = truth["primaries"], truth["shapes"]
            cues.append({"keyphrase": kp, "kind": "text+image", "text": f"the post is about a {topic}",
                         "image": f"the {f_left} on the left is {left} and the {f_right} on the right is {right}",
                         "rule": f"{left} and {right} make {colour}" if left != right else f"{left} alone stays {colour}"})
        else:
            cues.append({"keyphrase": kp, "kind": "text+image", "text": f"the post is about a {topic}",
                         "image": f"the {truth['shapes'][0]} in the centre is {colour}", "rule": None})
    if scene:
        kps.append(scene)
        kinds[scene] = "image"
        cues.append({"keyphrase": scene, "kind": "image", "text": None,
                     "image": f"the {looks(scene)} background shows {scene}"})
    for tag in truth.get("tags") or ():
        kps.append(tag)
        kinds[tag] = "tag"
        cues.append({"keyphrase": tag, "kind": "tag", "image": None,
                     "text": f"the post is signed '{SIGNATURE} {truth['series']}', an account that tags every post {tag}"})
    return kps, kinds, cues


def make_example(ex_id: str, split: str, text: str, parts: dict, truth: dict, drawing: dict,
                 heldout: bool, seed: int) -> Example:
    kps, kinds, cues = keyphrases_of(truth)
    for kp, kind in kinds.items():  # the rules hold under the evaluator's own presence test
        if present_in_text(kp, text) != (kind == "present"):
            raise AssertionError(f"{ex_id}: keyphrase {kp!r} of kind {kind} vs text {text!r}")
    meta = {"kinds": kinds, "needs": truth["needs"], "truth": dict(truth), "drawing": drawing, "cues": cues,
            "text_parts": parts, "heldout": heldout, "split": split}
    return Example(id=ex_id, text=text, keyphrases=kps, image=None, source=f"synthetic(seed={seed}):{ex_id}",
                   meta=meta)


class Generator:
    """Draws posts from one random stream, in a fixed order (so a seed fixes everything)."""

    def __init__(self, config: SyntheticConfig):
        config.check()
        self.config = config
        self.rng = random.Random(config.seed)
        self.heldout = heldout_pairs(config)
        held = set(self.heldout)
        self.seen_colours = {t: [c for c in COLOURS if (c, t) not in held] for t in TOPICS}
        self.train_shingles: list[frozenset] = []
        self._posting: dict[tuple, list[int]] = {}  # shingle -> the training texts that have it
        self.series = self._draw_series()

    def _draw_series(self) -> list[dict]:
        """The recurring accounts: a name, tags of their own, one subject (topic, kind of post,
        shapes, scene) and one text frame each. Their posts differ only in the event, an
        interjection and the image's jitter, so they are near-duplicates of one another."""
        rng, cfg = self.rng, self.config
        names = rng.sample(SERIES_NAMES, cfg.n_series)
        tags = rng.sample(TAGS, cfg.n_series * cfg.series_tags)
        series = []
        for k, name in enumerate(names):
            truth = self.truth(draw_needs(rng, cfg), heldout=False)
            truth.update(event=None, series=name, tags=tags[k * cfg.series_tags:(k + 1) * cfg.series_tags])
            frame = {"opener": rng.choice(OPENERS), "middle": rng.choice(MIDDLES), "tail": rng.choice(TAILS)}
            series.append({"name": name, "tags": truth["tags"], "truth": truth, "frame": frame, "first": None})
        return series

    def truth(self, needs: str, heldout: bool) -> dict:
        """What a post is about: its topic and event, what it needs, and the object's colour: for
        an image post the colour of its one shape, for a composition post the colour its two
        shapes' primaries make (a held-out pair when ``heldout``; only composition posts get one); for
        a combine post the mix of the primary its text names and its one shape's primary (the same
        one twice gives that primary, so the text's word alone never settles the colour, nor the
        shape alone), on a seen colour x object pair."""
        rng, cfg = self.rng, self.config
        if needs == "combine":
            tint, paint = rng.choice(list(PRIMARIES)), rng.choice(list(PRIMARIES))
            colour = mix(tint, paint)
            topic = rng.choice([t for t in TOPICS if colour in self.seen_colours[t]])
        elif needs == "composition" and heldout and self.heldout:
            colour, topic = rng.choice(self.heldout)
        else:
            topic = rng.choice(TOPICS)
            colour = rng.choice(self.seen_colours[topic]) if needs != "text" else None
        event = rng.choice(EVENTS) if rng.random() < cfg.p_event else None
        truth = {"topic": topic, "event": event, "needs": needs, "colour": colour, "primaries": None,
                 "shapes": None, "scene": None, "series": None, "tags": []}
        if needs != "text":
            truth["shapes"] = [rng.choice(SHAPES) for _ in (SIDES if needs == "composition" else ("centre",))]
            truth["scene"] = rng.choice(list(SCENES)) if rng.random() < cfg.p_scene else None
        if needs == "composition":
            truth["primaries"] = list(rng.choice(pairs_for(colour)))
            assert mix(*truth["primaries"]) == colour
        if needs == "combine":  # [the text's primary, the shape's primary]
            truth["primaries"] = [tint, paint]
        return truth

    def series_post(self, ex_id: str, series: dict) -> Example:
        """A training post of a series: its subject and frame, a fresh event and interjection,
        within near-duplicate distance of the series' first post."""
        rng, cfg = self.rng, self.config
        truth = dict(series["truth"])
        for _ in range(50):
            truth["event"] = rng.choice(EVENTS) if rng.random() < cfg.p_event else None
            text, parts = compose_text(rng, truth["topic"], truth["event"], series)
            if series["first"] is None or jaccard(shingles(text), series["first"]) >= cfg.near_duplicate_threshold:
                break
        else:  # (rare) the first post's own text again: an exact duplicate, as reposts are
            truth["event"] = series["first_event"]
            parts = dict(series["first_parts"])
            text = " ".join(p for p in parts.values() if p)
        if series["first"] is None:
            series.update(first=shingles(text), first_parts=parts, first_event=truth["event"])
        drawing = draw_plan(rng, truth, cfg.image_size)
        ex = make_example(ex_id, "train", text, parts, truth, drawing, False, cfg.seed)
        self._add_train(shingles(text))
        return ex

    def _add_train(self, sh: frozenset) -> None:
        for g in sh:
            self._posting.setdefault(g, []).append(len(self.train_shingles))
        self.train_shingles.append(sh)

    def _unlike_train(self, sh: frozenset) -> bool:
        """Whether ``sh`` has Jaccard below ``fresh_max_jaccard`` with every training text: only
        texts sharing a shingle can reach it, so they are counted through an inverted index (the
        same value as :func:`mmkp_helpers.text.jaccard`, |a & b| / |a | b|, in a fraction of the time)."""
        shared: dict[int, int] = {}
        for g in sh:
            for i in self._posting.get(g, ()):
                shared[i] = shared.get(i, 0) + 1
        limit = self.config.fresh_max_jaccard
        train = self.train_shingles
        return all(n / (len(sh) + len(train[i]) - n) < limit for i, n in shared.items())

    def post(self, ex_id: str, split: str, needs: str, heldout: bool = False) -> Example:
        """A new post; fresh ones (valid/test) keep away from every training text."""
        fresh = split != "train"
        truth = self.truth(needs, heldout)
        for _ in range(200):
            text, parts = compose_text(self.rng, truth["topic"], truth["event"],
                                       tint=truth["primaries"][0] if needs == "combine" else None)
            if not fresh:
                break
            sh = shingles(text)
            if self._unlike_train(sh):
                break
        else:
            raise RuntimeError(f"could not draw a text for {ex_id} unlike every training post; "
                               "lower n_train or raise fresh_max_jaccard")
        drawing = draw_plan(self.rng, truth, self.config.image_size)
        ex = make_example(ex_id, split, text, parts, truth, drawing, heldout and needs == "composition",
                          self.config.seed)
        if split == "train":
            self._add_train(shingles(text))
        return ex

    def fresh_split(self, prefix: str, split: str, n: int) -> list[Example]:
        """``n`` fresh posts of exactly the configured kinds (:func:`exact_needs`), exactly
        ``unseen_share`` of the composition posts on a held-out colour x object pair."""
        needs = exact_needs(self.rng, n, self.config)
        held = iter(exact_flags(self.rng, needs.count("composition"), self.config.unseen_share))
        return [self.post(f"{prefix}-{i:04d}", split, kind, next(held) if kind == "composition" else False)
                for i, kind in enumerate(needs, 1)]

    def near_duplicate(self, ex_id: str, original: Example) -> Example:
        """A light edit of a training post: a synonym swap and/or an interjection changed.

        The copy keeps the original's truth, keyphrases and ``text_parts`` (those describe the
        original text); ``meta["edit"]`` lists what was changed; the picture is redrawn with fresh
        jitter."""
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
        drawing = draw_plan(rng, truth, self.config.image_size)
        ex = make_example(ex_id, "test", text, dict(original.meta["text_parts"]), truth, drawing,
                          False, self.config.seed)
        ex.meta["near_duplicate_of"] = original.id
        ex.meta["edit"] = edits
        return ex


def generate(seed: int = 0, n_train: int = 600, n_valid: int = 100, n_test: int = 550,
             image_size: tuple[int, int] = (112, 112), **options) -> dict[str, list[Example]]:
    """The benchmark in memory: ``{"train", "valid", "test", "test_clean"}`` -> examples.

    ``test`` is the original variant (with near-duplicates of training posts), ``test_clean`` the
    variant without. Images are not drawn here: ``image`` is None and ``meta["drawing"]`` says
    what :func:`render_image` will draw. ``options`` are the other :class:`SyntheticConfig`
    fields (``p_event``, ``p_image``, ``p_composition``, ``p_scene``, ``heldout_combos``, ``unseen_share``,
    ``dup_share``, ...)."""
    config = SyntheticConfig(seed=seed, n_train=n_train, n_valid=n_valid, n_test=n_test,
                             image_size=tuple(image_size), **options)
    return generate_from(config)


def generate_from(config: SyntheticConfig) -> dict[str, list[Example]]:
    gen = Generator(config)
    slots = [s for s in gen.series for _ in range(config.series_size)]
    slots += [None] * (config.n_train - len(slots))
    gen.rng.shuffle(slots)
    needs = iter(exact_needs(gen.rng, slots.count(None), config))
    train = [gen.series_post(f"syn-train-{i:04d}", s) if s else
             gen.post(f"syn-train-{i:04d}", "train", next(needs)) for i, s in enumerate(slots, 1)]
    valid = gen.fresh_split("syn-valid", "valid", config.n_valid)
    fresh = gen.fresh_split("syn-test", "test", config.n_test)
    n_dup = round(config.dup_share * config.n_test)
    sources = gen.rng.sample(train, n_dup)
    dups = [gen.near_duplicate(f"syn-testdup-{i:04d}", src) for i, src in enumerate(sources, 1)]
    original = fresh[:config.n_test - n_dup] + dups
    gen.rng.shuffle(original)
    return {"train": train, "valid": valid, "test": original, "test_clean": fresh}
