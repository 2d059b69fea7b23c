"""A synthetic multi-modal keyphrase benchmark, small enough for a CPU, where the image matters and
some posts need a step of reasoning.

Why a synthetic benchmark? The real CMKP images are not public, and a tiny Qwen2-VL trained for a
few minutes on a CPU cannot learn real tweets. This generator makes posts whose keyphrases follow
simple, known rules, draws a real picture for each (PIL, PNG), and keeps the ground truth, so that
every question of the paper can be asked on a laptop: does fine-tuning beat zero-shot, does the
image help, does a rationale help, when is reasoning worth its tokens, and how much do
train/test near-duplicates inflate the scores?

**A post.** Each post is about one *topic* object (``car``, ``bike``, ... 10 of them), sometimes at
an *event* (``party``, ``trip``, ... 5). Its text is a short lower-case sentence (at most 20
words, 22 with an account's signature) glued from independently drawn pieces::

    <opener> <topic> [<middle>] [<preposition> <event>] <tail> [<interjection>] [via <account>]
    "just got a new car on the way home ready for the party so happy right now"

**Three kinds of post** (``meta["needs"]``; exact shares of every split: 40% text, 35% image,
25% composition posts). The input shows which kind a post is, so a model can learn when to reason:

- a **text post** has a plain grey picture: every keyphrase is in its text (``car``, ``party``);
  reasoning has nothing to add;
- an **image post** has one large shape in the centre (a square or a circle; the form carries no
  meaning), painted in one of six colours, mostly on a coloured background. One look at the
  picture adds the *object's colour* with the object (``red car``: the shape's colour and the
  topic word) and the *scene* of the background (dark blue = ``night``, white = ``snow``, dark
  green = ``forest``, beige = ``sand``, teal = ``sea``, black = ``space``; grey = no scene);
- a **composition post** has two shapes side by side, each painted in a primary (red, blue or
  yellow), and the object's colour follows a rule: it is the mix of the two (red + blue =
  purple, red + yellow = orange, blue + yellow = green; two shapes of one primary keep it). Its
  colour keyphrase (``purple car``) needs several pieces of evidence (two shapes, the object in
  the text) and a rule applied: the step a direct answer tends to get wrong, and a rationale
  spells out.

**A fourth kind for studies, off by default** (``p_combine``; :data:`COMBINE`): a **combine
post** names a primary in its text, right after the object ("look at this car in blue ..."), has
one shape in the centre painted in a primary too, and the object's colour is their mix (blue and
yellow make ``green car``; blue twice stays ``blue car``). Each step it needs is one other posts
train (copy a word of the text, read one shape, apply the composition posts' rule), so with a
mix's combine posts held out of fine-tuning (``heldout_combines`` in
:mod:`mmkp_helpers.bench.cot_seeds`) it asks whether a chain of trained steps reaches what a direct
answer never saw (:mod:`mmkp_helpers.bench.combine_probe`). With ``p_combine`` 0 (the default)
the generator draws exactly the posts it drew before the kind existed.

**Its keyphrases**, in this order, with their *kind* in ``meta["kinds"]``:

=============  ================  ===============================================================
keyphrase      kind              rule
=============  ================  ===============================================================
``car``        ``present``       the topic word, always, verbatim in the text
``party``      ``present``       the event word, when the text names an event
``red car``    ``text+image``    image and composition posts: the object's colour + the topic
``night``      ``image``         image and composition posts: the scene of the background
``travel``     ``tag``           a tag of the account that posted it (series posts only, below):
                                 no rule gives it, only having seen the account's posts
=============  ================  ===============================================================

No scene or colour word ever appears in a text (but a combine post's primary, above). A text-only model gets the present keyphrases and
must guess a colour (1 in 6) and a scene; an image-only model cannot name the topic.

**Series (recurring accounts).** Much of Twitter's overlap comes from accounts that post the same
kind of message again and again (shops, bots, fan pages) with hashtags of their own. ``n_series``
accounts (default 8) share ``series_share`` of the training posts (default 40%: 30 posts each of
the 600), all alike within an account: one subject (topic, kind of post, shapes, scene), one text
frame ending in the account's signature (``... via maple``), a fresh event and interjection per
post, and ``series_tags`` tags (default 3) that no other account uses. An account's posts are
near-duplicates of one another. A model can learn an account's tags only by memorising its posts;
on a post of an account it never saw, the tags are unseen and no rule recovers them.

**Unseen keyphrases.** Half the colour x topic pairs (``heldout_combos``, default 30 of 60: three of each
object's six colours) never occur in training, so a direct answer cannot lean on the colours an
object usually has. In valid and test, exactly ``unseen_share`` (90%) of the composition posts use a
held-out pair: the keyphrase (``green car``) was never seen, but both of its words were (image
and text posts never use a held-out pair, so every unseen colour x object keyphrase is one
reached through the mixing rule).

**Original and clean test splits.** CMKP's test set shares near-duplicate posts with its training
set, which inflates scores. ``test`` (the "original" variant) mimics that: ``dup_share`` (default
30%) of its posts are light edits of training posts (one word swapped for a synonym and/or an
interjection added or removed; the same picture redrawn with fresh jitter) with the same
keyphrases. ``test_clean`` has the same size and no near-duplicate: every fresh (valid or test)
post's text is drawn until its word-bigram Jaccard similarity with every training post is below
``fresh_max_jaccard`` (0.4), while a near-duplicate is >= ``near_duplicate_threshold`` (0.5).

**Ground truth for teachers.** ``meta`` keeps what is drawn (``drawing``), what it means
(``truth``: topic, event, needs, the shapes, the object's colour and, for a composition post,
the primaries that make it, scene, account, tags), which cue gives which keyphrase (``cues``: the text and/or image evidence and,
for the colour, the rule), whether the pair was held out (``heldout``) and, for a near-duplicate,
the training post it copies (``near_duplicate_of``) and the edit. An offline teacher writes a
faithful rationale from it without looking at pixels; :func:`caption` describes a picture
plainly (the tiny base's pretraining reads such captions).

**Files** (:func:`make_synthetic`): ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` (original),
``test_clean.jsonl``, ``train_keyphrases.txt``, ``images/<id>.png`` and ``manifest.json``
(parameters, counts per split and per kind of post, share of each keyphrase kind, unseen and
overlap figures). The same seed and parameters give byte-identical files. All keyphrase words are
single tokens of the Qwen vocabulary, with and without a leading space.
"""
from .drawing import caption, draw_plan, render_image
from .files import (VERSION, kind_shares, make_synthetic, manifest, near_duplicate_stats, needs_counts,
                    unseen_stats)
from .generator import (SyntheticConfig, compose_text, generate, generate_from, heldout_pairs, keyphrases_of,
                        shingles)
from .vocabulary import (COLOUR_RGB, COLOURS, COMBINE, EVENTS, KINDS, MIXES, NEEDS, NO_SCENE, PRIMARIES, SCENES,
                         SERIES_NAMES, SHAPES, SIDES, SIGNATURE, TAGS, TOPICS, mix, pairs_for)

__all__ = ["COLOUR_RGB", "COMBINE", "caption", "draw_plan", "render_image", "VERSION", "kind_shares", "make_synthetic",
           "manifest", "near_duplicate_stats", "needs_counts", "unseen_stats", "SyntheticConfig", "compose_text",
           "generate", "generate_from", "heldout_pairs", "keyphrases_of", "shingles", "COLOURS", "EVENTS", "KINDS",
           "MIXES", "NEEDS", "NO_SCENE", "PRIMARIES", "SCENES", "SERIES_NAMES", "SHAPES", "SIDES", "SIGNATURE", "TAGS",
           "TOPICS", "mix", "pairs_for"]
