"""Constants shared by the overlap modules, and two formatting helpers."""
from __future__ import annotations


NGRAM = 2                  # word n-grams (shingles)
THRESHOLD = 0.5            # Jaccard similarity from which two posts are near-duplicates
NUM_PERM = 128             # MinHash permutations offered to the band optimiser
MINHASH_SEED = 1           # datasketch's default seed
LSH_WEIGHTS = (0.05, 0.95)  # (false positive, false negative) weights for choosing bands x rows
IMAGE_MAX_DISTANCE = 6     # pHash Hamming distance up to which two images are duplicates
EXACT_MAX_PAIRS = 60_000_000  # pair-occurrences the exhaustive method may generate
METHODS = ("lsh", "datasketch", "exact", "auto")


def _share(part: int | float, whole: int | float) -> float:
    return round(part / whole, 6) if whole else 0.0


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"
