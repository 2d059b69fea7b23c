"""Small text utilities shared by the data loaders, the evaluator and the overlap analysis.

Everything here follows the upstream CMKP evaluator (``unified_model/metric_utils.py`` and
``pred_evaluate_func.py`` of yuewang-cuhk/CMKP), so that "the same keyphrase" and "present in the
post" mean exactly what they mean in the published numbers:

- **tokens**: a text is split on whitespace, and every token is lower-cased. No punctuation
  handling: CMKP texts are already tokenised (``i love it .``), and the evaluator does nothing
  more. Nothing here needs NLTK data files.
- **stems**: each token goes through NLTK's Porter stemmer (``nltk.stem.porter.PorterStemmer``,
  NLTK's default ``NLTK_EXTENSIONS`` mode; the project pins the NLTK version because stemmer
  rules change between releases). Stems are cached per token, which is what makes scoring the
  5,372 CMKP test posts take a fraction of a second.
- **present**: a stemmed keyphrase is present when its stem sequence occurs contiguously in the
  stemmed text; an empty keyphrase is never present.

A stemmed phrase is a ``tuple`` of stems (hashable, so it can key sets and dicts).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from nltk.stem.porter import PorterStemmer

_STEMMER = PorterStemmer()
# token -> stem. A plain dict (not lru_cache) because it sits in the evaluator's innermost loop.
_STEM_CACHE: dict[str, str] = {}


def tokenize(text: str) -> list[str]:
    """Lower-cased whitespace tokens, as the CMKP evaluator splits a post or a keyphrase."""
    return text.lower().split()


def stem_token(token: str) -> str:
    """The Porter stem of one lower-cased token (cached)."""
    stem = _STEM_CACHE.get(token)
    if stem is None:
        stem = _STEMMER.stem(token.lower())
        _STEM_CACHE[token] = stem
    return stem


def stem_tokens(tokens: Iterable[str]) -> tuple[str, ...]:
    """Stems of a token sequence, as a tuple."""
    cache = _STEM_CACHE
    out = []
    for token in tokens:
        stem = cache.get(token)
        if stem is None:
            stem = stem_token(token)
        out.append(stem)
    return tuple(out)


@lru_cache(maxsize=200_000)
def stem_phrase(phrase: str) -> tuple[str, ...]:
    """Stems of a keyphrase string (cached per string); ``()`` for an empty or blank phrase."""
    return stem_tokens(tokenize(phrase))


def stem_text(text: str) -> tuple[str, ...]:
    """Stems of a whole post text (not cached as a whole: texts rarely repeat; tokens do)."""
    return stem_tokens(tokenize(text))


def phrase_key(stemmed: Sequence[str]) -> str:
    """A readable string key of a stemmed phrase (stems joined by one space)."""
    return " ".join(stemmed)


def is_present(stemmed_phrase: Sequence[str], stemmed_text: Sequence[str]) -> bool:
    """Whether ``stemmed_phrase`` occurs contiguously in ``stemmed_text`` (both stem sequences).

    An empty phrase is never present (as in the CMKP evaluator)."""
    n = len(stemmed_phrase)
    if n == 0 or n > len(stemmed_text):
        return False
    first = stemmed_phrase[0]
    if n == 1:
        return first in stemmed_text
    phrase = tuple(stemmed_phrase)
    text = tuple(stemmed_text)
    for start in range(len(text) - n + 1):
        if text[start] == first and text[start:start + n] == phrase:
            return True
    return False


def present_in_text(phrase: str, text: str) -> bool:
    """Convenience: is the keyphrase string present in the text string (after stemming)?"""
    return is_present(stem_phrase(phrase), stem_text(text))


def clear_caches() -> None:
    """Forget every cached stem (for memory measurements; never needed for correctness)."""
    _STEM_CACHE.clear()
    stem_phrase.cache_clear()


def word_shingles(tokens: Sequence[str], n: int = 2) -> frozenset:
    """The set of word n-grams of a token list, as tuples: the whole token tuple when there are
    fewer than n tokens, and the empty set for no tokens. Near-duplicate texts share most of them."""
    if not tokens:
        return frozenset()
    if len(tokens) < n:
        return frozenset({tuple(tokens)})
    return frozenset(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0

