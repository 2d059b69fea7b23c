"""The answer cache every teacher run shares, live or batch.

``cache_dir/<teacher.cache_key()>.jsonl`` holds one :meth:`TeacherAnswer.to_dict` line per
answer, appended (flushed and fsynced under a lock) as soon as it arrives, so a crash loses at
most the requests in flight; a line cut by a crash mid-write is dropped (and the file repaired)
when the cache is read. ``<cache_key>.failures.jsonl`` records the failures (they are not answers:
the next run asks again). A live run (:func:`~mmkp_helpers.teacher.run_teacher`) and a batch run
(:func:`~mmkp_helpers.teacher.batch.run_batch`) read and write the same two files, so either one
sends only what the other has not answered.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path

from .base import TeacherAnswer

#: Longest error message kept in a failure record.
MAX_ERROR_CHARS = 500


def cache_paths(teacher, cache_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(answers file, failures file) of ``teacher`` in ``cache_dir``."""
    folder = Path(cache_dir)
    key = teacher.cache_key()
    return folder / f"{key}.jsonl", folder / f"{key}.failures.jsonl"


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


def read_failures(path: str | os.PathLike) -> list[dict]:
    """The failure records of a failures file, in order (unreadable lines skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def failure_record(example_id: str, error_type: str, message: str, cache_key: str, **extra) -> dict:
    """One line of a failures file."""
    return {"id": example_id, "error_type": error_type, "error": message[:MAX_ERROR_CHARS], "cache_key": cache_key,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


class AppendLog:
    """Appends JSON lines to a file under a lock, each flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = Path(path)
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
