"""A teacher behind any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM, Ollama).

Retries and timeouts are the official ``openai`` client's own (``max_retries``, ``timeout``):
it retries connection errors, timeouts, 408, 409, 429 and 5xx with exponential backoff
(0.5 s doubling, at most 8 s, with jitter), honouring the server's ``retry-after-ms`` /
``retry-after`` headers up to two minutes. It does not retry a 200 whose body is not valid JSON,
nor other 4xx errors; those raise at once (and :func:`~mmkp_helpers.teacher.run_teacher`
records them as failures).

The API key is read from the environment variable named by ``api_key_env`` when the client is
first needed (so a teacher can be built and its cost estimated without a key), handed to the
client and kept nowhere else: not in ``repr``, the cache key, answers or error messages
(:meth:`OpenAITeacher.redact` scrubs it from any text that might echo it).
"""
from __future__ import annotations

import os
import threading
import urllib.parse

from ..data import Example
from .base import Teacher

#: The request header that carries the example id (not part of the prompt; servers ignore it,
#: the test server reads it to count requests per example).
EXAMPLE_ID_HEADER = "X-MMKP-Example-Id"


class MissingAPIKeyError(RuntimeError):
    """The environment variable that should hold the API key is not set."""


class OpenAITeacher(Teacher):
    """A chat-completions model as a teacher.

    - ``model``: the model name the endpoint knows (``gpt-4o-mini``, ``Qwen/Qwen2-VL-7B-Instruct``...).
    - ``base_url``: the endpoint (``None``: OpenAI's; ``http://localhost:8000/v1`` for vLLM,
      ``http://localhost:11434/v1`` for Ollama).
    - ``api_key_env``: the environment variable holding the key (local servers accept any value).
    - ``mode``: "rationalize" (shown the gold keyphrases, explains them) or "predict".
    - ``temperature``, ``max_tokens``: sampling settings; ``max_tokens_param`` names the token
      limit field (``"max_completion_tokens"`` for OpenAI's reasoning models).
    - ``timeout`` (seconds per attempt) and ``max_retries``: passed to ``openai.OpenAI``.
    - ``image_detail``: "low" (85 tokens an image on OpenAI), "high" or "auto".
    """

    name = "openai"
    paid = True

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 mode: str = "rationalize", temperature: float = 0.0, max_tokens: int | None = 512,
                 timeout: float = 60.0, max_retries: int = 3, image_detail: str = "low",
                 max_tokens_param: str = "max_tokens"):
        super().__init__(mode)
        if not model:
            raise ValueError("model must name the endpoint's model")
        if image_detail not in ("low", "high", "auto"):
            raise ValueError(f"image_detail must be 'low', 'high' or 'auto', not {image_detail!r}")
        self.model = str(model)
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_tokens_param = max_tokens_param
        self.timeout = timeout
        self.max_retries = max_retries
        self.image_detail = image_detail
        self._client = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"OpenAITeacher(model={self.model!r}, base_url={self.base_url!r}, mode={self.mode!r}, "
                f"api_key_env={self.api_key_env!r}, temperature={self.temperature}, max_tokens={self.max_tokens}, "
                f"timeout={self.timeout}, max_retries={self.max_retries}, image_detail={self.image_detail!r})")

    def __getstate__(self):  # a pickled teacher carries no client (and so no key)
        state = dict(self.__dict__)
        state["_client"] = None
        state.pop("_client_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._client_lock = threading.Lock()

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise MissingAPIKeyError(f"the environment variable {self.api_key_env} is not set: put the API key "
                                     f"there (for a local vLLM/Ollama server any non-empty value works)")
        return key

    def redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        if key and len(key) >= 4 and text:
            text = text.replace(key, "[REDACTED]")
        return text

    def prepare(self) -> None:
        self.client()

    def client(self):
        """The ``openai.OpenAI`` client (built once, thread-safe to share)."""
        with self._client_lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key(), timeout=self.timeout,
                                             max_retries=self.max_retries)
            return self._client

    def request_body(self, example: Example) -> dict:
        """The chat-completions request body for ``example`` (model, messages, temperature, the
        token limit): what a live call sends and what a Batch API line carries."""
        body = {"model": self.model, "messages": self.messages(example), "temperature": self.temperature}
        if self.max_tokens is not None:
            body[self.max_tokens_param] = self.max_tokens
        return body

    def _answer_text(self, example: Example) -> tuple[str | None, int, int]:
        body = self.request_body(example)
        request = {k: body.pop(k) for k in ("model", "messages", "temperature")}
        if "max_tokens" in body:
            request["max_tokens"] = body.pop("max_tokens")
        if body:
            request["extra_body"] = body  # e.g. max_completion_tokens for reasoning models
        request["extra_headers"] = {EXAMPLE_ID_HEADER: urllib.parse.quote(str(example.id), safe="")}
        response = self.client().chat.completions.create(**request)
        if not getattr(response, "choices", None):
            raise ValueError(f"the endpoint answered without choices: {type(response).__name__}")
        content = response.choices[0].message.content
        usage = getattr(response, "usage", None)
        n_in = getattr(usage, "prompt_tokens", 0) or 0
        n_out = getattr(usage, "completion_tokens", 0) or 0
        return content, int(n_in), int(n_out)
