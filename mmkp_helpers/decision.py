"""The mode decision at inference: does the model reason on this post? (``auto`` decoding)

A model trained on both answer forms begins every answer with its choice: the first token of
``<think>`` (reason) or of ``Keyphrases:`` (answer at once). :func:`decision_q` reads that choice
as a probability, q = p(think) / (p(think) + p(direct)), from one forward pass over the prompt;
:func:`generate_auto` thinks on exactly the posts whose q reaches a threshold (prefilling the
rationale's opening) and answers directly on the others (prefilling the answer label), so the
decision is the model's own and its threshold is a knob, chosen on the validation set by
:func:`choose_threshold` (best F1@M, ties to fewer tokens). Greedy ``free`` decoding is the special
case where the larger of the two probabilities wins (about q >= 0.5 when the other tokens are
unlikely).

:func:`threshold_curve` gives F1@M against generated tokens over every threshold from the two
forced decodings of the same posts (a post at threshold t gets its forced-think output when
q >= t, else its forced-direct one): what ``auto`` decoding would score at each threshold.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import torch

from . import inference
from .collate import load_image
from .data import Example
from .prompts import ANSWER_LABEL, get_template


def decision_tokens(tokenizer) -> tuple[int, int]:
    """(first token of a CoT target, first token of a direct target)."""
    think = inference.think_opening_token(tokenizer)
    direct = tokenizer(ANSWER_LABEL + " x", add_special_tokens=False)["input_ids"][0]
    return think, direct


def opening_tokens(tokenizer) -> dict[str, int]:
    """Tokens of each forced mode's prefill (``think``: the rationale's opening, ``direct``: the
    answer label), which ``auto`` decoding counts as generated: there the model chose them."""
    return {mode: len(tokenizer(inference.prefill(tokenizer, mode), add_special_tokens=False)["input_ids"])
            for mode in ("think", "direct")}


def decision_q(model, processor, examples: Sequence[Example], prompt: str = "direct", batch_size: int = 16,
               prompt_keyphrases: int = 5) -> list[float]:
    """Per example, q = p(think) / (p(think) + p(direct)) at the first answer position (one
    forward pass over the prompt, left-padded batches, the model in eval mode)."""
    template = get_template(prompt)
    tokenizer = processor.tokenizer
    think, direct = decision_tokens(tokenizer)
    device = next(model.parameters()).device
    dtype = inference.compute_dtype(model)
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = list(examples[start:start + batch_size])
            texts = [inference.render_prompt(processor, ex, template, None, prompt_keyphrases) for ex in batch]
            images = [load_image(ex.image) for ex in batch if template.wants_image(ex)]
            enc = processor(text=texts, images=images or None, padding=True, padding_side="left",
                            return_tensors="pt").to(device)
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits = model(**enc, use_cache=False).logits[:, -1, :].float()
            pair = torch.log_softmax(logits, dim=-1)[:, [think, direct]]
            out.extend(torch.softmax(pair, dim=-1)[:, 0].tolist())
    finally:
        if was_training:
            model.train()
    return out


def generate_auto(model, processor, examples: Sequence[Example], threshold: float, max_new_tokens: int,
                  max_new_tokens_direct: int | None = None, q: Sequence[float] | None = None,
                  **generate_kwargs) -> list[inference.Generation]:
    """``auto`` decoding: reason (forced think, ``max_new_tokens``) on exactly the examples whose q
    (:func:`decision_q`, or given) is >= ``threshold``, answer directly (forced direct,
    ``max_new_tokens_direct``, default the same) on the others. Every generation has ``mode="auto"``
    and its ``q``; ``n_tokens`` counts the prefilled opening too, since here the model chose it."""
    tokenizer = processor.tokenizer
    kw = {k: v for k, v in generate_kwargs.items() if k in ("prompt", "batch_size", "prompt_keyphrases", "progress",
                                                            "max_keyphrases")}
    if q is None:
        q = decision_q(model, processor, examples, prompt=kw.get("prompt", "direct"),
                       batch_size=kw.get("batch_size", 16), prompt_keyphrases=kw.get("prompt_keyphrases", 5))
    think = [ex for ex, v in zip(examples, q) if v >= threshold]
    direct = [ex for ex, v in zip(examples, q) if v < threshold]
    openings = opening_tokens(tokenizer)
    gens = {}
    for mode, subset, budget in (("think", think, max_new_tokens), ("direct", direct, max_new_tokens_direct or max_new_tokens)):
        if not subset:
            continue
        for g in inference.generate(model, processor, subset, mode=mode, max_new_tokens=budget, **kw):
            gens[g.id] = replace(g, mode="auto", n_tokens=g.n_tokens + openings[mode])
    return [replace(gens[ex.id], q=float(v)) for ex, v in zip(examples, q)]


def combine(q: Sequence[float], think: Sequence[inference.Generation], direct: Sequence[inference.Generation],
            threshold: float, openings: dict[str, int] | None = None) -> list[inference.Generation]:
    """What ``auto`` decoding gives at ``threshold`` from the two forced decodings of the same
    examples (in the same order): the think output where q >= threshold, else the direct one,
    each with its opening's tokens (``openings``, :func:`opening_tokens`) counted."""
    openings = openings or {"think": 0, "direct": 0}
    out = []
    for v, t, d in zip(q, think, direct):
        g, mode = (t, "think") if v >= threshold else (d, "direct")
        out.append(replace(g, q=float(v), mode="auto", n_tokens=g.n_tokens + openings[mode]))
    return out


def threshold_curve(q: Sequence[float], think: Sequence[inference.Generation],
                    direct: Sequence[inference.Generation], examples: Sequence[Example],
                    train_keyphrases: Iterable[str] | None = None,
                    openings: dict[str, int] | None = None, max_points: int = 80) -> list[dict]:
    """For every threshold that changes a decision (each distinct q, plus one above them all:
    never reason; at most ``max_points`` of them, evenly spaced over the distinct q values), the
    think share, F1@M and generated tokens per post of :func:`combine`."""
    train_keyphrases = list(train_keyphrases) if train_keyphrases is not None else None
    distinct = sorted(set(float(v) for v in q))
    if len(distinct) > max_points:
        distinct = [distinct[round(i * (len(distinct) - 1) / (max_points - 1))] for i in range(max_points)]
    thresholds = sorted(set(distinct)) + [1.0 + 1e-9]
    rows = []
    for t in thresholds:
        gens = combine(q, think, direct, t, openings)
        scores = inference.evaluate(gens, examples, train_keyphrases=train_keyphrases)
        rows.append({"threshold": t, "think_share": sum(v >= t for v in q) / max(1, len(q)),
                     "F1@M": scores["all"]["F1@M"], "tokens": sum(g.n_tokens for g in gens) / max(1, len(gens))})
    return rows


def choose_threshold(curve: Sequence[dict]) -> dict:
    """The row of :func:`threshold_curve` with the best F1@M, ties to fewer tokens per post."""
    if not curve:
        raise ValueError("an empty threshold curve")
    return min(curve, key=lambda r: (-round(r["F1@M"], 9), r["tokens"]))


def q_summary(q: Sequence[float]) -> dict:
    """Mean, quartiles, min and max of q."""
    if not q:
        return {"n": 0}
    v = sorted(q)
    at = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
    return {"n": len(v), "mean": sum(v) / len(v), "min": v[0], "q25": at(0.25), "median": at(0.5), "q75": at(0.75),
            "max": v[-1]}


def post_f1(keyphrases: Sequence[str], example: Example) -> float:
    """One post's F1@M (all predictions against all its keyphrases, CMKP's stemmed matching)."""
    from .metrics import filter_predictions, unique_targets

    gold = set(unique_targets(example.keyphrases))
    preds = filter_predictions(keyphrases)
    if not gold or not preds:
        return 0.0
    hits = sum(p in gold for p in preds)
    p, r = hits / len(preds), hits / len(gold)
    return 2 * p * r / (p + r) if p + r else 0.0


def thinking_helps(think: Sequence[inference.Generation], direct: Sequence[inference.Generation],
                   examples: Sequence[Example]) -> list[bool]:
    """Per post: does its forced-think output score a higher F1@M than its forced-direct one?"""
    return [post_f1(t.keyphrases, ex) > post_f1(d.keyphrases, ex) for t, d, ex in zip(think, direct, examples)]


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The area under the ROC curve of ``scores`` for ``labels`` (the probability that a random
    positive scores above a random negative, ties counted half); None without both classes."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    import bisect

    total = 0.0
    neg_sorted = sorted(neg)
    for s in pos:
        below = bisect.bisect_left(neg_sorted, s)
        equal = bisect.bisect_right(neg_sorted, s) - below
        total += below + 0.5 * equal
    return total / (len(pos) * len(neg))
