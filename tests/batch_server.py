"""A fake OpenAI Batch API (files and batches) on 127.0.0.1, beside the fake chat completions.

:class:`BatchServer` is a :class:`chat_server.ChatServer` (``POST /v1/chat/completions`` works
as there, so a live run and a batch run can share one server) that adds the routes the official
``openai`` client uses for batches:

- ``POST /v1/files`` (multipart: ``purpose``, ``file``) -> a file object; ``GET
  /v1/files/{id}/content`` -> its bytes (input, output and error files alike);
- ``POST /v1/batches`` -> a batch in ``validating``; ``GET /v1/batches/{id}`` -> the batch,
  ``in_progress`` until it has been retrieved ``polls_to_finish`` times, then finished (its output
  and error files written at that moment); ``GET /v1/batches`` -> the list, newest first.

Answers are the chat server's (``answers``, ``answer_fn`` or the rationalize-style default) with
the same word-count ``usage``, keyed by ``custom_id``. Faults:

- ``batch_faults``: one per batch in creation order: ``None``/``"ok"``; ``"failed"`` (ends
  ``failed`` with an ``errors`` list, no output file); ``"expired"`` (ends ``expired``: the first
  ``expired_share`` of its lines answered, the rest ``batch_expired`` in the error file);
  ``"leaky_failed"`` (``failed``, with an error message that echoes the ``Authorization`` header of
  the create request: a trap for a client that would write it down);
- ``line_faults``: ``{custom_id: [fault per appearance of that id in a finished batch]}`` with
  ``"error_status"`` (a 500 response in the error file), ``"error_object"`` (no response, an
  ``error`` object) or ``"no_keyphrases"`` (a 200 answer without reasoning or keyphrases);
- ``max_requests``: a batch whose file has more lines ends ``failed`` (as the real API
  validates it); ``max_file_bytes``: a larger upload is refused with a 400.

Counts: ``uploads``, ``batches_created``, ``retrieves``, ``answered_per_id`` (200 lines per
custom_id, over every batch), ``lines_per_id``, ``batch_requests`` and ``batch_auth_requests``
(requests to the file and batch routes, and those with a non-empty Bearer token). The key itself
is never stored, except in memory for the ``"leaky_failed"`` trap.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import math
import threading
import time
from collections import Counter

from chat_server import CHATTY, ChatServer, _Handler

BATCH_FAULTS = ("ok", "failed", "expired", "leaky_failed")
LINE_FAULTS = ("error_status", "error_object", "no_keyphrases", "ok")


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``{field name: (file name or None, bytes)}`` of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    out = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return out


class BatchServer(ChatServer):
    """See the module docstring."""

    def __init__(self, batch_faults=None, line_faults=None, polls_to_finish: int = 2, expired_share: float = 0.5,
                 max_requests: int | None = None, max_file_bytes: int | None = None, **chat_settings):
        super().__init__(**chat_settings)
        self.batch_faults = list(batch_faults or [])
        self.line_faults = {k: list(v) for k, v in (line_faults or {}).items()}
        self.polls_to_finish = polls_to_finish
        self.expired_share = expired_share
        self.max_requests = max_requests
        self.max_file_bytes = max_file_bytes
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_lock = threading.Lock()
        self.uploads = 0
        self.batches_created = 0
        self.retrieves = 0
        self.batch_requests = 0
        self.batch_auth_requests = 0
        self.answered_per_id: Counter = Counter()
        self.lines_per_id: Counter = Counter()
        self._auth: dict[str, str] = {}  # batch id -> Authorization header, for the leaky trap only

    handler_base = None  # set below, once _BatchHandler exists

    # ---------------------------------------------------------------- files
    def add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        with self.batch_lock:
            file_id = f"file-{len(self.files) + 1}"
            record = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                      "filename": filename, "purpose": purpose, "status": "processed"}
            self.files[file_id] = {"meta": record, "data": data}
            return record

    # ---------------------------------------------------------------- batches
    def create_batch(self, request: dict, auth: str) -> dict:
        with self.batch_lock:
            n = self.batches_created
            self.batches_created += 1
            batch_id = f"batch_{n + 1}"
            fault = self.batch_faults[n] if n < len(self.batch_faults) else None
            fault = None if fault == "ok" else fault
            if fault is not None and fault not in BATCH_FAULTS:
                raise ValueError(f"unknown batch fault {fault!r}; choose one of {BATCH_FAULTS}")
            batch = {"id": batch_id, "object": "batch", "endpoint": request.get("endpoint"),
                     "input_file_id": request.get("input_file_id"),
                     "completion_window": request.get("completion_window"), "status": "validating",
                     "created_at": int(time.time()), "metadata": request.get("metadata"), "output_file_id": None,
                     "error_file_id": None, "errors": None,
                     "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            self.batches[batch_id] = {"batch": batch, "fault": fault, "polls": 0}
            if fault == "leaky_failed":
                self._auth[batch_id] = auth
            return dict(batch)

    def retrieve_batch(self, batch_id: str) -> dict | None:
        with self.batch_lock:
            self.retrieves += 1
            entry = self.batches.get(batch_id)
            if entry is None:
                return None
            batch = entry["batch"]
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                return dict(batch)
            entry["polls"] += 1
            if entry["polls"] < self.polls_to_finish or entry.get("finishing"):
                batch["status"] = "in_progress" if not entry.get("finishing") else "finalizing"
                return dict(batch)
            entry["finishing"] = True
        self._finish(batch_id)
        with self.batch_lock:
            return dict(self.batches[batch_id]["batch"])

    def _finish(self, batch_id: str) -> None:
        entry = self.batches[batch_id]
        batch, fault = entry["batch"], entry["fault"]
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["data"].decode("utf-8").splitlines()
                 if line.strip()]
        batch["request_counts"]["total"] = len(lines)
        if fault in ("failed", "leaky_failed") or (self.max_requests is not None and len(lines) > self.max_requests):
            message = ("the input file has more requests than the limit" if fault is None else
                       "validation failed" + (f" (request had Authorization: {self._auth.pop(batch_id, '')})"
                                              if fault == "leaky_failed" else ""))
            batch.update(status="failed", failed_at=int(time.time()),
                         errors={"object": "list", "data": [{"code": "invalid_request", "message": message,
                                                             "line": None, "param": None}]})
            return
        answered_lines = len(lines) if fault != "expired" else math.floor(self.expired_share * len(lines))
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id, body = line["custom_id"], line["body"]
            with self.batch_lock:
                k = self.lines_per_id[custom_id]
                self.lines_per_id[custom_id] += 1
            script = self.line_faults.get(custom_id, [])
            line_fault = script[k] if k < len(script) else None
            if line_fault is not None and line_fault not in LINE_FAULTS:
                raise ValueError(f"unknown line fault {line_fault!r}; choose one of {LINE_FAULTS}")
            request_id = f"batch_req_{batch_id}_{number}"
            if number >= answered_lines:
                errors.append({"id": request_id, "custom_id": custom_id, "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})
            elif line_fault == "error_status":
                errors.append({"id": request_id, "custom_id": custom_id, "error": None,
                               "response": {"status_code": 500, "request_id": request_id, "body": {"error": {
                                   "message": "The server had an error processing your request", "type": "server_error",
                                   "code": None}}}})
            elif line_fault == "error_object":
                errors.append({"id": request_id, "custom_id": custom_id, "response": None,
                               "error": {"code": "server_error", "message": "internal error for this request"}})
            else:
                content = CHATTY if line_fault == "no_keyphrases" else self.content_for(body, custom_id)
                output.append({"id": request_id, "custom_id": custom_id, "error": None,
                               "response": {"status_code": 200, "request_id": request_id,
                                            "body": self.completion(body, custom_id, content)}})
                with self.batch_lock:
                    self.answered_per_id[custom_id] += 1
        text = lambda records: "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")  # noqa: E731
        if output:
            batch["output_file_id"] = self.add_file(text(output), f"{batch_id}_output.jsonl", "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self.add_file(text(errors), f"{batch_id}_error.jsonl", "batch_output")["id"]
        batch["request_counts"].update(completed=len(output), failed=len(errors))
        status = "expired" if fault == "expired" else "completed"
        batch.update(status=status, **{f"{status}_at": int(time.time())})

    def list_batches(self) -> dict:
        with self.batch_lock:
            data = [dict(e["batch"]) for e in reversed(list(self.batches.values()))]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}


class _BatchHandler(_Handler):
    chat: BatchServer

    def _count(self) -> str:
        auth = self.headers.get("Authorization") or ""
        with self.chat.batch_lock:
            self.chat.batch_requests += 1
            self.chat.batch_auth_requests += int(auth.startswith("Bearer ") and bool(auth[7:].strip()))
        return auth

    def _route(self) -> list[str]:
        return [p for p in self.path.split("?")[0].split("/") if p]

    def do_POST(self):  # noqa: N802
        parts = self._route()
        if parts[-2:] == ["chat", "completions"]:
            return super().do_POST()
        auth = self._count()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        server = self.chat
        if parts[-1:] == ["files"]:
            if server.max_file_bytes is not None and length > server.max_file_bytes:
                return self._error(400, f"file too large ({length} bytes; limit {server.max_file_bytes})",
                                   "invalid_request_error")
            fields = parse_multipart(self.headers.get("Content-Type", ""), raw)
            if "file" not in fields:
                return self._error(400, "missing file", "invalid_request_error")
            name, data = fields["file"]
            purpose = fields.get("purpose", (None, b""))[1].decode("utf-8")
            server.uploads += 1
            return self._send_json(200, server.add_file(data, name or "upload.jsonl", purpose))
        if parts[-1:] == ["batches"]:
            request = json.loads(raw or b"{}")
            if request.get("input_file_id") not in server.files:
                return self._error(400, "unknown input_file_id", "invalid_request_error")
            return self._send_json(200, server.create_batch(request, auth))
        return self._error(404, f"no route {self.path}", "not_found")

    def do_GET(self):  # noqa: N802
        self._count()
        parts = self._route()
        server = self.chat
        if len(parts) >= 2 and parts[-1] == "content" and parts[-3] == "files":
            entry = server.files.get(parts[-2])
            if entry is None:
                return self._error(404, "no such file", "invalid_request_error")
            data = entry["data"]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if parts[-1:] == ["batches"]:
            return self._send_json(200, server.list_batches())
        if len(parts) >= 2 and parts[-2] == "batches":
            batch = server.retrieve_batch(parts[-1])
            if batch is None:
                return self._error(404, "no such batch", "invalid_request_error")
            return self._send_json(200, batch)
        return self._error(404, f"no route {self.path}", "not_found")


BatchServer.handler_base = _BatchHandler
