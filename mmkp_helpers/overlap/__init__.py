"""Train/test overlap: keyphrases, texts (exact and near-duplicate), images; the de-overlapped split.

The paper's first finding is that multi-modal keyphrase benchmarks overstate models because their
training and test posts overlap. This package measures that overlap and builds splits without it.
Every name below is importable from ``mmkp_helpers.overlap``; the modules follow its concerns:

==================  ================================================================================
module              what it owns
==================  ================================================================================
``common``          the defaults (``THRESHOLD``, ``NGRAM``, ``NUM_PERM``, ``METHODS``, ...)
``keyphrases``      keyphrase overlap (exact and stemmed), present/absent rates, seen/unseen labels
``shingles``        text normalisation, shingle sets, :class:`TextSets` (exact duplicates, batched
                    MinHash signatures, vectorised Jaccard)
``arrays``          the numpy primitives the text search is built from
``lsh``             MinHash-LSH banding (numpy, or datasketch's MinHashLSH) and its parameters
``search``          near-duplicate pairs (``lsh``/``datasketch``/``exact``/``auto``), brute force,
                    clusters
``texts``           train/test text overlap, nearest similarity
``images``          pHash image overlap
``report``          the whole report and its text form
``splits``          random split, clean split builder, split figures, split files
``prepare``         the splits the notebooks read (``prepare_splits``, the manifest)
``samples``         samples with known near-duplicates and recall against the truth
``cli``             ``mmkp-overlap`` (:func:`main`; also ``python -m mmkp_helpers.overlap``)
==================  ================================================================================

**Keyphrase overlap** (:func:`keyphrase_overlap`). For the test keyphrase *occurrences* (a keyphrase
of a post; the same keyphrase on two posts counts twice), the *distinct* test keyphrases and the
test *posts*: which share is seen among the training targets. Two matchings: ``exact`` (lower-cased,
whitespace-normalised strings; CMKP's targets are already lower-case) and ``stemmed`` (the
evaluator's Porter stems, :func:`mmkp_helpers.text.stem_phrase`). The training side may be examples
or a keyphrase list (CMKP ships ``train_keyphrases.txt``; its training texts are not public).
:func:`present_absent` gives the evaluator's present/absent rates of a split.

**Text overlap** (:func:`text_overlap`, :func:`near_duplicate_pairs`, :func:`near_duplicate_clusters`).
A text is *normalised* (:func:`normalize_tokens`: lower case; URLs, ``@mentions``, ``rt``, CMKP's
``<url>``/``<user>`` dropped; punctuation stripped from token ends; punctuation-only tokens dropped).
Two posts are *exact duplicates* when their normalised token sequences are equal, and
*near-duplicates* when the Jaccard similarity of their sets of word n-grams (shingles, default
bigrams, as the synthetic benchmark uses) is at least a threshold (default 0.5). Texts that
normalise to nothing take part in neither. Near-duplicates are found by MinHash-LSH (numpy
signatures and banding, confirmed by exact Jaccard; see :mod:`mmkp_helpers.overlap.lsh`), by
datasketch's MinHashLSH, or exhaustively through an inverted index (``method="exact"``).

**Image overlap** (:func:`image_overlap`): perceptual hashes (``imagehash.phash``, 64 bits); two
images are duplicates when the Hamming distance of their hashes is at most ``max_distance``
(default 6): resizing, re-encoding and small edits keep the hash, a different picture changes it.

**Splits** (:func:`build_clean_split`, :func:`random_split`, :func:`prepare_splits`). The clean
split puts every near-duplicate cluster (connected component of the near-duplicate graph, found
with ``method="auto"``, so exactly whenever the pool allows) wholly into one part, and steers the
share of unseen test keyphrase occurrences to the requested one: it holds keyphrases out of
training (every post carrying one goes to valid or test) or, when a plain cut leaves too many
unseen (a small pool has many rare keyphrases), keeps the rarest in training. The random split
("original") cuts the same pool into parts of the same sizes, keeping whatever overlap falls
across. :func:`prepare_splits` writes both, with a manifest of their overlap figures, under
``<results_dir>/data/splits/<dataset>/`` and does nothing when the manifest already matches.

**CLI** (:func:`main`, ``mmkp-overlap``)::

    mmkp-overlap --train TRAIN --test TEST [--json] [--threshold 0.5] [--method lsh|exact|auto]

TRAIN/TEST: our JSONL, a CMKP ``*_src.txt``, or a folder with ``--train-split``/``--test-split``
(CMKP layout or ``{split}.jsonl``). A TRAIN ending in ``.txt`` but not ``_src.txt`` is a keyphrase
list (one a line): only the keyphrase overlap is reported then.
"""
from __future__ import annotations

# Names the single-module ``overlap`` imported and callers reach through it (e.g. ``overlap.jaccard``).
from ..data import Example, load_examples, read_keyphrase_list, train_keyphrases, write_jsonl
from ..text import is_present, jaccard, stem_phrase, stem_text, word_shingles
from .cli import main
from .common import (EXACT_MAX_PAIRS, IMAGE_MAX_DISTANCE, LSH_WEIGHTS, METHODS, MINHASH_SEED, NGRAM, NUM_PERM,
                     THRESHOLD)
from .images import image_hash, image_overlap
from .keyphrases import keyphrase_labels, keyphrase_overlap, normalize_keyphrase, present_absent
from .lsh import _datasketch_candidates, _lsh_candidates, candidate_probability, lsh_params
from .prepare import (DATASETS, SPLITS_VERSION, TEST_SHARE, UNSEEN_SHARE, VARIANTS, _reachable_unseen, prepare_splits,
                      read_manifest, splits_dir)
from .report import format_report, overlap_report
from .samples import edited_copies, recall
from .search import (Pairs, RepPairs, brute_force_pairs, find_rep_pairs, near_duplicate_clusters,
                     near_duplicate_pairs)
from .shingles import TextSets, normalize_text, normalize_token, normalize_tokens, shingle_set
from .splits import _sizes, build_clean_split, random_split, split_figures, write_split
from .texts import nearest_similarity, text_overlap

__all__ = [
    # defaults
    "EXACT_MAX_PAIRS", "IMAGE_MAX_DISTANCE", "LSH_WEIGHTS", "METHODS", "MINHASH_SEED", "NGRAM", "NUM_PERM",
    "THRESHOLD",
    # keyphrases
    "keyphrase_labels", "keyphrase_overlap", "normalize_keyphrase", "present_absent",
    # texts: normalisation, shingles, MinHash-LSH, search, train/test overlap
    "TextSets", "normalize_text", "normalize_token", "normalize_tokens", "shingle_set",
    "candidate_probability", "lsh_params",
    "Pairs", "RepPairs", "brute_force_pairs", "find_rep_pairs", "near_duplicate_clusters", "near_duplicate_pairs",
    "nearest_similarity", "text_overlap",
    # images, report
    "image_hash", "image_overlap", "format_report", "overlap_report",
    # splits
    "build_clean_split", "random_split", "split_figures", "write_split",
    "DATASETS", "SPLITS_VERSION", "TEST_SHARE", "UNSEEN_SHARE", "VARIANTS", "prepare_splits", "read_manifest", "splits_dir",
    # recall samples, CLI
    "edited_copies", "recall", "main",
]
