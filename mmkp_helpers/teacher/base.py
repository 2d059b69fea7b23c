"""What every teacher shares: the answer record, the chat request, the cache key.

A teacher turns an :class:`~mmkp_helpers.data.Example` into a :class:`TeacherAnswer`: a rationale
(the reasoning between ``<think>`` and ``</think>``) and the keyphrases it ends on, read back with
:func:`mmkp_helpers.prompts.parse_generation`. The request it would send is an OpenAI-style chat:
a system turn and a user turn holding the post (text, image wordings, OCR), the image as a
base64 ``data:image/png;base64,...`` URL when there is one and, in *rationalize* mode, the gold
keyphrases. Offline teachers build the same request (so :func:`~mmkp_helpers.teacher.estimate_run`
treats every teacher alike) but answer without sending it.
"""
from __future__ import annotations

import base64
import io
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..data import Example
from ..prompts import ANSWER_LABEL, THINK_CLOSE, THINK_OPEN, parse_generation

MODES = ("predict", "rationalize")
#: Bumped whenever the request text changes, so that cached answers of an older prompt are not reused.
PROMPT_VERSION = "v1"
#: How the user turn names the gold keyphrases in rationalize mode (tests/chat_server.py reads it).
GOLD_LABEL = "Gold keyphrases (in this order):"
#: Longest image side sent (OpenAI scales larger images down to fit 2048 x 2048 anyway).
MAX_IMAGE_SIDE = 2048
#: Word budget asked of a rationale.
RATIONALE_WORDS = 60

SYSTEM_PROMPT = (
    "You annotate social media posts with keyphrases (hashtags). You reason briefly and faithfully from "
    "the evidence a post gives: its text, its image, the image wordings (words an image tagger predicted "
    "for the image) and the text read from the image.")

_PREDICT_TASK = (
    "Think step by step about what the post and its image are about, then give at most {k} keyphrases, "
    "most relevant first. Write your reasoning between <think> and </think> in at most {words} words, then "
    "one line \"Keyphrases: kp1; kp2; ...\" with the keyphrases separated by semicolons.")
_RATIONALIZE_TASK = (
    "Explain step by step, in at most {words} words, which evidence in the post (its text, its image, the "
    "image wordings or the text in the image) leads to each gold keyphrase, in the order given. Reason from "
    "the evidence to each keyphrase in turn; do not start by listing the keyphrases. Write the explanation "
    "between <think> and </think>, then one line \"Keyphrases: kp1; kp2; ...\" with the gold keyphrases "
    "exactly as given, separated by semicolons.")


@dataclass
class TeacherAnswer:
    """One teacher answer for one example.

    ``rationale``: the reasoning (None when the answer had none); ``keyphrases``: the keyphrases the
    answer ends on, parsed; ``raw``: the whole answer text; ``mode``: "predict" or "rationalize";
    token counts from the API's usage (0 for offline teachers); ``seconds``: latency of the call
    (the client's retries included); ``error``: why there is no answer, if so."""
    id: str
    rationale: str | None
    keyphrases: list[str]
    raw: str | None
    mode: str
    input_tokens: int
    output_tokens: int
    seconds: float
    error: str | None = None
    #: How the answer was obtained: "live" (a chat-completions call or an offline teacher) or
    #: "batch" (the Batch API, billed at its discount).
    channel: str = "live"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "TeacherAnswer":
        """The inverse of :meth:`to_dict`; unknown keys are ignored (newer cache files)."""
        names = {f.name for f in fields(cls)}
        missing = {"id", "rationale", "keyphrases", "raw", "mode"} - set(record)
        if missing:
            raise ValueError(f"not a teacher answer: missing {sorted(missing)}")
        values = {k: v for k, v in record.items() if k in names}
        values.setdefault("input_tokens", 0)
        values.setdefault("output_tokens", 0)
        values.setdefault("seconds", 0.0)
        values["keyphrases"] = list(values.get("keyphrases") or [])
        return cls(**values)


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (a file name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "_"


def answer_from_text(example_id: str, raw: str | None, mode: str, input_tokens: int = 0, output_tokens: int = 0,
                     seconds: float = 0.0) -> TeacherAnswer:
    """A :class:`TeacherAnswer` from a raw answer text (parsed with ``parse_generation``)."""
    parsed = parse_generation(raw or "")
    rationale = (parsed.reasoning or "").strip() or None
    return TeacherAnswer(id=example_id, rationale=rationale, keyphrases=list(parsed.keyphrases), raw=raw,
                         mode=mode, input_tokens=int(input_tokens or 0), output_tokens=int(output_tokens or 0),
                         seconds=float(seconds))


def format_answer(rationale: str, keyphrases: list[str]) -> str:
    """``<think>rationale</think>\\nKeyphrases: kp1; kp2`` (the format every teacher is asked for)."""
    return f"{THINK_OPEN}{rationale.strip()}{THINK_CLOSE}\n{ANSWER_LABEL} " + "; ".join(keyphrases)


def image_png_bytes(path: str | Path, max_side: int = MAX_IMAGE_SIDE) -> bytes:
    """The image at ``path`` as PNG bytes (RGB; scaled down to fit ``max_side`` when larger)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def image_data_url(path: str | Path) -> str:
    """``data:image/png;base64,...`` for the image at ``path``."""
    return "data:image/png;base64," + base64.b64encode(image_png_bytes(path)).decode("ascii")


class Teacher:
    """The shared part of every teacher (subclasses set ``name`` and ``model`` and implement
    :meth:`_answer_text`). ``paid``: whether answers cost money (only API teachers)."""

    name = "teacher"
    model = "none"
    paid = False
    prompt_version = PROMPT_VERSION
    max_keyphrases = 8
    max_tokens: int | None = None
    image_detail = "low"
    #: Count the tokens of each request and answer with the estimate's counter when the teacher
    #: reports none (offline teachers), so that a free run can be priced "as if it were paid".
    count_tokens = False

    def __init__(self, mode: str = "rationalize", count_tokens: bool = False):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        self.count_tokens = bool(count_tokens)

    # ---------------------------------------------------------------- identity
    def _key_parts(self) -> list[str]:
        return [self.name, self.model, self.mode, self.prompt_version]

    def cache_key(self) -> str:
        """A file-name-safe key of everything that shapes the answers (name, model, mode,
        prompt version, and what a subclass adds)."""
        return "-".join(safe_name(p) for p in self._key_parts())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, mode={self.mode!r}, prompt_version={self.prompt_version!r})"

    def redact(self, text: str) -> str:
        """``text`` with any secret this teacher knows replaced (offline teachers know none)."""
        return text

    def prepare(self) -> None:
        """Check that the teacher can answer (e.g. that its API key is set); called by
        :func:`~mmkp_helpers.teacher.run_teacher` before anything is sent."""

    # ---------------------------------------------------------------- the request
    def user_text(self, example: Example) -> str:
        """The text part of the user turn."""
        lines = [f"Post: {example.text.strip()}"]
        words = [a.strip() for a in example.attributes if a.strip()]
        if words:
            lines.append("Image wordings: " + ", ".join(words))
        if example.ocr and example.ocr.strip():
            lines.append(f"Text in the image: {example.ocr.strip()}")
        if example.image is not None:
            lines.append("The post's image is attached.")
        if self.mode == "rationalize":
            lines.append(f"{GOLD_LABEL} " + "; ".join(k.strip() for k in example.keyphrases))
            lines.append(_RATIONALIZE_TASK.format(words=RATIONALE_WORDS))
        else:
            lines.append(_PREDICT_TASK.format(words=RATIONALE_WORDS, k=self.max_keyphrases))
        return "\n".join(lines)

    def messages(self, example: Example, image_data: bool = True) -> list[dict]:
        """The chat request for ``example``: system + user (text, then the image as an
        ``image_url`` part when the example has one). ``image_data=False`` leaves the URL empty
        (for counting tokens without encoding the image)."""
        content: list[dict] = [{"type": "text", "text": self.user_text(example)}]
        if example.image is not None:
            url = image_data_url(example.image) if image_data else ""
            content.append({"type": "image_url", "image_url": {"url": url, "detail": self.image_detail}})
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]

    # ---------------------------------------------------------------- answering
    def _answer_text(self, example: Example) -> tuple[str | None, int, int]:
        """(raw answer text, input tokens, output tokens) for one example."""
        raise NotImplementedError

    def counted_tokens(self, example: Example, raw: str | None) -> tuple[int, int]:
        """(input, output) tokens of ``example``'s request and the answer ``raw``, counted as
        :func:`~mmkp_helpers.teacher.estimate_run` counts them (tiktoken ``o200k_base`` or its
        offline fallback; images by OpenAI's rule): what a paid endpoint would have billed,
        approximately."""
        from .tokens import count_text_tokens, image_size, messages_tokens

        sizes = [image_size(example.image)] if example.image is not None and self.image_detail != "low" else None
        text, images = messages_tokens(self.messages(example, image_data=False), self.image_detail, sizes)
        return text + images, count_text_tokens(raw or "")

    def answer(self, example: Example) -> TeacherAnswer:
        """One synchronous answer (raises on failure). With ``count_tokens`` an answer that
        reports no tokens gets :meth:`counted_tokens`."""
        start = time.perf_counter()
        raw, n_in, n_out = self._answer_text(example)
        if self.count_tokens and not (n_in or n_out):
            n_in, n_out = self.counted_tokens(example, raw)
        return answer_from_text(example.id, raw, self.mode, n_in, n_out, time.perf_counter() - start)
