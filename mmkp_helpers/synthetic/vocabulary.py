"""The synthetic benchmark's closed language: objects, events, colours and the mixing rule, scenes,
the text pieces posts are glued from, accounts and their tags."""
from __future__ import annotations

TOPICS = ("car", "bike", "boat", "bus", "hat", "shirt", "dress", "bag", "cup", "lamp")
EVENTS = ("birthday", "holiday", "party", "trip", "match")
#: The rule of a composition post: the object's colour is the mix of its two shapes' colours
#: (unordered pair of primaries -> colour name). Two shapes of one primary give that primary.
MIXES = {
    frozenset(["red"]): "red", frozenset(["blue"]): "blue", frozenset(["yellow"]): "yellow",
    frozenset(["red", "blue"]): "purple", frozenset(["red", "yellow"]): "orange",
    frozenset(["blue", "yellow"]): "green",
}
#: Every colour a keyphrase can name, in a fixed order (each is the mix of exactly one pair), with
#: the RGB an image post's single shape is painted in.
COLOUR_RGB = {"red": (214, 39, 40), "blue": (31, 90, 220), "yellow": (245, 205, 30),
              "purple": (140, 60, 180), "orange": (250, 140, 10), "green": (44, 170, 60)}
COLOURS = tuple(COLOUR_RGB)
#: The colours a composition post's shapes are painted in: the three primaries.
PRIMARIES = {c: COLOUR_RGB[c] for c in ("red", "blue", "yellow")}
#: Scenes (the background): name -> (RGB, how the colour is described in a rationale or caption).
SCENES = {
    "night": ((18, 22, 60), "dark blue"), "snow": ((238, 240, 246), "white"),
    "forest": ((22, 80, 38), "dark green"), "sand": ((222, 196, 140), "beige"),
    "sea": ((20, 130, 150), "teal"), "space": ((14, 14, 14), "black"),
}
NO_SCENE = ((128, 128, 128), "grey")
SHAPES = ("square", "circle")
SIDES = ("left", "right")
#: What a post needs to be answered (``meta["needs"]``): ``text`` posts have a plain grey picture
#: and only keyphrases their text names; ``image`` posts add what one look at the picture gives
#: (the colour of its one shape, the scene); ``composition`` posts have two shapes whose colours
#: mix by a rule into the object's colour (several pieces of evidence and a rule).
NEEDS = ("text", "image", "composition")
#: A study's kind, off by default (``p_combine``): the text names a primary ("a car in blue"), the
#: picture's one shape is a primary too (the same or another), and the object's colour is their
#: mix: a text word and the picture combined by the composition posts' rule, so that a held-out
#: mix of it can be reached by chaining steps each trained elsewhere (read the word, read the
#: shape, apply the rule).
COMBINE = "combine"


def mix(left: str, right: str) -> str:
    """The colour two primaries make (:data:`MIXES`)."""
    return MIXES[frozenset([left, right])]


def pairs_for(colour: str) -> list[tuple[str, str]]:
    """The ordered (left, right) primary pairs whose mix is ``colour``."""
    return [(a, b) for a in PRIMARIES for b in PRIMARIES if mix(a, b) == colour]


# Text pieces. None of their words is a topic, event, colour or scene word (checked by
# check_vocabulary), so a keyphrase's kind is exactly what the rules say.
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


def check_vocabulary() -> None:
    """Fail loudly if a filler word could turn a keyphrase into a present one, or the rule is not
    one-to-one (every colour the mix of exactly one pair of primaries)."""
    from ..text import stem_token as stem

    keywords = set(TOPICS) | set(EVENTS) | set(COLOURS) | set(SCENES) | set(TAGS)
    fillers = " ".join(OPENERS + MIDDLES + EVENT_PREPOSITIONS + TAILS + INTERJECTIONS + SERIES_NAMES
                       + (SIGNATURE,) + tuple(SYNONYMS.values())).split()
    clash = {stem(w) for w in keywords} & {stem(w) for w in fillers}
    if clash:
        raise AssertionError(f"filler words clash with keyphrase words: {sorted(clash)}")
    if len(set(TAGS)) != len(TAGS) or len(set(SERIES_NAMES)) != len(SERIES_NAMES):
        raise AssertionError("tags and series names must be distinct")
    if sorted(MIXES.values()) != sorted(COLOURS) or len(set(MIXES.values())) != len(MIXES):
        raise AssertionError("every colour must be the mix of exactly one pair of primaries")


check_vocabulary()
