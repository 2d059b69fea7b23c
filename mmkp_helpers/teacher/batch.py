"""The OpenAI Batch API beside live calls: the same requests at half the price, into the same cache.

:func:`run_batch` writes the requests that the cache does not answer yet as Batch JSONL files
(one line per example, ``custom_id`` = the example id, ``body`` = what a live call sends:
:meth:`OpenAITeacher.request_body`), uploads them with the official client
(``files.create(purpose="batch")``), creates one batch per file (``batches.create``, endpoint
``/v1/chat/completions``, window 24 h), polls them with a growing interval, downloads each
finished batch's output and error files (``files.content``) and appends its answers to the
answer cache that :func:`~mmkp_helpers.teacher.run_teacher` uses (marked ``channel="batch"``,
priced at :data:`~mmkp_helpers.teacher.estimate.BATCH_DISCOUNT`). A later live or batch run
sends only what is still missing.

**Resuming.** Before waiting for anything, every batch is recorded in
``cache_dir/<cache_key>.batches.json`` (its file id once uploaded, its batch id once created, the
example ids it carries, its last status). A run that finds batches there that were not merged
yet (a killed process, a closed notebook, ``wait=False``) polls and merges those first and
never sends their examples again; a file uploaded without a recorded batch (a crash between the
two calls) is matched to its batch through ``batches.list`` or, when there is none, turned
into a batch then. The state file holds ids, never the key.

**Limits and faults.** A file holds at most ``max_requests`` lines (the API's 50,000) and
``max_bytes`` bytes (the API's 200 MB, less a margin): larger runs are split into several
batches. A batch that ends ``failed`` (no output), ``expired`` or ``cancelled`` (part of the
output, the rest in the error file or missing) has its answered lines merged; every example
without an answer, and every per-line error (a non-200 status or an error object), is recorded
in ``<cache_key>.failures.jsonl`` and sent again by the next run. Errors are redacted of the key.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

from ..data import Example
from .base import TeacherAnswer, answer_from_text
from .cache import AppendLog, failure_record, load_cache
from .estimate import BATCH_DISCOUNT
from .run import TeacherRun, check_budget, finish_run, open_run

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
#: The Batch API's limits per input file: 50,000 requests and 200 MB (a margin is kept below it).
MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 1024 * 1024
TERMINAL = ("completed", "failed", "expired", "cancelled")


# ------------------------------------------------------------------------------------------------
# The batch files
# ------------------------------------------------------------------------------------------------
def batch_line(teacher, example: Example) -> dict:
    """One Batch API request: ``custom_id`` (the example id), method, url and the live call's body."""
    return {"custom_id": str(example.id), "method": "POST", "url": ENDPOINT, "body": teacher.request_body(example)}


def write_batch_files(teacher, examples: Sequence[Example], folder: str | os.PathLike, stem: str,
                      max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> list[tuple[Path, list[str]]]:
    """The requests of ``examples`` as JSONL files of at most ``max_requests`` lines and
    ``max_bytes`` bytes each (``folder/<stem>-<n>.jsonl``); returns (file, example ids) per file."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests and max_bytes must be >= 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, list[str]]] = []
    current, ids, size = None, [], 0

    def close():
        if current is not None:
            current.close()

    try:
        for ex in examples:
            line = (json.dumps(batch_line(teacher, ex), ensure_ascii=False) + "\n").encode("utf-8")
            if len(line) > max_bytes:
                raise ValueError(f"the request of example {ex.id!r} alone is {len(line)} bytes, over max_bytes={max_bytes}")
            if current is None or len(ids) >= max_requests or size + len(line) > max_bytes:
                close()
                path = folder / f"{stem}-{len(out)}.jsonl"
                current, ids, size = open(path, "wb"), [], 0
                out.append((path, ids))
            current.write(line)
            ids.append(str(ex.id))
            size += len(line)
    finally:
        close()
    return out


# ------------------------------------------------------------------------------------------------
# The state file
# ------------------------------------------------------------------------------------------------
class BatchState:
    """The batches of one cache key, saved atomically to ``<cache_key>.batches.json``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.batches: list[dict] = []
        if self.path.is_file():
            self.batches = json.loads(self.path.read_text(encoding="utf-8")).get("batches", [])

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"batches": self.batches}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def open_batches(self) -> list[dict]:
        """Batches whose results are not merged yet."""
        return [b for b in self.batches if not b.get("merged")]

    def ids_in_flight(self) -> set[str]:
        return {i for b in self.open_batches() for i in b["ids"]}


def state_path(teacher, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / f"{teacher.cache_key()}.batches.json"


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------
def parse_result_line(record: dict) -> tuple[str, dict | None, str | None]:
    """(custom_id, the chat completion body or None, the error or None) of one output or error line."""
    custom_id = str(record.get("custom_id"))
    response = record.get("response") or {}
    error = record.get("error")
    status = response.get("status_code")
    body = response.get("body")
    if error:
        return custom_id, None, f"{error.get('code') or 'error'}: {error.get('message') or error}"
    if status != 200 or not isinstance(body, dict):
        detail = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = f"{detail.get('type') or detail.get('code') or 'error'}: {detail.get('message')}"
        return custom_id, None, f"status {status}: {detail}"
    if not body.get("choices"):
        return custom_id, None, "the endpoint answered without choices"
    return custom_id, body, None


def answer_from_body(example_id: str, body: dict, mode: str) -> TeacherAnswer:
    """A :class:`TeacherAnswer` from a chat completion body of a batch output line."""
    usage = body.get("usage") or {}
    answer = answer_from_text(example_id, body["choices"][0].get("message", {}).get("content"), mode,
                              usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, 0.0)
    answer.channel = "batch"
    return answer


def _file_text(client, file_id: str | None) -> str:
    if not file_id:
        return ""
    content = client.files.content(file_id)
    return content.text if hasattr(content, "text") else bytes(content).decode("utf-8")


class _Merger:
    """Appends a finished batch's answers and failures to the cache (each id at most once)."""

    def __init__(self, teacher, examples_by_id: dict, answers: dict, cache_log: AppendLog, failure_log: AppendLog,
                 redact):
        self.teacher, self.examples_by_id, self.answers = teacher, examples_by_id, answers
        self.cache_log, self.failure_log, self.redact = cache_log, failure_log, redact
        self.cached: set[str] = set()  # every id answered in the cache file, beyond this run's examples too
        self.new_ids: list[str] = []
        self.failed: dict[str, str] = {}

    def merge(self, client, record: dict, batch) -> None:
        key = self.teacher.cache_key()
        got: dict[str, tuple[dict | None, str | None]] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            for line in _file_text(client, file_id).splitlines():
                if not line.strip():
                    continue
                try:
                    custom_id, body, error = parse_result_line(json.loads(line))
                except (ValueError, AttributeError) as err:
                    warnings.warn(f"batch {record['batch_id']}: unreadable result line skipped ({err})", stacklevel=2)
                    continue
                if custom_id not in got or got[custom_id][0] is None:
                    got[custom_id] = (body, error)
        reason = self.redact(_batch_error(batch))
        for example_id in record["ids"]:
            body, error = got.get(example_id, (None, f"no result: the batch ended {batch.status}" +
                                               (f" ({reason})" if reason else "")))
            if example_id in self.cached:
                continue  # answered already (e.g. a merge interrupted half way): never twice
            if body is not None:
                answer = answer_from_body(example_id, body, self.teacher.mode)
                self.cache_log.write(answer.to_dict())
                self.cached.add(example_id)
                self.failed.pop(example_id, None)
                if example_id in self.examples_by_id:
                    self.answers[example_id] = answer
                    self.new_ids.append(example_id)
            else:
                message = self.redact(f"BatchRequestError: {error}")
                self.failure_log.write(failure_record(example_id, "BatchRequestError", message.split(": ", 1)[-1], key,
                                                      channel="batch", batch_id=record["batch_id"]))
                if example_id in self.examples_by_id:
                    self.failed[example_id] = message
        record.update(merged=True, status=batch.status, merged_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      answered=sum(1 for i in record["ids"] if got.get(i, (None,))[0] is not None))


def _batch_error(batch) -> str:
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or []
    return "; ".join(f"{getattr(e, 'code', None) or 'error'}: {getattr(e, 'message', '')}" for e in data[:3])


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def _find_batch_of_file(client, file_id: str, limit: int = 1000):
    for n, batch in enumerate(client.batches.list(limit=100)):
        if batch.input_file_id == file_id:
            return batch
        if n + 1 >= limit:
            break
    return None


def _create(client, record: dict, key: str) -> None:
    batch = client.batches.create(input_file_id=record["input_file_id"], endpoint=ENDPOINT,
                                  completion_window=COMPLETION_WINDOW, metadata={"mmkp_cache_key": key[:512]})
    record.update(batch_id=batch.id, status=batch.status, created_at=time.strftime("%Y-%m-%dT%H:%M:%S"))


def run_batch(teacher, examples: Sequence[Example], cache_dir: str | os.PathLike, prices=None,
              max_cost: float | None = None, min_f1: float = 0.5, wait: bool = True, poll_interval: float = 30.0,
              max_poll_interval: float = 600.0, max_wait: float | None = None, max_requests: int = MAX_REQUESTS,
              max_bytes: int = MAX_BYTES, progress: bool = True) -> TeacherRun:
    """Answer every example through the Batch API (see the module docstring), then filter.

    ``prices`` are the live prices (USD per million input / output tokens): batch answers are
    priced at ``BATCH_DISCOUNT`` times them, and ``max_cost`` guards the new batches' estimate at
    that discount. ``wait=False`` submits and returns (the examples in open batches count as
    ``pending``; a later call collects them); ``max_wait`` (seconds) bounds the polling, which
    starts at ``poll_interval`` and grows by half each time up to ``max_poll_interval``. The run's
    ``stats`` add ``batches_submitted``, ``batches_collected``, ``batches_open``, ``pending``,
    ``batch_ids`` and ``state_path``."""
    start = time.perf_counter()
    if not hasattr(teacher, "request_body") or not hasattr(teacher, "client"):
        raise TypeError(f"{type(teacher).__name__} has no API to send batches to: use run_teacher")
    examples, cache_path, failures_path, answers, missing = open_run(teacher, examples, cache_dir)
    key = teacher.cache_key()
    state = BatchState(state_path(teacher, cache_dir))
    redact = getattr(teacher, "redact", lambda text: text)
    by_id = {ex.id: ex for ex in examples}
    in_flight = state.ids_in_flight()
    to_send = [ex for ex in missing if ex.id not in in_flight]
    estimate = check_budget(teacher, to_send, cache_dir, prices, max_cost, discount=BATCH_DISCOUNT)
    submitted: list[str] = []
    collected = 0
    cache_log, failure_log = AppendLog(cache_path), AppendLog(failures_path)
    merger = _Merger(teacher, by_id, answers, cache_log, failure_log, redact)
    merger.cached = set(load_cache(cache_path))
    try:
        if state.open_batches() or to_send:
            teacher.prepare()  # the key: a missing one fails here, before anything is sent
            client = teacher.client()
        # 1. batches uploaded by an earlier run but never created (a crash between the two calls)
        for record in state.open_batches():
            if not record.get("batch_id"):
                found = _find_batch_of_file(client, record["input_file_id"])
                if found is not None:
                    record.update(batch_id=found.id, status=found.status)
                else:
                    _create(client, record, key)
                    submitted.append(record["batch_id"])
                state.save()
        # 2. the examples nobody has asked yet, in files within the limits
        if to_send:
            folder = Path(cache_dir) / "batches"
            stem = f"{key}-{time.strftime('%Y%m%dT%H%M%S')}"
            chunks = write_batch_files(teacher, to_send, folder, stem, max_requests, max_bytes)
            try:
                for path, ids in chunks:
                    with open(path, "rb") as f:
                        uploaded = client.files.create(file=(path.name, f), purpose="batch")
                    record = {"file": path.name, "input_file_id": uploaded.id, "batch_id": None,
                              "status": "uploaded", "ids": ids, "requests": len(ids), "merged": False}
                    state.batches.append(record)
                    state.save()  # before the batch exists: a crash here is resumed from the file id
                    path.unlink()
                    _create(client, record, key)
                    state.save()  # the batch id, before waiting for anything
                    submitted.append(record["batch_id"])
            finally:
                for path, _ in chunks:  # files not uploaded (an error): the next run writes them again
                    path.unlink(missing_ok=True)
        # 3. poll the open batches, merging each as it ends
        interval, waited = poll_interval, 0.0
        bar = None
        if progress and state.open_batches() and wait:
            from ..progress import tqdm

            bar = tqdm(total=len(state.open_batches()), desc=f"batches {teacher.name}", unit="batch")
        try:
            while state.open_batches():
                for record in state.open_batches():
                    batch = client.batches.retrieve(record["batch_id"])
                    record["status"] = batch.status
                    if batch.status in TERMINAL:
                        merger.merge(client, record, batch)
                        collected += 1
                        if bar is not None:
                            bar.update(1)
                    state.save()
                if not state.open_batches() or not wait or (max_wait is not None and waited >= max_wait):
                    break
                pause = interval if max_wait is None else min(interval, max(0.0, max_wait - waited))
                time.sleep(pause)
                waited += pause
                interval = min(interval * 1.5, max_poll_interval)
        finally:
            if bar is not None:
                bar.close()
    finally:
        cache_log.close()
        failure_log.close()
    pending = {i for i in state.ids_in_flight() if i in by_id and i not in answers}
    open_ids = [b["batch_id"] for b in state.open_batches()]
    return finish_run(teacher, examples, answers, merger.failed, merger.new_ids, len(missing), prices, min_f1, start,
                      cache_path, failures_path, estimate, pending=pending, channel="batch",
                      requests_submitted=sum(len(b["ids"]) for b in state.batches if b.get("batch_id") in submitted),
                      batches_submitted=len(submitted), batches_collected=collected, batches_open=len(open_ids),
                      batch_ids=submitted, open_batch_ids=open_ids, state_path=str(state.path))


def batch_status(teacher, cache_dir: str | os.PathLike) -> list[dict]:
    """The batches recorded for ``teacher`` in ``cache_dir`` (ids, status, merged), newest last."""
    return [{k: v for k, v in b.items() if k != "ids"} for b in BatchState(state_path(teacher, cache_dir)).batches]
