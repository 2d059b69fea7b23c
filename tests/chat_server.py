"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests and notebooks.

A real HTTP server (``http.server.ThreadingHTTPServer`` in a daemon thread, port chosen by the
OS) that answers ``POST /v1/chat/completions`` like the real API, and can misbehave on cue::

    with ChatServer(id_faults={"post-1": ["429", "500"]}, delay=0.05) as server:
        teacher = OpenAITeacher("fake-model", base_url=server.url, timeout=0.5)
        ...
        server.requests, server.per_id["post-1"], server.max_in_flight

**Answers.** By default it answers in rationalize style: it reads the gold keyphrases from the
line ``Gold keyphrases (in this order): a; b`` of the request's user text and replies
``<think>...</think>\\nKeyphrases: a; b``. Without that line (predict mode) it answers with the
first word of the post. ``answers={id: text}`` or ``answer_fn(request_json, example_id) -> text``
override that. ``usage`` counts words (prompt: the words of every text part plus 85 per image;
completion: the words of the answer).

**Example ids.** A request's example id is the ``X-MMKP-Example-Id`` header (what
``OpenAITeacher`` sends), else a ``Post id: <id>`` line of the user text, else None.
``per_id`` counts requests per id, ``log`` keeps ``(request number, id, fault)`` in arrival order.

**Faults.** ``faults``: a script for the requests in arrival order (the n-th request gets
``faults[n]``); ``id_faults``: a script per example id (the k-th request for that id gets
``id_faults[id][k]``). The request-order script wins when both name a fault. A fault is one of

- ``"429"``: rate limited, with a ``retry-after-ms`` header (``retry_after_ms``, small);
- ``"500"``: a server error (also with ``retry-after-ms``, so that retries are quick);
- ``"stall"``: no answer for ``stall_seconds`` (longer than the client's timeout), then a normal one;
- ``"malformed"``: status 200, ``application/json``, a body that is not JSON;
- ``"no_keyphrases"``: a chatty answer without reasoning or a keyphrase line;
- ``"drop"``: the connection is closed without any response;
- ``"leaky_400"``: a 400 whose error message echoes the request's ``Authorization`` header (a
  trap for tests that check a client never writes its key anywhere);
- ``None`` or ``"ok"``: a normal answer.

``delay`` (seconds) is added to every request while it counts as in flight; ``max_in_flight`` is
the most requests ever handled at once. ``auth_requests`` counts requests that came with an
``Authorization: Bearer <non-empty>`` header; the key itself is never stored or logged.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID_HEADER = "X-MMKP-Example-Id"
GOLD_LINE = re.compile(r"^Gold keyphrases[^:\n]*:\s*(.*)$", re.M)
POST_ID_LINE = re.compile(r"^Post id:\s*(\S+)", re.M)
POST_LINE = re.compile(r"^Post:\s*(.*)$", re.M)
FAULTS = ("429", "500", "stall", "malformed", "no_keyphrases", "drop", "leaky_400", "ok")
CHATTY = "I am not really sure what this post is about so I would rather not guess anything at all here"


def user_text(body: dict) -> str:
    """All text parts of the user turns of a chat request, joined by newlines."""
    texts = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return "\n".join(texts)


def default_answer(body: dict, example_id: str | None) -> str:
    """Rationalize style when the request shows gold keyphrases, else a one-word guess."""
    text = user_text(body)
    gold = GOLD_LINE.search(text)
    if gold:
        kps = [k.strip() for k in gold.group(1).split(";") if k.strip()]
        return (f"<think>the post and its picture point to {' then '.join(kps)}, in that order.</think>\n"
                f"Keyphrases: {'; '.join(kps)}")
    post = POST_LINE.search(text)
    word = (post.group(1).split() or ["post"])[0] if post else "post"
    return f"<think>the post starts with {word}.</think>\nKeyphrases: {word}"


class ChatServer:
    """See the module docstring."""

    #: The request handler class (a subclass of ``_Handler``; None: ``_Handler``), for servers
    #: that add routes (tests/batch_server.py).
    handler_base = None

    def __init__(self, faults=None, id_faults=None, delay: float = 0.0, stall_seconds: float = 2.0,
                 retry_after_ms: int = 20, answers: dict | None = None, answer_fn=None):
        self.faults = list(faults or [])
        self.id_faults = {k: list(v) for k, v in (id_faults or {}).items()}
        self.delay = delay
        self.stall_seconds = stall_seconds
        self.retry_after_ms = retry_after_ms
        self.answers = dict(answers or {})
        self.answer_fn = answer_fn
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.reset_counts()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- bookkeeping
    def reset_counts(self) -> None:
        """Forget the counts. The scripts start again too (``faults`` counts requests, ``id_faults``
        requests per id, from here): clear ``id_faults`` first for a run without faults."""
        with self.lock:
            self.requests = 0
            self.per_id: Counter = Counter()
            self.log: list[tuple[int, str | None, str | None]] = []
            self.in_flight = 0
            self.max_in_flight = 0
            self.auth_requests = 0
            self.last_body: dict[str | None, dict] = {}

    def _admit(self, example_id: str | None, has_auth: bool, body: dict) -> str | None:
        with self.lock:
            n = self.requests
            k = self.per_id[example_id]
            self.requests += 1
            self.per_id[example_id] += 1
            self.auth_requests += int(has_auth)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults[n] if n < len(self.faults) else None
            script = self.id_faults.get(example_id, [])
            if fault in (None, "ok") and k < len(script):
                fault = script[k]
            fault = None if fault == "ok" else fault
            if fault is not None and fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
            self.log.append((n, example_id, fault))
            self.last_body[example_id] = body
            return fault

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    # ---------------------------------------------------------------- life cycle
    @property
    def url(self) -> str:
        """The base URL to give a client (``http://127.0.0.1:PORT/v1``)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running (use it as a context manager or call start())")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "ChatServer":
        handler = type("Handler", (self.handler_base or _Handler,), {"chat": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.closing.clear()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- answers
    def completion(self, body: dict, example_id: str | None, content: str) -> dict:
        prompt_words = len(user_text(body).split()) + sum(
            len(str(m.get("content")).split()) for m in body.get("messages", []) if m.get("role") == "system")
        images = sum(1 for m in body.get("messages", []) if isinstance(m.get("content"), list)
                     for p in m["content"] if p.get("type") == "image_url")
        prompt = prompt_words + 85 * images
        completion = len(content.split())
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}

    def content_for(self, body: dict, example_id: str | None) -> str:
        if example_id in self.answers:
            return self.answers[example_id]
        if self.answer_fn is not None:
            return self.answer_fn(body, example_id)
        return default_answer(body, example_id)


class _Handler(BaseHTTPRequestHandler):
    chat: ChatServer  # set on the subclass made by ChatServer.start
    server_version = "FakeChat/1.0"

    def log_message(self, format, *args):  # quiet, and never logs headers
        pass

    def _send_json(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

    def do_POST(self):  # noqa: N802 - http.server's naming
        chat = self.chat
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "request body is not JSON", "invalid_request_error")
            return
        auth = self.headers.get("Authorization") or ""
        has_auth = auth.startswith("Bearer ") and bool(auth[len("Bearer "):].strip())
        example_id = self.headers.get(ID_HEADER)
        if example_id is not None:
            example_id = urllib.parse.unquote(example_id)
        else:
            found = POST_ID_LINE.search(user_text(body))
            example_id = found.group(1) if found else None
        fault = chat._admit(example_id, has_auth, body)
        try:
            if chat.delay:
                chat.closing.wait(chat.delay)
            quick = {"retry-after-ms": str(chat.retry_after_ms)}
            if fault == "429":
                self._error(429, "Rate limit reached, slow down", "rate_limit_error", quick)
            elif fault == "500":
                self._error(500, "The server had an error while processing your request", "server_error", quick)
            elif fault == "leaky_400":
                self._error(400, f"bad request (you sent Authorization: {auth})", "invalid_request_error")
            elif fault == "malformed":
                self._send_json(200, b'{"id": "chatcmpl-x", "choices": [ this is not json')
            elif fault == "drop":
                self.close_connection = True  # nothing is written: the client sees the connection close
            else:
                if fault == "stall":
                    chat.closing.wait(chat.stall_seconds)
                content = CHATTY if fault == "no_keyphrases" else chat.content_for(body, example_id)
                self._send_json(200, chat.completion(body, example_id, content))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a stall past its timeout, a killed process)
        finally:
            chat._leave()
