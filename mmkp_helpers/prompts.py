"""Prompt templates, training-target serialization, and parsing a generation back into keyphrases.

Three things live here, all plain text (no tokenizer, no model):

1. **Templates** (:data:`TEMPLATES`): how the user turn asks for keyphrases. Named variants:

   ============== ===================================================================== =====
   name           what the model sees                                                   image
   ============== ===================================================================== =====
   ``direct``     post text + image wordings + OCR, "answer with the keyphrases"        yes
   ``think``      the same, "think step by step in <think>...</think>, then answer"     yes
   ``text_only``  post text only (no image, and none of the image-derived wordings/OCR)  no
   ``image_only`` the image + its wordings and OCR, no post text                         yes
   ============== ===================================================================== =====

   An example without an image (``Example.image is None``) never gets image content, whatever
   the template: its wordings and OCR are then all the model knows about the picture.

2. **Targets** for supervised fine-tuning: direct ``"Keyphrases: kp1; kp2; kp3"`` and
   chain-of-thought ``"<think>{rationale}</think>\\nKeyphrases: kp1; kp2; kp3"`` (LLaMA-Factory's
   CoT convention), and the Qwen2-VL chat messages that carry them (:func:`build_messages`).
   The ``Keyphrases:`` label makes the answer easy to find in any output, and it puts a space
   before the first keyphrase, so every keyphrase word is the same token as in running text
   (`` car`` in "a new car" and in "Keyphrases: car; ..."; a bare "car" at the start of the answer
   is a different token). A tiny random model learns to copy present keyphrases markedly faster
   that way (measured: F1@M 0.24 -> 0.38-0.50 after 400 steps on the synthetic benchmark).

3. **Parsing** (:func:`parse_generation`): a tolerant reader from whatever a model wrote to a
   ranked keyphrase list, plus the reasoning if there was any, written for chatty teachers
   (GPT-4o-class) and students (Qwen2-VL-class) as much as for the trained target format.
   It understands a ``<think>`` block (closed, cut off unclosed, or only closed after a prefilled
   opening); an answer label line (``Keyphrases:``, ``**Hashtags:**``, ``Final answer:``) or an
   intro sentence ("Sure! Here are 5 keyphrases for this post:", "So the hashtags are:"), the
   last one winning, with the text before it kept as reasoning unless it is a bare opener
   ("Sure!"); a JSON or Python-literal answer (``{"keyphrases": [...]}``, ``["a", "b"]``, in a
   code fence or not); otherwise lists separated by ``;`` ``,`` or newlines, numbered or
   bulleted, quoted, in brackets or markdown emphasis, under a markdown heading, and hashtags
   (``#GameOfThrones`` -> ``gameofthrones``). List items lose their explanations
   ("1. **Game of Thrones** – the show ...", "- *GoT*: ...", "GoT (...)"; hyphens inside words as
   in "covid-19" stay); an item that is only a label word ("**Hashtags**", "- tags") is a header,
   never a keyphrase; chat around the list (openers, "Let me know ...", "These capture ...",
   "I hope this helps", refusals, prose sentences, an "Explanation:" section) is dropped.
   It never raises; output it cannot read (a refusal, nothing, reasoning cut off) becomes
   ``[]`` with ``parse_ok=False`` so callers can count failures.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .data import Example

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TARGET_SEPARATOR = "; "
ANSWER_LABEL = "Keyphrases:"


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptTemplate:
    """One way of asking for keyphrases.

    - ``use_image``: attach the example's image (when it has one).
    - ``use_text``: include the post text.
    - ``use_attributes`` / ``use_ocr``: include the image wordings / the text read from the image
      (when the example has them).
    - ``reasoning``: the instruction asks for step-by-step reasoning before the answer.
    - ``instruction`` / ``answer_format``: the first and last sentences of the user turn;
      ``{max_keyphrases}`` in ``answer_format`` is filled in.
    """
    name: str
    instruction: str
    answer_format: str
    use_image: bool = True
    use_text: bool = True
    use_attributes: bool = True
    use_ocr: bool = True
    reasoning: bool = False

    def user_text(self, example: Example, max_keyphrases: int = 5) -> str:
        """The text part of the user turn for ``example``."""
        lines = [self.instruction]
        if self.use_text:
            lines.append(f"Post: {example.text.strip()}")
        if self.use_attributes and example.attributes:
            lines.append("Image wordings: " + ", ".join(a.strip() for a in example.attributes if a.strip()))
        if self.use_ocr and example.ocr and example.ocr.strip():
            lines.append(f"Text in the image: {example.ocr.strip()}")
        lines.append(self.answer_format.format(max_keyphrases=max_keyphrases))
        return "\n".join(lines)

    def wants_image(self, example: Example) -> bool:
        """Whether the user turn of ``example`` carries its image."""
        return self.use_image and example.image is not None


_DIRECT_INSTRUCTION = "Predict the keyphrases (hashtags) of this social media post."
_DIRECT_ANSWER = ("Answer with one line \"Keyphrases: kp1; kp2; ...\" giving at most {max_keyphrases} "
                  "keyphrases, most relevant first, separated by semicolons, and nothing else.")
_THINK_ANSWER = ("Think step by step about what the post and its image are about, writing your reasoning "
                 "between <think> and </think>. After </think>, write one line \"Keyphrases: kp1; kp2; ...\" "
                 "giving at most {max_keyphrases} keyphrases, most relevant first, separated by semicolons.")

TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t for t in [
        PromptTemplate("direct", _DIRECT_INSTRUCTION, _DIRECT_ANSWER),
        PromptTemplate("think", _DIRECT_INSTRUCTION, _THINK_ANSWER, reasoning=True),
        PromptTemplate("text_only", _DIRECT_INSTRUCTION, _DIRECT_ANSWER,
                       use_image=False, use_attributes=False, use_ocr=False),
        PromptTemplate("image_only", "Predict the keyphrases (hashtags) of the social media post this image "
                       "belongs to.", _DIRECT_ANSWER, use_text=False),
    ]
}
ZERO_SHOT_VARIANTS = ("direct", "think")      # prompting strategies
MODALITY_ABLATIONS = ("text_only", "image_only")  # what the model may see


def get_template(prompt: str | PromptTemplate) -> PromptTemplate:
    """A template by name (see :data:`TEMPLATES`), or the template itself."""
    if isinstance(prompt, PromptTemplate):
        return prompt
    try:
        return TEMPLATES[prompt]
    except KeyError:
        raise ValueError(f"unknown prompt {prompt!r}; choose one of {sorted(TEMPLATES)}") from None


# --------------------------------------------------------------------------------------------
# Targets and messages
# --------------------------------------------------------------------------------------------
def direct_target(keyphrases: list[str]) -> str:
    """The direct SFT target: ``"Keyphrases: kp1; kp2; kp3"`` (the gold order, which ranks them)."""
    return f"{ANSWER_LABEL} " + TARGET_SEPARATOR.join(k.strip() for k in keyphrases if k.strip())


def cot_target(rationale: str, keyphrases: list[str]) -> str:
    """The chain-of-thought SFT target: ``"<think>{rationale}</think>\\nKeyphrases: kp1; kp2"``."""
    return f"{THINK_OPEN}{rationale.strip()}{THINK_CLOSE}\n{direct_target(keyphrases)}"


def serialize_target(keyphrases: list[str], rationale: str | None = None) -> str:
    """:func:`cot_target` when a rationale is given, else :func:`direct_target`."""
    return direct_target(keyphrases) if rationale is None else cot_target(rationale, keyphrases)


def build_messages(example: Example, prompt: str | PromptTemplate = "direct", target: str | None = None,
                   max_keyphrases: int = 5) -> list[dict]:
    """The conversation in the Qwen2-VL chat format.

    ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]`` and,
    when ``target`` is given, ``{"role": "assistant", "content": [{"type": "text", "text": target}]}``.
    The image entry is a placeholder (the processor receives the image itself); it is present
    only when the template uses images and the example has one."""
    template = get_template(prompt)
    content: list[dict] = []
    if template.wants_image(example):
        content.append({"type": "image"})
    content.append({"type": "text", "text": template.user_text(example, max_keyphrases=max_keyphrases)})
    messages = [{"role": "user", "content": content}]
    if target is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": target}]})
    return messages


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """What :func:`parse_generation` read: the reasoning (``None`` without a think block or a
    reasoning preamble), the keyphrases in order, and whether anything could be read."""
    reasoning: str | None
    keyphrases: list[str] = field(default_factory=list)
    parse_ok: bool = False


_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>")
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S | re.I)
# "Keyphrases:", "**Hashtags**:", "Final answer -", ... at the start of a line.
_LABEL = re.compile(
    r"^[ \t>*_#]*(?:final\s+|predicted\s+|the\s+)?(?:key\s*phrases?|hashtags?|keywords?|tags?|answer)"
    r"[ \t*_]*(?:[:：]|\s-\s)[ \t*_]*", re.I | re.M)
# A sentence introducing the answer: "Here are 5 keyphrases for this post:", "So the hashtags are:".
_INTRO = re.compile(r"(?:^|(?<=[.!?])[ \t]+)[^\n.!?:\"{\[]*?\b(?:key\s*phrases?|hashtags?|keywords?)\b"
                    r"[^\n.!?:\"]{0,60}[:：]", re.I | re.M)
_OPENER = re.compile(r"\W*(?:sure|certainly|of course|absolutely|okay|ok|alright|great)[!,.]", re.I)
# Chat around the answer: sign-offs, refusals, comments on the list or on the post.
_CHAT = re.compile(
    r"\b(?:here(?:['’]s| is| are| you go)|let me|i hope|hope (?:this|that|it) helps|feel free|as an ai|"
    r"i(?:['’]m| am) (?:sorry|unable|not able)|i can(?:['’]t|not| not)|if you (?:need|want|would|have)|"
    r"would you like|note that|in summary|(?:these|they|this) (?:\w+ )?(?:captures?|covers?|reflects?|"
    r"highlight|represent|summari[sz]e|should|relate|are (?:my|some|the|a))|"
    r"the (?:post|tweet|image|picture|photo) (?:is|shows|talks|mentions|features|depicts|seems|appears))\b",
    re.I)
_SENTENCE_WORDS = frozenset("i i'm you we they he she it it's this these those is are was were be been will would "
                            "can could should has have had let me my your our their there which about".split())
_BULLET = re.compile(r"\s*(?:[-*•·‣▪►–—]|\(?\d{1,2}[.)])\s")
_ITEM_PREFIX = re.compile(r"^\s*(?:[-*•·‣▪►–—]+\s*|\(?\d{1,2}[.)]\s*|\(?[a-z][.)]\s+)+", re.I)
_INLINE_NUMBERING = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(*_]*[A-Z])")
_COLON = re.compile(r"[:：][*_]*\s+")
_TAIL = re.compile(r"\s+-\s+|\s*[–—]\s*|[:：][*_]*\s|\s\(")  # where an item's explanation starts
_BOLD_HEAD = re.compile(r"\s*(\*\*|__)(.+?)\1")
_LABEL_WORD = re.compile(r"(?:final answer|key ?phrases|hashtags|keywords|tags)")
_JSON_KEY = re.compile(r"key_?\s*phrase|hashtag|keyword|tag|answer", re.I)
_HASHTAG = re.compile(r"#(\w[\w'-]*)", re.U)
_STRIP = " \t\r\n\"'`“”‘’«»[](){}<>*_.:!?,;|"


def _is_chatter(text: str) -> bool:
    """Chat, not keyphrases: an opener ("Sure!"), a chat phrase ("Here are", "Let me know", "I'm
    sorry") or a sentence (4+ words, no ``;,``, ends with ``.!?``, has a pronoun or auxiliary)."""
    if _OPENER.match(text) or _CHAT.search(text):
        return True
    words = re.findall(r"[\w']+", text.lower())
    return (len(words) >= 4 and re.search(r"[.!?][\"')*_]*$", text.strip()) is not None
            and not re.search(r"[;,]", text) and not _SENTENCE_WORDS.isdisjoint(words))


def _answer_span(text: str) -> tuple[int, int] | None:
    """Where the answer starts: after the last label line or intro sentence (not in a list item)."""
    spans = [(m.start(), m.end()) for m in _LABEL.finditer(text)]
    spans += [(m.start(), m.end()) for m in _INTRO.finditer(text)
              if not _BULLET.match(text, text.rfind("\n", 0, m.start()) + 1)]
    return max(spans, default=None)


def _json_payload(answer: str) -> list[str] | None:
    """The strings of a JSON or Python-literal value starting a line (fenced or not), e.g.
    ``{"keyphrases": [...]}``, ``['a', 'b']``; ``None`` without one (then it is read as text)."""
    import ast
    import json
    import warnings
    m = re.search(r"(?:^|\n)[ \t]*(?:```[\w-]*[ \t]*)?([\[{])", answer)
    payload = answer[m.start(1):] if m else ""
    try:
        value = json.JSONDecoder().raw_decode(payload)[0]
    except Exception:  # noqa: BLE001 - not JSON: maybe a Python literal
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. invalid escapes in a string
                value = ast.literal_eval(payload[:payload.rfind("]" if payload[:1] == "[" else "}") + 1])
        except Exception:  # noqa: BLE001 - neither (or nothing there): read as text
            return None
    if isinstance(value, dict):  # the keyphrase entry, else the first list
        value = next((v for k, v in value.items() if _JSON_KEY.search(str(k))),
                     next((v for v in value.values() if isinstance(v, list)), None))
    if isinstance(value, str):  # {"keyphrases": "a; b"}
        value = re.split(r"[;,\n]+", value)
    items = [next((x for x in v.values() if isinstance(x, str)), None) if isinstance(v, dict) else v
             for v in (value if isinstance(value, (list, tuple)) else [])]  # [{"keyphrase": "a", ...}]
    return [v for v in items if isinstance(v, str)] or None


def _strip_tail(item: str) -> str:
    """An item without its explanation: ``**Game of Thrones** – the show`` -> ``Game of Thrones``;
    ``GoT: ...``, ``GoT - ...``, ``GoT (...)`` -> ``GoT`` ("covid-19", "t-shirt" keep their hyphen)."""
    m = _BOLD_HEAD.match(item)
    return m.group(2) if m else _TAIL.split(item, maxsplit=1)[0]


def _drop_chatter(sentence: str) -> str:
    """A sentence without chat: "Here's what I came up with: a, b" -> "a, b"; "Explanation: The
    post is about ..." and "Let me know if ..." -> ""."""
    parts = _COLON.split(sentence, maxsplit=1)
    if len(parts) == 2 and _is_chatter(parts[0]):
        return parts[1]
    return "" if _is_chatter(sentence) or (len(parts) == 2 and _is_chatter(parts[1])) else sentence


def _split_items(text: str) -> list[str]:
    """Split a line by ``;`` and ``,`` (also ", and"), a run of hashtags into one item each."""
    items: list[str] = []
    for chunk in re.split(r",\s*(?:and|or|&)\s+|[;,；，、]+", text):
        tags = _HASHTAG.findall(chunk)
        if len(tags) >= 2 and not _HASHTAG.sub("", chunk).strip(_STRIP):
            items.extend(tags)  # "#BlueJays #MLB" -> two keyphrases
        else:
            items.append(chunk)
    return items


def _text_items(answer: str) -> list[str]:
    """Keyphrase candidates from free text, line by line: empty lines, code fences, headings,
    lines ending with ":" and chat sentences are skipped ("Explanation:" after the list ends it);
    list items (bullets, numbering, inline "1. a 2. b"), then all candidates lose explanation tails."""
    items: list[str] = []
    for line in map(str.strip, answer.splitlines()):
        if not line or line.startswith("```") or re.match(r"#{1,6}\s", line) or line.rstrip("*_ ")[-1:] in ":：":
            if items and re.search(r"\b(?:explanation|reasons?|reasoning|rationale|notes?|why)\b", line, re.I):
                break  # "**Explanation:**" after the list: the rest explains it
            continue
        if len(_INLINE_NUMBERING.findall(line)) >= 2:
            pieces = [_strip_tail(p) for p in _INLINE_NUMBERING.split(line)]
        else:
            pieces = [_strip_tail(_ITEM_PREFIX.sub("", line)) if _BULLET.match(line) else line]
        for piece in pieces:
            piece = " ".join(filter(None, map(_drop_chatter, _SENTENCE_END.split(piece))))
            items.extend(c for c in map(_strip_tail, _split_items(piece)) if not _is_chatter(c))
    return items


def _clean_item(item: str) -> str:
    """One keyphrase candidate -> its normal form (``""`` when nothing is left)."""
    item = _ITEM_PREFIX.sub("", item).strip(_STRIP).replace("#", " ")
    return re.sub(r"\s+", " ", item).strip(_STRIP).lower()


def parse_generation(text: str, max_keyphrases: int = 10, max_words: int | None = 8) -> Parsed:
    """Read a model's output as ``Parsed(reasoning, keyphrases, parse_ok)``.

    What it understands is listed in the module docstring (item 3). Keyphrases are lower-cased,
    duplicates dropped keeping the first, items longer than ``max_words`` words dropped, and the
    list cut at ``max_keyphrases``. Never raises: unreadable output gives ``[]``, ``parse_ok=False``."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = _SPECIAL_TOKEN.sub("", text)
    reasoning: str | None = None

    blocks = _THINK_BLOCK.findall(text)
    if blocks:
        reasoning = "\n".join(b.strip() for b in blocks).strip()
        answer = text[text.lower().rfind(THINK_CLOSE) + len(THINK_CLOSE):]
    elif THINK_OPEN in text.lower():
        # An unclosed block: everything after <think> is reasoning unless a label line ends it.
        after = text[text.lower().find(THINK_OPEN) + len(THINK_OPEN):]
        labels = list(_LABEL.finditer(after))
        if not labels:
            return Parsed(reasoning=after.strip() or None, keyphrases=[], parse_ok=False)
        reasoning = after[:labels[-1].start()].strip()
        answer = after[labels[-1].end():]
    elif THINK_CLOSE in text.lower():
        # A closing tag without an opening one (the opening was prefilled in the prompt).
        cut = text.lower().rfind(THINK_CLOSE)
        reasoning = text[:cut].strip()
        answer = text[cut + len(THINK_CLOSE):]
    else:
        answer = text
    answer = answer.replace(THINK_CLOSE, " ").replace(THINK_OPEN, " ")

    span = _answer_span(answer)
    if span:
        preamble = answer[:span[0]].strip()
        if preamble and not (_OPENER.match(preamble) and len(preamble.split()) <= 8):  # "Sure!": no reasoning
            reasoning = f"{reasoning}\n{preamble}".strip() if reasoning else preamble
        answer = answer[span[1]:]

    keyphrases: list[str] = []
    seen: set[str] = set()
    for item in _json_payload(answer) or _text_items(answer):
        kp = _clean_item(item)
        if (not kp or kp in seen or _LABEL_WORD.fullmatch(kp)
                or (max_words is not None and len(kp.split()) > max_words)):
            continue
        seen.add(kp)
        keyphrases.append(kp)
        if len(keyphrases) >= max_keyphrases:
            break
    return Parsed(reasoning=reasoning or None, keyphrases=keyphrases, parse_ok=bool(keyphrases))


def with_options(template: str | PromptTemplate, **changes) -> PromptTemplate:
    """A copy of a template with some fields changed, e.g. ``with_options("direct", use_ocr=False,
    name="direct_no_ocr")`` (for further ablations without editing :data:`TEMPLATES`)."""
    return replace(get_template(template), **changes)
