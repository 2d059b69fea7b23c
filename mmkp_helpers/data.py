"""The ``Example`` record and everything that reads or writes examples.

Formats read (and written, for JSONL):

- **CMKP layout** (:func:`load_cmkp`): ``ROOT/{split}_src.txt``, one post a line,
  ``text<sep>kp1;kp2;...<sep>image_url``, plus the optional line-aligned
  ``{split}_attribute_cleaned.txt`` (five image "wordings" a line) and ``{split}_ocr_final.txt``
  (text read from the image, mostly empty), plus an optional images folder where a post's image
  is the basename of its URL. A post whose image is missing or unreadable keeps ``image=None``
  and falls back to text + wordings + OCR; the loader counts those (:data:`last_load_report`).
- **JSONL** (:func:`read_jsonl`, :func:`write_jsonl`), this project's own format, one example a
  line: ``{"id", "text", "keyphrases", "image", "attributes", "ocr"}`` plus ``"meta"`` when it is
  not empty. Image paths are stored relative to the JSONL file's folder when they lie under it.
- **LLaVA-style conversation JSON** (:func:`read_llava_json`), as used by later MMKP work.

Bad input never passes silently and never crashes with a bare traceback: every problem in a file
raises :class:`DataError` (a ``ValueError``) whose message starts with ``path:LINE:``.

The real CMKP files come from :func:`cmkp_dir` (defined in :mod:`mmkp_helpers.cmkp`, with the
training-file fetcher, :func:`dataset_label` and :func:`inputs_label`, all re-exported here): the
folder named by ``MMKP_CMKP_DIR``, or a cache folder filled from the upstream repository with
SHA-256 checks (:data:`CMKP_FILES`); when neither works it raises :class:`FetchError` saying so.
:func:`split_examples` and :func:`subsample` cut example lists deterministically, and
:func:`train_keyphrases` lists a training set's keyphrases (for the evaluator's "unseen" subset).
"""
from __future__ import annotations

import json
import os
import random
import re
import urllib.parse
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

# Re-exported from :mod:`mmkp_helpers.cmkp`, which never imports this module (one direction:
# data -> cmkp; the CMKP line format is cmkp.split_src_line, made an Example here).
from .cmkp import (CMKP_ENV, CMKP_FILES, CMKP_URL_BASE, SEP, FetchError, cmkp_dir, cmkp_sources,  # noqa: F401
                   dataset_label, decode_cmkp_vocab, fetch_cmkp_train, inputs_label, sha256_file, split_src_line,
                   verify_cmkp)


@dataclass
class Example:
    """One social-media post and its keyphrases.

    - ``keyphrases``: the gold keyphrases, in their given order (ranked for CMKP).
    - ``image``: path to the image file, or None when there is none (text, wordings and OCR
      are then all a model sees of the image).
    - ``attributes``: image wordings (attribute words predicted from the image, CMKP's
      ``*_attribute_cleaned.txt``).
    - ``ocr``: text read from the image.
    - ``source``: where it came from, ``file:line`` (1-based line).
    - ``meta``: anything else; the synthetic benchmark keeps its ground truth here
      (what is drawn, which cue gives which keyphrase, the kind of each keyphrase).
    """
    id: str
    text: str
    keyphrases: list[str]
    image: str | None = None
    attributes: list[str] = field(default_factory=list)
    ocr: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "Example":
        """The inverse of :meth:`to_dict` (unknown keys are refused with a ``TypeError``)."""
        return cls(**record)

    @property
    def kinds(self) -> dict[str, str]:
        """``meta["kinds"]`` (keyphrase -> kind name) when the example carries one, else ``{}``."""
        kinds = self.meta.get("kinds")
        return dict(kinds) if isinstance(kinds, dict) else {}


class DataError(ValueError):
    """A problem in an input file; the message always starts with ``path:LINE:``."""

    def __init__(self, path: str | os.PathLike, line: int, message: str):
        self.path = str(path)
        self.line = int(line)
        self.reason = message
        super().__init__(f"{self.path}:{self.line}: {message}")

    def __reduce__(self):  # keep the three-argument constructor picklable
        return (type(self), (self.path, self.line, self.reason))


# --------------------------------------------------------------------------------------------
# Reading lines
# --------------------------------------------------------------------------------------------
def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, without line endings (``\\n`` or ``\\r\\n``).

    Lines are split on ``\\n`` only, as Python's ``readlines`` and the CMKP scripts do, so line
    numbers match an editor's. A final newline does not start an extra line. Invalid UTF-8 raises
    :class:`DataError` naming the line."""
    path = Path(path)
    data = path.read_bytes()
    if not data:
        return []
    raw = data.split(b"\n")
    if raw[-1] == b"":
        raw.pop()
    lines = []
    for number, chunk in enumerate(raw, 1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            bad = chunk[err.start:err.start + 1]
            raise DataError(path, number, f"invalid UTF-8 (byte {bad!r} at column {err.start + 1})") from None
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        lines.append(line)
    return lines


def _check_aligned(path: Path, lines: list[str], n: int, src: Path) -> None:
    """A side file (wordings, OCR) must have exactly one line per post of ``src``."""
    if len(lines) < n:
        raise DataError(path, len(lines) + 1, f"file ends after {len(lines)} lines but {src.name} has {n} posts "
                                              "(the files must be line-aligned)")
    if len(lines) > n:
        raise DataError(path, n + 1, f"extra line: {len(lines)} lines but {src.name} has {n} posts "
                                     "(the files must be line-aligned)")


# --------------------------------------------------------------------------------------------
# The CMKP layout
# --------------------------------------------------------------------------------------------
def image_name(url: str) -> str:
    """The image file name CMKP uses for a post: the basename of the URL's path."""
    return Path(urllib.parse.urlparse(url.strip()).path).name


def parse_src_line(line: str, path: str | os.PathLike = "<string>", number: int = 1,
                   split: str = "post") -> Example:
    """One ``text<sep>kp1;kp2<sep>image_url`` line as an :class:`Example`.

    Refused with :class:`DataError`: a wrong number of ``<sep>`` fields, an empty keyphrase list,
    and an empty keyphrase inside the list (``a;;b``)."""
    try:
        text, keyphrases, url = split_src_line(line)
    except ValueError as err:
        raise DataError(path, number, str(err)) from None
    meta = {"image_url": url} if url else {}
    return Example(id=f"{split}-{number}", text=text, keyphrases=keyphrases, source=f"{path}:{number}", meta=meta)


def read_cmkp_src(path: str | os.PathLike, split: str | None = None) -> list[Example]:
    """Every post of one ``*_src.txt`` file (no wordings, OCR or images: see :func:`load_cmkp`)."""
    path = Path(path)
    if split is None:
        split = path.name[:-len("_src.txt")] if path.name.endswith("_src.txt") else path.stem
    return [parse_src_line(line, path, number, split) for number, line in enumerate(read_lines(path), 1)]


@dataclass
class LoadReport:
    """What :func:`load_cmkp` loaded, and how many posts fell back to text + wordings + OCR."""
    source: str
    n_posts: int = 0
    n_images: int = 0            # posts with a readable image file
    n_missing_images: int = 0    # image folder given, but no file for the post
    n_corrupt_images: int = 0    # a file that PIL cannot read to the end (truncated, not an image)
    n_with_attributes: int = 0   # posts with at least one wording
    n_with_ocr: int = 0          # posts with non-empty OCR text
    images_dir: str | None = None

    @property
    def n_fallback(self) -> int:
        """Posts without a usable image: a model sees their text, wordings and OCR only."""
        return self.n_posts - self.n_images

    def line(self) -> str:
        if self.images_dir is None:
            img = f"no images folder: all {self.n_posts} use text + wordings + OCR"
        else:
            img = (f"{self.n_images} with an image, {self.n_fallback} fall back to text + wordings + OCR "
                   f"({self.n_missing_images} missing, {self.n_corrupt_images} corrupted)")
        return (f"{self.source}: {self.n_posts} posts ({self.n_with_attributes} with wordings, "
                f"{self.n_with_ocr} with OCR); {img}")

    def to_dict(self) -> dict:
        return {**asdict(self), "n_fallback": self.n_fallback}


#: The report of the latest :func:`load_cmkp` call (also printed as one line).
last_load_report: LoadReport | None = None


def check_image(path: str | os.PathLike) -> str | None:
    """None when PIL reads the whole image; otherwise why not (truncated, not an image, ...).

    ``verify()`` checks the structure, a full ``load()`` decodes every pixel, which is what
    catches a truncated file. PIL's global ``LOAD_TRUNCATED_IMAGES`` switch is held off meanwhile."""
    from PIL import Image, ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        return f"{type(err).__name__}: {err}"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return None


def load_cmkp(root: str | os.PathLike, split: str, images_dir: str | os.PathLike | None = None,
              require_images: bool = False, verify_images: bool = True, verbose: bool = True) -> list[Example]:
    """The posts of ``ROOT/{split}_src.txt`` with their wordings, OCR and images.

    - ``{split}_attribute_cleaned.txt`` (-> ``Example.attributes``) and ``{split}_ocr_final.txt``
      (-> ``Example.ocr``) are read when they exist and must be line-aligned with the posts.
    - ``images_dir``: a post's image is ``images_dir/<basename of its URL>``. A missing file
      leaves ``image=None`` (the post falls back to text + wordings + OCR) and is counted; with
      ``verify_images`` every file is decoded, and a corrupted or truncated one is counted the same
      way, with a warning naming the post's file and line. ``require_images=True`` turns both into
      a :class:`DataError` instead.
    - The counts go to :data:`last_load_report` and are printed as one line (``verbose``).
    ``split`` may contain a folder (``"tw_mm_s1/test"`` under the CMKP root)."""
    global last_load_report
    root = Path(root)
    src = root / f"{split}_src.txt"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: the CMKP layout is ROOT/{{split}}_src.txt "
                                f"(root={root}, split={split!r})")
    name = Path(split).name
    examples = read_cmkp_src(src, name)
    report = LoadReport(source=f"{src}", n_posts=len(examples),
                        images_dir=None if images_dir is None else str(images_dir))

    attributes_file = root / f"{split}_attribute_cleaned.txt"
    if attributes_file.is_file():
        lines = read_lines(attributes_file)
        _check_aligned(attributes_file, lines, len(examples), src)
        for ex, line in zip(examples, lines):
            ex.attributes = line.split()
    ocr_file = root / f"{split}_ocr_final.txt"
    if ocr_file.is_file():
        lines = read_lines(ocr_file)
        _check_aligned(ocr_file, lines, len(examples), src)
        for ex, line in zip(examples, lines):
            ex.ocr = line.strip()
    report.n_with_attributes = sum(1 for ex in examples if ex.attributes)
    report.n_with_ocr = sum(1 for ex in examples if ex.ocr)

    if images_dir is not None:
        folder = Path(images_dir)
        for number, ex in enumerate(examples, 1):
            url = ex.meta.get("image_url", "")
            path = folder / image_name(url) if url and image_name(url) else None
            if path is None or not path.is_file():
                if require_images:
                    raise DataError(src, number, f"image {path or '(no image URL)'} is missing")
                report.n_missing_images += 1
                continue
            problem = check_image(path) if verify_images else None
            if problem:
                if require_images:
                    raise DataError(src, number, f"image {path} is corrupted or truncated ({problem})")
                warnings.warn(f"{src}:{number}: image {path} is corrupted or truncated ({problem}); "
                              "the post falls back to text + wordings + OCR", stacklevel=2)
                report.n_corrupt_images += 1
                continue
            ex.image = str(path)
            report.n_images += 1
    last_load_report = report
    if verbose:
        print(report.line())
    return examples


# --------------------------------------------------------------------------------------------
# JSONL (this project's format)
# --------------------------------------------------------------------------------------------
JSONL_KEYS = ("id", "text", "keyphrases", "image", "attributes", "ocr", "meta")


def _sorted_json(value: Any) -> Any:
    """Dicts with sorted keys, recursively (a stable byte layout for ``meta``)."""
    if isinstance(value, dict):
        return {str(k): _sorted_json(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted_json(v) for v in value]
    return value


def _image_for_file(image: str | None, folder: Path) -> str | None:
    """The image path as stored in a file in ``folder``: relative (POSIX) when it lies under it."""
    if image is None:
        return None
    absolute = Path(os.path.abspath(image))
    try:
        return absolute.relative_to(Path(os.path.abspath(folder))).as_posix()
    except ValueError:
        return str(absolute)


def _image_from_file(image: str | None, folder: Path) -> str | None:
    """A stored image path made absolute: relative ones are relative to the file's folder."""
    if image is None:
        return None
    path = Path(image)
    return str(path if path.is_absolute() else Path(os.path.abspath(folder / path)))


def example_record(example: Example, folder: str | os.PathLike | None = None) -> dict:
    """The JSONL record of an example, keys in the fixed order of :data:`JSONL_KEYS`."""
    image = example.image if folder is None else _image_for_file(example.image, Path(folder))
    record = {"id": example.id, "text": example.text, "keyphrases": list(example.keyphrases), "image": image,
              "attributes": list(example.attributes), "ocr": example.ocr}
    if example.meta:
        record["meta"] = _sorted_json(example.meta)
    return record


def write_jsonl(examples: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write examples as JSONL (UTF-8, ``\\n`` line ends, fixed key order, sorted ``meta`` keys).

    Identical examples give byte-identical files. Image paths under the file's folder are written
    relative to it, so a dataset folder can move. The file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(example_record(ex, path.parent), ensure_ascii=False) for ex in examples]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)
    return path


def _string_list(value: Any, path: Path, number: int, key: str, allow_empty: bool) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(path, number, f"{key!r} must be a list of strings, got {type(value).__name__}")
    if not allow_empty and not value:
        raise DataError(path, number, f"empty {key} list")
    return value


def _example_from_record(record: Any, path: Path, number: int, default_id: str) -> Example:
    """Validate one JSONL record; unknown keys are kept in ``meta`` rather than dropped."""
    if not isinstance(record, dict):
        raise DataError(path, number, f"expected a JSON object, got {type(record).__name__}")
    for key in ("text", "keyphrases"):
        if key not in record:
            raise DataError(path, number, f"missing field {key!r}")
    text = record["text"]
    if not isinstance(text, str):
        raise DataError(path, number, f"'text' must be a string, got {type(text).__name__}")
    keyphrases = [kp.strip() for kp in _string_list(record["keyphrases"], path, number, "keyphrases", False)]
    for position, kp in enumerate(keyphrases, 1):
        if not kp:
            raise DataError(path, number, f"empty keyphrase at position {position}")
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        raise DataError(path, number, f"'image' must be a string or null, got {type(image).__name__}")
    attributes = record.get("attributes", [])
    if isinstance(attributes, str):
        attributes = attributes.split()
    attributes = _string_list(attributes, path, number, "attributes", True)
    ocr = record.get("ocr", "")
    if not isinstance(ocr, str):
        raise DataError(path, number, f"'ocr' must be a string, got {type(ocr).__name__}")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise DataError(path, number, f"'meta' must be an object, got {type(meta).__name__}")
    meta = dict(meta)
    for key, value in record.items():
        if key not in JSONL_KEYS:
            meta.setdefault(key, value)
    ex_id = record.get("id", default_id)
    return Example(id=str(ex_id), text=text, keyphrases=keyphrases,
                   image=_image_from_file(image or None, path.parent), attributes=list(attributes),
                   ocr=ocr, source=f"{path}:{number}", meta=meta)


def read_jsonl(path: str | os.PathLike) -> list[Example]:
    """Examples from a JSONL file written by :func:`write_jsonl` (or by hand).

    Required per line: ``text`` and a non-empty ``keyphrases`` list; ``id`` defaults to
    ``<file stem>-<line>``. Blank lines are skipped. Relative image paths are taken relative to
    the file's folder and returned absolute."""
    path = Path(path)
    examples = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, number, f"invalid JSON: {err.msg} (column {err.colno})") from None
        examples.append(_example_from_record(record, path, number, f"{path.stem}-{number}"))
    return examples


# --------------------------------------------------------------------------------------------
# LLaVA-style conversation JSON
# --------------------------------------------------------------------------------------------
_ASSISTANT = ("gpt", "assistant")
_HUMAN = ("human", "user")
_KP_SPLIT = re.compile(r"[;,\n]")


def _json_array_items(text: str, path: Path) -> list[tuple[int, Any]]:
    """``(line, item)`` for each item of a top-level JSON array, the line where the item starts."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def line_of(index: int) -> int:
        return text.count("\n", 0, index) + 1

    def fail(err: json.JSONDecodeError):
        raise DataError(path, err.lineno, f"invalid JSON: {err.msg} (column {err.colno})") from None

    index = ws.match(text, 0).end()
    if index >= len(text) or text[index] != "[":
        raise DataError(path, line_of(index), "expected a JSON array of conversation records")
    index = ws.match(text, index + 1).end()
    items = []
    if index < len(text) and text[index] == "]":
        return items
    while True:
        try:
            item, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as err:
            fail(err)
        items.append((line_of(index), item))
        index = ws.match(text, end).end()
        if index < len(text) and text[index] == ",":
            index = ws.match(text, index + 1).end()
            continue
        if index < len(text) and text[index] == "]":
            break
        raise DataError(path, line_of(index), "expected ',' or ']' after an array item")
    rest = ws.match(text, index + 1).end()
    if rest != len(text):
        raise DataError(path, line_of(rest), "extra data after the JSON array")
    return items


def split_keyphrase_answer(answer: str) -> list[str]:
    """``"kp1, kp2; kp3"`` -> ``["kp1", "kp2", "kp3"]`` (commas, semicolons or newlines)."""
    return [kp.strip() for kp in _KP_SPLIT.split(answer) if kp.strip()]


def read_llava_json(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[Example]:
    """Examples from a LLaVA-style JSON array::

        [{"id": ..., "image": "x.jpg", "text": "the post",
          "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "kp1, kp2"}]}]

    The keyphrases are the last ``gpt``/``assistant`` turn split on commas (or semicolons). The
    post text is the ``text`` field when there is one, else the last human turn with ``<image>``
    tags removed (the whole turn: any instruction in it stays part of the text). Images are
    resolved against ``image_root`` (default: the JSON file's folder) and not opened. Every
    problem raises :class:`DataError` naming the line where the record starts."""
    path = Path(path)
    text = "\n".join(read_lines(path))
    root = Path(image_root) if image_root is not None else path.parent
    examples = []
    for position, (number, record) in enumerate(_json_array_items(text, path), 1):
        if not isinstance(record, dict):
            raise DataError(path, number, f"expected a JSON object, got {type(record).__name__}")
        turns = record.get("conversations")
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise DataError(path, number, "'conversations' must be a list of {'from', 'value'} objects")
        answers = [t.get("value") for t in turns if str(t.get("from", "")).lower() in _ASSISTANT]
        if not answers or not isinstance(answers[-1], str):
            raise DataError(path, number, "no gpt/assistant turn holding the keyphrases")
        keyphrases = split_keyphrase_answer(answers[-1])
        if not keyphrases:
            raise DataError(path, number, "empty keyphrase list in the gpt/assistant turn")
        post = record.get("text")
        if post is None:
            questions = [t.get("value") for t in turns if str(t.get("from", "")).lower() in _HUMAN]
            if not questions or not isinstance(questions[-1], str):
                raise DataError(path, number, "no 'text' field and no human turn to take the post text from")
            post = questions[-1].replace("<image>", " ").strip()
        if not isinstance(post, str):
            raise DataError(path, number, f"'text' must be a string, got {type(post).__name__}")
        image = record.get("image")
        if isinstance(image, list):
            image = image[0] if image else None
        if image is not None and not isinstance(image, str):
            raise DataError(path, number, f"'image' must be a string, got {type(image).__name__}")
        attributes = record.get("attributes", [])
        if isinstance(attributes, str):
            attributes = attributes.split()
        ocr = record.get("ocr", "")
        meta = {k: v for k, v in record.items()
                if k not in ("id", "image", "text", "conversations", "attributes", "ocr")}
        examples.append(Example(
            id=str(record.get("id", f"{path.stem}-{position}")), text=post, keyphrases=keyphrases,
            image=_image_from_file(image or None, root),
            attributes=_string_list(attributes, path, number, "attributes", True),
            ocr=ocr if isinstance(ocr, str) else "", source=f"{path}:{number}", meta=meta))
    return examples


# --------------------------------------------------------------------------------------------
# Dispatch, keyphrase lists, splits
# --------------------------------------------------------------------------------------------
def load_examples(path_or_dir: str | os.PathLike, split: str | None = None, **kwargs) -> list[Example]:
    """Examples from any supported source.

    - a folder and a ``split``: ``{split}_src.txt`` (CMKP layout, :func:`load_cmkp`), else
      ``{split}.jsonl``, else ``{split}.json`` (LLaVA);
    - ``*.jsonl``: :func:`read_jsonl`; ``*.json``: :func:`read_llava_json`;
    - ``*_src.txt``: :func:`load_cmkp` on its folder (wordings and OCR beside it are read too).
    ``kwargs`` go to :func:`load_cmkp` (``images_dir``, ``require_images``, ...)."""
    path = Path(path_or_dir)
    if path.is_dir():
        if split is None:
            raise ValueError(f"{path} is a folder: say which split to load (e.g. split='test')")
        if (path / f"{split}_src.txt").is_file():
            return load_cmkp(path, split, **kwargs)
        for suffix, reader in ((".jsonl", read_jsonl), (".json", read_llava_json)):
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return reader(candidate)
        raise FileNotFoundError(f"no {split}_src.txt, {split}.jsonl or {split}.json in {path}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if path.name.endswith("_src.txt"):
        return load_cmkp(path.parent, path.name[:-len("_src.txt")], **kwargs)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".json":
        return read_llava_json(path)
    raise ValueError(f"{path}: unknown format (expected *_src.txt, *.jsonl or *.json)")


def read_keyphrase_list(path: str | os.PathLike) -> list[str]:
    """One keyphrase a line (e.g. CMKP's ``train_keyphrases.txt``), in file order; a blank line
    is a :class:`DataError`."""
    path = Path(path)
    out = []
    for number, line in enumerate(read_lines(path), 1):
        kp = line.strip()
        if not kp:
            raise DataError(path, number, "blank line (one keyphrase a line expected)")
        out.append(kp)
    return out


def train_keyphrases(examples: Iterable[Example]) -> list[str]:
    """The distinct keyphrases of some (training) examples, sorted: the list the evaluator's
    "unseen" subset needs (CMKP ships it as ``train_keyphrases.txt``)."""
    return sorted({kp for ex in examples for kp in ex.keyphrases})


def split_examples(examples: Sequence[Example], sizes: dict[str, int | float], seed: int = 0) -> dict[str, list[Example]]:
    """Shuffle deterministically (``seed``) and cut into named parts.

    ``sizes`` maps a part name to a count or a fraction of ``len(examples)`` (fractions are
    rounded down); parts are cut in the given order, and they must not ask for more examples
    than there are. Example: ``split_examples(exs, {"train": 0.8, "valid": 0.1, "test": 0.1})``."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    counts = {name: int(size * len(examples)) if isinstance(size, float) else int(size) for name, size in sizes.items()}
    if any(c < 0 for c in counts.values()) or sum(counts.values()) > len(examples):
        raise ValueError(f"sizes {counts} do not fit {len(examples)} examples")
    parts, start = {}, 0
    for name, count in counts.items():
        parts[name] = [examples[i] for i in order[start:start + count]]
        start += count
    return parts


def subsample(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """``n`` examples drawn deterministically, in their original order (all when ``n`` is None
    or not smaller than the list)."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]
