"""Running a teacher over a training set with live calls: cache, bounded concurrency, filtering.

:func:`run_teacher` is safe to interrupt and rerun. Each answer is appended to the cache
(:mod:`.cache`: ``cache_dir/<teacher.cache_key()>.jsonl``) as soon as it arrives, so a crash loses
at most the requests in flight; a rerun reads the cache and sends only the examples not in it.
Failures (after the client's own retries) are appended to ``<cache_key>.failures.jsonl`` with the
error's type and message and are not cached as answers: the next run tries them once more. One
run at a time per cache file. :func:`pilot_run` sends a few requests first, so that
:func:`~mmkp_helpers.teacher.estimate_run` can measure answer lengths instead of assuming
``max_tokens``. The Batch API path (:mod:`.batch`) fills the same cache.

Filtering follows Fine-tune-CoT (Ho et al. 2023): in *predict* mode a rationale is kept when the
teacher's keyphrases reach F1 >= ``min_f1`` against the gold ones (the evaluator's Porter-stemmed
matching); in *rationalize* mode every non-empty rationale is kept, and those that list the gold
keyphrases before reasoning are counted as ``leaked``. An answer without keyphrases or without a
rationale counts as ``no_answer`` and is not kept.
"""
from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data import Example
from .base import TeacherAnswer
from .cache import MAX_ERROR_CHARS, AppendLog, cache_paths, failure_record, load_cache  # noqa: F401 - re-exported
from .estimate import BATCH_DISCOUNT, DEFAULT_OUTPUT_TOKENS, cost_usd, estimate_run, priced_as  # noqa: F401
from .filtering import judge, keyphrase_f1, leaks_gold  # noqa: F401 - re-exported


class TeacherBudgetError(RuntimeError):
    """The estimated cost of a run exceeds ``max_cost``; nothing was sent."""

    def __init__(self, message: str, estimate: dict):
        super().__init__(message)
        self.estimate = estimate


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
@dataclass
class TeacherRun:
    """What :func:`run_teacher` produced.

    - ``answers``: every answer (from the cache and new), by id;
    - ``rationales``: the kept rationales, by id (``collate.make_records(examples, rationales=...)``);
    - ``failed``: id -> "ErrorType: message" for the examples that failed in this run;
    - ``verdicts``: id -> "kept" | "filtered" | "no_answer" | "failed" | "pending" (in a batch
      still open); ``f1``: id -> F1 of the answer's keyphrases against the gold;
    - ``stats``: the counts (``examples = cache_hits + requests_sent``, ``requests_sent =
      answered + failures + pending``, ``kept + filtered + no_answer = cache_hits + answered``; ``leaked``
      counts kept rationales), tokens and cost of this run's requests (``input_tokens``,
      ``output_tokens``, ``cost_usd``) and of every answer, cached ones included (``all_*``).
    """
    answers: dict[str, TeacherAnswer]
    rationales: dict[str, str]
    failed: dict[str, str]
    stats: dict
    verdicts: dict[str, str] = field(default_factory=dict)
    f1: dict[str, float] = field(default_factory=dict)
    estimate: dict | None = None

    def table(self):
        """The stats as a pandas DataFrame, one row per stat."""
        import pandas as pd

        return pd.DataFrame({"value": [str(v) if isinstance(v, (list, tuple, dict)) else v
                                       for v in self.stats.values()]},
                            index=pd.Index(list(self.stats), name="stat"), dtype=object)

    def summary(self) -> str:
        s = self.stats
        cost = "n/a (no prices)" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
        all_cost = "n/a" if s["all_cost_usd"] is None else f"${s['all_cost_usd']:.4f}"
        return (f"teacher {s['cache_key']}: {s['examples']} examples, {s['cache_hits']} from the cache, "
                f"{s['requests_sent']} sent ({s['answered']} answered, {s['failures']} failed"
                f"{', %d pending in open batches' % s['pending'] if s.get('pending') else ''}); "
                f"kept {s['kept']}, filtered {s['filtered']}, no answer {s['no_answer']}, leaked {s['leaked']}; "
                f"this run {s['input_tokens']} input + {s['output_tokens']} output tokens, cost {cost} "
                f"(all answers {all_cost}); {s['seconds']:.1f} s; cache {s['cache_path']}")

    __str__ = summary

    def __repr__(self) -> str:
        return f"<TeacherRun {self.summary()}>"


def _check_ids(examples: Sequence[Example]) -> None:
    seen = set()
    for ex in examples:
        if ex.id in seen:
            raise ValueError(f"duplicate example id {ex.id!r}: ids key the cache, they must be unique")
        seen.add(ex.id)


def open_run(teacher, examples: Sequence[Example], cache_dir: str | os.PathLike):
    """(examples as a list, answers file, failures file, cached answers of these examples by id,
    the examples still to send): the start every run shares, live or batch. A teacher that
    counts its tokens gets them counted on cached answers that have none (older caches)."""
    examples = list(examples)
    _check_ids(examples)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    cache_path, failures_path = cache_paths(teacher, cache_dir)
    cached = load_cache(cache_path)
    answers = {ex.id: cached[ex.id] for ex in examples if ex.id in cached}
    if getattr(teacher, "count_tokens", False):
        for ex in examples:
            a = answers.get(ex.id)
            if a is not None and not (a.input_tokens or a.output_tokens):
                a.input_tokens, a.output_tokens = teacher.counted_tokens(ex, a.raw)
    missing = [ex for ex in examples if ex.id not in cached]
    return examples, cache_path, failures_path, answers, missing


def check_budget(teacher, missing: Sequence[Example], cache_dir, prices, max_cost: float | None,
                 discount: float = 1.0) -> dict | None:
    """The estimate of sending ``missing`` (None when there is no guard to apply); raises
    :class:`TeacherBudgetError` when it exceeds ``max_cost``. The output length is measured on
    the cache when it holds answers, else ``max_tokens`` (the upper bound)."""
    if not missing or max_cost is None or priced_as(teacher) != "paid":
        return None
    if prices is None:
        raise ValueError("max_cost needs prices=(usd per million input tokens, usd per million output tokens)")
    estimate = estimate_run(teacher, missing, prices=prices, cache_dir=cache_dir)
    cost = estimate["cost_usd"] * discount
    estimate["guarded_cost_usd"] = cost
    if cost > max_cost:
        raise TeacherBudgetError(
            f"estimated cost ${cost:.4f} for {len(missing)} requests ({estimate['input_tokens']} "
            f"input + {estimate['output_tokens']} output tokens at ${estimate['prices'][0]:g} / "
            f"${estimate['prices'][1]:g} per million{'' if discount == 1 else f', x{discount:g} (batch)'}; output "
            f"length {estimate['output_tokens_source']}) exceeds max_cost=${max_cost:g}; nothing was sent", estimate)
    return estimate


def answers_cost(answers: Sequence[TeacherAnswer], prices, kind: str) -> float | None:
    """What ``answers`` cost at ``prices`` (batch answers at the batch discount); 0 when free."""
    if kind == "free":
        return 0.0
    if prices is None:
        return None
    return sum(sum(cost_usd(a.input_tokens, a.output_tokens, prices,
                            BATCH_DISCOUNT if a.channel == "batch" else 1.0)) for a in answers)


def finish_run(teacher, examples: list[Example], answers: dict[str, TeacherAnswer], failed: dict[str, str],
               new_ids: list[str], n_missing: int, prices, min_f1: float, started: float, cache_path: Path,
               failures_path: Path, estimate: dict | None = None, pending: set[str] | None = None,
               **extra_stats) -> TeacherRun:
    """Filter the answers (Fine-tune-CoT) and count what the run did: the end every run shares.
    ``pending``: ids sent but not answered yet (batches still open)."""
    pending = set(pending or ())
    rationales: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    f1s: dict[str, float] = {}
    counts = {"kept": 0, "filtered": 0, "no_answer": 0, "leaked": 0}
    for ex in examples:
        if ex.id not in answers:
            verdicts[ex.id] = "pending" if ex.id in pending else "failed"
            continue
        verdict, f1, leaked = judge(answers[ex.id], ex, teacher.mode, min_f1)
        verdicts[ex.id], f1s[ex.id] = verdict, f1
        counts[verdict] += 1
        counts["leaked"] += int(leaked)
        if verdict == "kept":
            rationales[ex.id] = answers[ex.id].rationale.strip()

    def tokens(ids):
        return sum(answers[i].input_tokens for i in ids), sum(answers[i].output_tokens for i in ids)

    new_in, new_out = tokens(new_ids)
    all_in, all_out = tokens(list(answers))
    kind = priced_as(teacher)
    stats = {
        "teacher": repr(teacher), "cache_key": teacher.cache_key(), "mode": teacher.mode, "examples": len(examples),
        "cache_hits": len(examples) - n_missing, "requests_sent": n_missing, "answered": len(new_ids),
        "failures": len(failed), "pending": len(pending), **counts, "min_f1": min_f1 if teacher.mode == "predict" else None,
        "input_tokens": new_in, "output_tokens": new_out, "priced_as": kind,
        "cost_usd": answers_cost([answers[i] for i in new_ids], prices, kind),
        "all_input_tokens": all_in, "all_output_tokens": all_out,
        "all_cost_usd": answers_cost(list(answers.values()), prices, kind),
        "estimated_cost_usd": None if estimate is None else estimate.get("guarded_cost_usd", estimate["cost_usd"]),
        "teacher_seconds": round(sum(answers[i].seconds for i in new_ids), 3),
        "seconds": round(time.perf_counter() - started, 3), **extra_stats,
        "cache_path": str(cache_path), "failures_path": str(failures_path),
    }
    return TeacherRun(answers=answers, rationales=rationales, failed=failed, stats=stats, verdicts=verdicts, f1=f1s,
                      estimate=estimate)


def run_teacher(teacher, examples: Sequence[Example], cache_dir: str | os.PathLike, concurrency: int = 4,
                prices=None, max_cost: float | None = None, min_f1: float = 0.5, progress: bool = True) -> TeacherRun:
    """Answer every example with ``teacher`` (reusing the cache), then filter the rationales.

    See the module docstring for the cache, failures and filtering. ``concurrency``: requests in
    flight at once (a thread pool, which also works inside Jupyter). ``prices``: (usd per million
    input, usd per million output) tokens, for ``cost_usd`` (an offline teacher built with
    ``count_tokens=True`` is priced as if it were paid). ``max_cost`` (USD): the examples to send
    are estimated first (:func:`estimate_run`, output length measured on the cache when it holds
    answers, else ``max_tokens``) and :class:`TeacherBudgetError` is raised, before anything is
    sent, when the estimate exceeds it."""
    start = time.perf_counter()
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency} must be >= 1")
    examples, cache_path, failures_path, answers, missing = open_run(teacher, examples, cache_dir)
    key = teacher.cache_key()
    estimate = check_budget(teacher, missing, cache_dir, prices, max_cost)
    if missing and hasattr(teacher, "prepare"):
        teacher.prepare()  # e.g. the API key: a missing one fails here, before anything is sent
    redact = getattr(teacher, "redact", lambda text: text)

    failed: dict[str, str] = {}
    new_ids: list[str] = []
    cache_log, failure_log = AppendLog(cache_path), AppendLog(failures_path)
    bar = None
    if progress and missing:
        from ..progress import tqdm

        bar = tqdm(total=len(missing), desc=f"teacher {teacher.name}", unit="post")
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher") as pool:
            futures = {pool.submit(teacher.answer, ex): ex for ex in missing}
            try:
                for future in as_completed(futures):
                    ex = futures[future]
                    try:
                        answer = future.result()
                        if answer.error:
                            raise RuntimeError(answer.error)
                    except Exception as err:  # noqa: BLE001 - every failure is recorded, none is dropped
                        message = redact(f"{type(err).__name__}: {err}")[:MAX_ERROR_CHARS]
                        failed[ex.id] = message
                        failure_log.write(failure_record(ex.id, type(err).__name__, message.split(": ", 1)[-1], key))
                    else:
                        answer.id = ex.id
                        answers[ex.id] = answer
                        new_ids.append(ex.id)
                        cache_log.write(answer.to_dict())
                    if bar is not None:
                        bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        cache_log.close()
        failure_log.close()
        if bar is not None:
            bar.close()
    return finish_run(teacher, examples, answers, failed, new_ids, len(missing), prices, min_f1, start, cache_path,
                      failures_path, estimate, concurrency=concurrency, channel="live")


def pilot_run(teacher, examples: Sequence[Example], cache_dir: str | os.PathLike, n: int = 5, prices=None,
              seed: int = 0, concurrency: int = 4, max_cost: float | None = None) -> TeacherRun:
    """A few real requests (``n`` examples drawn with ``seed``) into the run's cache, so that
    :func:`estimate_run` (with the same ``cache_dir``) measures answer lengths instead of
    assuming ``max_tokens``. Its answers stay in the cache: the run that follows does not send
    them again. Its cost is the returned run's ``stats["cost_usd"]``; ``max_cost`` guards it as
    in :func:`run_teacher` (estimated with ``max_tokens``, the upper bound, on a fresh cache)."""
    examples = list(examples)
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    picked = examples if n >= len(examples) else [examples[i] for i in sorted(random.Random(seed).sample(
        range(len(examples)), n))]
    return run_teacher(teacher, picked, cache_dir, concurrency=concurrency, prices=prices, max_cost=max_cost,
                       progress=False)
