"""Running a teacher over a training set: estimate, cache, bounded concurrency, filtering.

:func:`run_teacher` is safe to interrupt and rerun. Each answer is appended to
``cache_dir/<teacher.cache_key()>.jsonl`` (one :meth:`TeacherAnswer.to_dict` line, flushed and
fsynced under a lock) as soon as it arrives, so a crash loses at most the requests in flight; a
rerun reads the cache (a line cut by a crash mid-write is dropped) and sends only the examples not
in it. Failures (after the client's own retries) are appended to ``<cache_key>.failures.jsonl``
with the error's type and message and are not cached as answers: the next run tries them once
more. One run at a time per cache file.

Filtering follows Fine-tune-CoT (Ho et al. 2023): in *predict* mode a rationale is kept when the
teacher's keyphrases reach F1 >= ``min_f1`` against the gold ones (the evaluator's Porter-stemmed
matching); in *rationalize* mode every non-empty rationale is kept, and those that list the gold
keyphrases before reasoning are counted as ``leaked``. An answer without keyphrases or without a
rationale counts as ``no_answer`` and is not kept.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data import Example
from .base import TeacherAnswer
from .filtering import judge, keyphrase_f1, leaks_gold  # noqa: F401 - re-exported
from .tokens import image_size, messages_tokens, text_counter

#: Output tokens per request assumed when a teacher has no ``max_tokens`` (offline teachers).
DEFAULT_OUTPUT_TOKENS = 512
_MAX_ERROR_CHARS = 500


class TeacherBudgetError(RuntimeError):
    """The estimated cost of a run exceeds ``max_cost``; nothing was sent."""

    def __init__(self, message: str, estimate: dict):
        super().__init__(message)
        self.estimate = estimate


# ------------------------------------------------------------------------------------------------
# Estimate
# ------------------------------------------------------------------------------------------------
def _cost(input_tokens: float, output_tokens: float, prices) -> tuple[float, float] | None:
    if prices is None:
        return None
    usd_in, usd_out = (float(p) for p in prices)
    return input_tokens * usd_in / 1e6, output_tokens * usd_out / 1e6


def estimate_run(teacher, examples: Sequence[Example], prices=None, sample: int | None = 20,
                 output_tokens: int | None = None, seed: int = 0) -> dict:
    """What a run of ``teacher`` over ``examples`` would cost, before sending anything.

    Input tokens: the rendered requests of ``sample`` examples (drawn with ``seed``; all of them
    when ``sample`` is None or not smaller) counted with tiktoken ``o200k_base`` (see
    :mod:`.tokens` for the offline fallback), plus each image's tokens by OpenAI's rule (85 at
    ``detail="low"``, the 512-pixel tile rule at "high"/"auto"), averaged and multiplied by the
    number of requests. Output tokens: ``output_tokens`` a request, by default the teacher's
    ``max_tokens`` (an upper bound). ``prices=(usd per million input tokens, usd per million
    output tokens)`` gives ``cost_usd`` (None without prices; 0 for offline teachers)."""
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
    if output_tokens is None:
        output_tokens = getattr(teacher, "max_tokens", None) or DEFAULT_OUTPUT_TOKENS
    input_total = round((per_text + per_image) * n)
    output_total = int(output_tokens) * n
    paid = getattr(teacher, "paid", True)
    cost = _cost(input_total, output_total, prices) if paid else (0.0, 0.0)
    return {
        "teacher": teacher.cache_key(), "requests": n, "sampled": len(picked), "tokenizer": text_counter()[1],
        "image_detail": detail, "text_tokens_per_request": round(per_text, 1),
        "image_tokens_per_request": round(per_image, 1), "input_tokens_per_request": round(per_text + per_image, 1),
        "output_tokens_per_request": int(output_tokens), "input_tokens": input_total, "output_tokens": output_total,
        "prices": None if prices is None else tuple(float(p) for p in prices),
        "input_cost_usd": None if cost is None else cost[0], "output_cost_usd": None if cost is None else cost[1],
        "cost_usd": None if cost is None else cost[0] + cost[1],
    }


# ------------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------------
def load_cache(path: str | os.PathLike, repair: bool = True) -> dict[str, TeacherAnswer]:
    """The answers in a cache file, by id (the last line of an id wins).

    A last line without its newline (a crash mid-write) is kept when it is a whole answer and
    dropped otherwise; with ``repair`` the file is fixed accordingly, so that appending goes on
    cleanly. A line in the middle that cannot be read is skipped with a warning (its example is
    then asked again)."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    answers: dict[str, TeacherAnswer] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            answer = TeacherAnswer.from_dict(json.loads(line))
        except (ValueError, TypeError) as err:
            warnings.warn(f"{path}:{number}: unreadable cache line skipped ({type(err).__name__}: {err})", stacklevel=2)
            continue
        answers[answer.id] = answer
    if tail.strip():
        try:
            answer = TeacherAnswer.from_dict(json.loads(tail))
        except (ValueError, TypeError):
            answer = None
        if answer is not None:
            answers[answer.id] = answer
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
        else:
            warnings.warn(f"{path}:{len(lines) + 1}: the last line was cut (a crash mid-write); dropped", stacklevel=2)
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(tail))
    return answers


class _AppendLog:
    """Appends JSON lines to a file under a lock, each flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.file = None

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            if self.file is None:
                self.file = open(self.path, "a", encoding="utf-8")
            self.file.write(line)
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
@dataclass
class TeacherRun:
    """What :func:`run_teacher` produced.

    - ``answers``: every answer (from the cache and new), by id;
    - ``rationales``: the kept rationales, by id (``collate.make_records(examples, rationales=...)``);
    - ``failed``: id -> "ErrorType: message" for the examples that failed in this run;
    - ``verdicts``: id -> "kept" | "filtered" | "no_answer" | "failed"; ``f1``: id -> F1 of the
      answer's keyphrases against the gold;
    - ``stats``: the counts (``examples = cache_hits + requests_sent``, ``requests_sent =
      answered + failures``, ``kept + filtered + no_answer = cache_hits + answered``; ``leaked``
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
                f"{s['requests_sent']} sent ({s['answered']} answered, {s['failures']} failed); "
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


def run_teacher(teacher, examples: Sequence[Example], cache_dir: str | os.PathLike, concurrency: int = 4,
                prices=None, max_cost: float | None = None, min_f1: float = 0.5, progress: bool = True) -> TeacherRun:
    """Answer every example with ``teacher`` (reusing the cache), then filter the rationales.

    See the module docstring for the cache, failures and filtering. ``concurrency``: requests in
    flight at once (a thread pool, which also works inside Jupyter). ``prices``: (usd per million
    input, usd per million output) tokens, for ``cost_usd``. ``max_cost`` (USD): the examples
    to send are estimated first (:func:`estimate_run`) and :class:`TeacherBudgetError` is raised,
    before anything is sent, when the estimate exceeds it."""
    start = time.perf_counter()
    examples = list(examples)
    _check_ids(examples)
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency} must be >= 1")
    paid = getattr(teacher, "paid", True)
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = teacher.cache_key()
    cache_path = folder / f"{key}.jsonl"
    failures_path = folder / f"{key}.failures.jsonl"

    cached = load_cache(cache_path)
    answers = {ex.id: cached[ex.id] for ex in examples if ex.id in cached}
    missing = [ex for ex in examples if ex.id not in cached]

    estimate = None
    if missing and max_cost is not None and paid:
        if prices is None:
            raise ValueError("max_cost needs prices=(usd per million input tokens, usd per million output tokens)")
        estimate = estimate_run(teacher, missing, prices=prices)
        if estimate["cost_usd"] > max_cost:
            raise TeacherBudgetError(
                f"estimated cost ${estimate['cost_usd']:.4f} for {len(missing)} requests ({estimate['input_tokens']} "
                f"input + {estimate['output_tokens']} output tokens at ${estimate['prices'][0]:g} / "
                f"${estimate['prices'][1]:g} per million) exceeds max_cost=${max_cost:g}; nothing was sent", estimate)
    if missing and hasattr(teacher, "prepare"):
        teacher.prepare()  # e.g. the API key: a missing one fails here, before anything is sent
    redact = getattr(teacher, "redact", lambda text: text)

    failed: dict[str, str] = {}
    new_ids: list[str] = []
    cache_log, failure_log = _AppendLog(cache_path), _AppendLog(failures_path)
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
                        message = redact(f"{type(err).__name__}: {err}")[:_MAX_ERROR_CHARS]
                        failed[ex.id] = message
                        failure_log.write({"id": ex.id, "error_type": type(err).__name__,
                                           "error": message.split(": ", 1)[-1], "cache_key": key,
                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
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

    rationales: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    f1s: dict[str, float] = {}
    counts = {"kept": 0, "filtered": 0, "no_answer": 0, "leaked": 0}
    for ex in examples:
        if ex.id in failed:
            verdicts[ex.id] = "failed"
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
    cost = _cost(new_in, new_out, prices) if paid else (0.0, 0.0)
    all_cost = _cost(all_in, all_out, prices) if paid else (0.0, 0.0)
    stats = {
        "teacher": repr(teacher), "cache_key": key, "mode": teacher.mode, "examples": len(examples),
        "cache_hits": len(examples) - len(missing), "requests_sent": len(missing), "answered": len(new_ids),
        "failures": len(failed), **counts, "min_f1": min_f1 if teacher.mode == "predict" else None,
        "input_tokens": new_in, "output_tokens": new_out, "cost_usd": None if cost is None else sum(cost),
        "all_input_tokens": all_in, "all_output_tokens": all_out,
        "all_cost_usd": None if all_cost is None else sum(all_cost),
        "estimated_cost_usd": None if estimate is None else estimate["cost_usd"],
        "teacher_seconds": round(sum(answers[i].seconds for i in new_ids), 3),
        "seconds": round(time.perf_counter() - start, 3), "concurrency": concurrency,
        "cache_path": str(cache_path), "failures_path": str(failures_path),
    }
    run = TeacherRun(answers=answers, rationales=rationales, failed=failed, stats=stats, verdicts=verdicts, f1=f1s,
                     estimate=estimate)
    return run
