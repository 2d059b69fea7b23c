"""What a teacher run will cost before it is made, and what each estimate assumes.

**Input tokens**: the rendered requests of a sample of examples counted with tiktoken
``o200k_base`` (see :mod:`.tokens` for the offline fallback) plus each image's tokens by OpenAI's
rule, averaged and multiplied by the number of requests.

**Output tokens**, the larger share of the price per token and the one nobody knows in advance,
come from the first of these that exists, and the estimate names it (``output_tokens_source``):

1. ``output_tokens`` given by the caller;
2. *measured*: the mean output length of the answers already in the teacher's cache
   (``cache_dir``), e.g. those of a pilot: a few real requests made with
   :func:`~mmkp_helpers.teacher.pilot_run`, whose answers stay in the cache and are not paid twice;
3. the teacher's ``max_tokens``: an upper bound (a kept rationale is usually a tenth of it).

``max_tokens`` is always reported beside as the upper bound (``cost_usd_upper_bound``), and the
price at the Batch API's discount (``cost_usd_batch``) beside the live price.
"""
from __future__ import annotations

import os
import random
from typing import Iterable, Sequence

from ..data import Example
from .base import TeacherAnswer
from .cache import cache_paths, load_cache
from .tokens import count_text_tokens, image_size, messages_tokens, text_counter

#: Output tokens per request assumed when a teacher has no ``max_tokens`` (offline teachers).
DEFAULT_OUTPUT_TOKENS = 512
#: What the OpenAI Batch API charges relative to live calls (half price, results within 24 h).
BATCH_DISCOUNT = 0.5


def cost_usd(input_tokens: float, output_tokens: float, prices, discount: float = 1.0) -> tuple[float, float] | None:
    """(input cost, output cost) in USD at ``prices=(usd per million input, usd per million
    output)`` times ``discount``; None without prices."""
    if prices is None:
        return None
    usd_in, usd_out = (float(p) for p in prices)
    return input_tokens * usd_in / 1e6 * discount, output_tokens * usd_out / 1e6 * discount


def priced_as(teacher) -> str:
    """"paid" (an API teacher), "as if paid" (an offline teacher counting its tokens, priced at
    the prices given, hypothetically) or "free"."""
    if getattr(teacher, "paid", True):
        return "paid"
    return "as if paid" if getattr(teacher, "count_tokens", False) else "free"


def answer_output_tokens(answer: TeacherAnswer) -> int:
    """An answer's output tokens: the API's count, else its text counted (offline answers)."""
    if answer.output_tokens:
        return int(answer.output_tokens)
    return count_text_tokens(answer.raw) if answer.raw else 0


def measured_output_tokens(answers: Iterable[TeacherAnswer]) -> tuple[float | None, int]:
    """(mean output tokens, number of answers measured) over answers that have text or tokens."""
    lengths = [answer_output_tokens(a) for a in answers if a.output_tokens or a.raw]
    return (sum(lengths) / len(lengths), len(lengths)) if lengths else (None, 0)


def estimate_run(teacher, examples: Sequence[Example], prices=None, sample: int | None = 20,
                 output_tokens: float | None = None, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None) -> dict:
    """What a run of ``teacher`` over ``examples`` would cost (see the module docstring).

    ``sample``: examples whose requests are rendered and counted (drawn with ``seed``; all of them
    when None or not smaller). ``prices=(usd per million input tokens, usd per million output
    tokens)`` gives the costs (None without prices; 0 for an offline teacher unless it counts its
    tokens, then priced "as if paid"). With ``cache_dir`` the output length is measured on the
    teacher's cached answers when there are any, and ``cached`` / ``to_send`` /
    ``cost_usd_to_send`` say what a run would still send."""
    examples = list(examples)
    n = len(examples)
    if sample is not None and sample < 1:
        raise ValueError(f"sample={sample} must be >= 1 (or None for all)")
    if sample is None or sample >= n:
        picked = examples
    else:
        picked = [examples[i] for i in sorted(random.Random(seed).sample(range(n), sample))]
    detail = getattr(teacher, "image_detail", "low")
    text_tokens, image_tok = [], []
    for ex in picked:
        sizes = [image_size(ex.image)] if ex.image is not None and detail != "low" else None
        t, i = messages_tokens(teacher.messages(ex, image_data=False), detail, sizes)
        text_tokens.append(t)
        image_tok.append(i)
    per_text = sum(text_tokens) / len(picked) if picked else 0.0
    per_image = sum(image_tok) / len(picked) if picked else 0.0

    cached = load_cache(cache_paths(teacher, cache_dir)[0], repair=False) if cache_dir is not None else {}
    upper = getattr(teacher, "max_tokens", None) or DEFAULT_OUTPUT_TOKENS
    measured, n_measured = measured_output_tokens(cached.values())
    if output_tokens is not None:
        per_out, source = float(output_tokens), f"given: {output_tokens:g} a request"
    elif measured is not None:
        per_out = measured
        source = f"measured: mean of the {n_measured} answers in the cache ({measured:.1f} a request)"
    else:
        per_out = float(upper)
        source = f"max_tokens: {upper} a request, an upper bound (no answer measured yet)"
    input_total = round((per_text + per_image) * n)
    output_total = round(per_out * n)
    kind = priced_as(teacher)

    def price(n_in, n_out, discount=1.0):
        if kind == "free":
            return 0.0
        c = cost_usd(n_in, n_out, prices, discount)
        return None if c is None else c[0] + c[1]

    c = cost_usd(input_total, output_total, prices) if kind != "free" else (0.0, 0.0)
    to_send = [ex for ex in examples if ex.id not in cached]
    per_in = per_text + per_image
    return {
        "teacher": teacher.cache_key(), "requests": n, "sampled": len(picked), "tokenizer": text_counter()[1],
        "image_detail": detail, "text_tokens_per_request": round(per_text, 1),
        "image_tokens_per_request": round(per_image, 1), "input_tokens_per_request": round(per_in, 1),
        "output_tokens_per_request": round(per_out, 1) if per_out != int(per_out) else int(per_out),
        "output_tokens_source": source, "output_tokens_measured_on": n_measured,
        "output_tokens_upper_bound": int(upper), "input_tokens": input_total, "output_tokens": output_total,
        "prices": None if prices is None else tuple(float(p) for p in prices), "priced_as": kind,
        "input_cost_usd": None if c is None else c[0], "output_cost_usd": None if c is None else c[1],
        "cost_usd": price(input_total, output_total),
        "cost_usd_upper_bound": price(input_total, upper * n),
        "cost_usd_batch": price(input_total, output_total, BATCH_DISCOUNT),
        "cached": n - len(to_send) if cache_dir is not None else None,
        "to_send": len(to_send) if cache_dir is not None else None,
        "cost_usd_to_send": price(per_in * len(to_send), per_out * len(to_send)) if cache_dir is not None else None,
    }
