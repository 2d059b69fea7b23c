"""The CMKP files: where they are, fetching and checking them, and which split they give.

- The **public files** (valid/test posts with their wordings and OCR, the tiny split, the released
  predictions, the training keyphrase list) are pinned by SHA-256 in :data:`CMKP_FILES`;
  :func:`cmkp_dir` finds them (``MMKP_CMKP_DIR``) or fills a cache folder from upstream.
- The **training files** (``tw_mm_s1/train_src.txt`` and its line-aligned
  ``train_ocr_final.txt`` and ``train_attribute_cleaned.txt``, :data:`TRAIN_FILES`) are fetched
  by :func:`fetch_cmkp_train`. Their size and SHA-256 are not known in advance: the registry
  ``cmkp_upstream.json`` beside this module holds ``{file: {size, sha256, recorded_by_command,
  date}}``, null meaning "not yet recorded". The first download is accepted only by
  ``python -m mmkp_helpers.cmkp --record``, after a check of CMKP's format (42,959 line-aligned
  lines, ``text<sep>kp1;kp2<sep>url`` posts), and that command records size and SHA-256 in the
  registry; every later download must match the record.
- **Which split**: :func:`cmkp_sources` says which files a CMKP folder gives and
  :func:`dataset_label` names the result: ``"cmkp"`` when ``tw_mm_s1/train_src.txt`` is there
  (the authors' split: train = train_src, valid = valid_src, test = test_src), else
  ``"cmkp-public-resplit"`` (only the public valid+test posts, which the project resplits).
- :func:`inputs_label` says what a model sees of a list of examples (image, or wordings + OCR).
- **Printed paths**: :func:`display_path`, :func:`display_text` and :func:`paths_as_variable`
  write the folder ``MMKP_CMKP_DIR`` names as ``$MMKP_CMKP_DIR`` when it lies outside the
  project (a machine's own paths stay out of executed notebooks, which ``nbcheck`` scans).

``MMKP_CMKP_URL`` replaces the upstream base URL (tests point it at a local server).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

from .paths import cache_dir, project_root, relative

CMKP_URL_BASE = "https://raw.githubusercontent.com/yuewang-cuhk/CMKP/master/"
CMKP_ENV = "MMKP_CMKP_DIR"
URL_ENV = "MMKP_CMKP_URL"
REGISTRY_ENV = "MMKP_CMKP_REGISTRY"
#: The registry of the training files' recorded sizes and checksums (``MMKP_CMKP_REGISTRY`` overrides).
REGISTRY = Path(__file__).resolve().with_name("cmkp_upstream.json")
LABEL_OFFICIAL = "cmkp"
LABEL_PUBLIC = "cmkp-public-resplit"
#: Posts of the authors' training split (every training file has this many lines).
TRAIN_POSTS = 42959
#: Local relative path -> (upstream path under :data:`CMKP_URL_BASE`, SHA-256 of the local file).
#: ``train_keyphrases.txt`` is not a file upstream: it is decoded from the target vocabulary in
#: ``processed_data/tw_mm_s1/vocab.pt`` (see :func:`decode_cmkp_vocab`), and its checksum is
#: that of the decoded text.
CMKP_FILES: dict[str, tuple[str, str]] = {
    "LICENSE": ("LICENSE", "25ee0e77d290323c757c4d5aeb5d2993365d7f8e100433c07cbdb973a09b0ea1"),
    "tw_mm_s1/valid_src.txt": ("data/tw_mm_s1/valid_src.txt",
                               "61b7eca20dd75d2ad656a4549eb9e7313fa7e148fb28da1beb8eb8619c9ca290"),
    "tw_mm_s1/test_src.txt": ("data/tw_mm_s1/test_src.txt",
                              "e5c5f6545bc94aa3ee1fc7fd8924378b630af95881277065cb16ae3d2e8c81ef"),
    "tw_mm_s1/valid_attribute_cleaned.txt": ("data/tw_mm_s1/valid_attribute_cleaned.txt",
                                             "73545b92764f02848a8d4a572a38ef5ae1f4bded96bc0c2d049e3618c0af6be1"),
    "tw_mm_s1/test_attribute_cleaned.txt": ("data/tw_mm_s1/test_attribute_cleaned.txt",
                                            "751ae187320cb6a3e1e267efd0458d2ad2d4d8d5925d99a5a2bd4352afa8a75e"),
    "tw_mm_s1/valid_ocr_final.txt": ("data/tw_mm_s1/valid_ocr_final.txt",
                                     "627229cd3b09e22c67005e5f19927237af843c5f40ec944f94e571d5aacddc1d"),
    "tw_mm_s1/test_ocr_final.txt": ("data/tw_mm_s1/test_ocr_final.txt",
                                    "12e4f0ea3a3298b276771e9c26fe23bff71af34577d788934808c892abb970e9"),
    "tw_mm_s1_tiny/train_src.txt": ("data/tw_mm_s1_tiny/train_src.txt",
                                    "83cc5addf766fff22e15b3553231e0134c438c7ceb64443260d5c3732056f51f"),
    "tw_mm_s1_tiny/valid_src.txt": ("data/tw_mm_s1_tiny/valid_src.txt",
                                    "2800f03d12cc29da231a8d8d600165299da3012c6704dad8def09bc6020d644e"),
    "tw_mm_s1_tiny/test_src.txt": ("data/tw_mm_s1_tiny/test_src.txt",
                                   "eab9d9e9a52a070dd18e0a2bbb512400bc649593a081ae75603271b3b10a87e2"),
    "sample_pred/best_pred.txt": ("sh/sample_pred/best_pred.txt",
                                  "d19e1b269bcf43d0cc2c0b534ebb5315ee070120d33127fdce112f9cf720c4b5"),
    "train_keyphrases.txt": ("processed_data/tw_mm_s1/vocab.pt",
                             "f20b6e52399c4499de51a87d0f20132f5c9e8996c46b48aa02b71eee86cdde10"),
}
#: The training files: local relative path -> upstream path. Checked against the registry.
TRAIN_FILES: dict[str, str] = {
    "tw_mm_s1/train_src.txt": "data/tw_mm_s1/train_src.txt",
    "tw_mm_s1/train_ocr_final.txt": "data/tw_mm_s1/train_ocr_final.txt",
    "tw_mm_s1/train_attribute_cleaned.txt": "data/tw_mm_s1/train_attribute_cleaned.txt",
}
TRAIN_SRC = "tw_mm_s1/train_src.txt"


class FetchError(RuntimeError):
    """The CMKP files could not be found, downloaded or verified."""


def cmkp_url_base() -> str:
    """The upstream base URL: ``MMKP_CMKP_URL`` when set, else :data:`CMKP_URL_BASE`."""
    base = os.environ.get(URL_ENV) or CMKP_URL_BASE
    return base if base.endswith("/") else base + "/"


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_cmkp(root: str | os.PathLike, files: Iterable[str] | None = None) -> dict[str, str]:
    """Check files under ``root`` against :data:`CMKP_FILES`; returns ``{relative path: problem}``
    for each missing or mismatching file (empty when all is well)."""
    root = Path(root)
    problems = {}
    for rel in files if files is not None else CMKP_FILES:
        expected = CMKP_FILES[rel][1]
        path = root / rel
        if not path.is_file():
            problems[rel] = "missing"
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems[rel] = f"checksum mismatch (sha256 {actual}, expected {expected})"
    return problems


def _download(url: str, timeout: float = 60.0) -> bytes:
    """The bytes at ``url`` (tests replace this function; it is the fetcher's only network call)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https base URL
        return response.read()


class _CMKPVocabulary:
    """Stand-in for upstream's ``my_io.Vocabulary`` so that ``vocab.pt`` unpickles without it."""

    def __setstate__(self, state):
        self.__dict__.update(state)


def decode_cmkp_vocab(data: bytes) -> str:
    """``train_keyphrases.txt`` from upstream's ``vocab.pt``.

    ``vocab.pt`` is ``torch.save([word_vocab, target_class_vocab])`` of ``my_io.Vocabulary``
    objects; the target-class vocabulary's words, minus ``<unk>``, sorted, one a line, are the
    4,261 distinct training keyphrases."""
    import pickle

    import torch

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if name == "Vocabulary":
                return _CMKPVocabulary
            return super().find_class(module, name)

    class PickleModule:
        pass

    PickleModule.Unpickler = Unpickler
    PickleModule.load = staticmethod(lambda f, **kw: Unpickler(f, **kw).load())
    PickleModule.__name__ = "cmkp_vocab_pickle"
    vocabs = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=PickleModule)
    target_vocab = vocabs[1]
    words = sorted(w for w in target_vocab.word2idx if w != "<unk>")
    return "".join(w + "\n" for w in words)


def _get(url: str, what: str) -> bytes:
    try:
        return _download(url)
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(f"cannot download {url} ({err}). Offline? Set {CMKP_ENV} to a folder holding {what} "
                         f"(e.g. ../shared/data/cmkp)") from None


def _save(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _fetch_one(rel: str, target: Path) -> None:
    """Download one CMKP file to ``target`` and check its SHA-256 (raises :class:`FetchError`)."""
    upstream, expected = CMKP_FILES[rel]
    url = cmkp_url_base() + upstream
    data = _get(url, "the public CMKP files")
    if rel == "train_keyphrases.txt":
        data = decode_cmkp_vocab(data).encode("utf-8")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise FetchError(f"{url}: downloaded {rel} has sha256 {actual}, expected {expected}; not saved")
    _save(target, data)


def cmkp_dir(download: bool = True) -> Path:
    """The folder of the public CMKP files (the layout of ``../shared/data/cmkp``).

    ``MMKP_CMKP_DIR`` wins when it is set (its files are used as they are; :func:`verify_cmkp`
    checks them). Otherwise the cache folder ``.cache/data/cmkp`` (or ``$MMKP_CACHE/data/cmkp``)
    is used: each missing file, and each whose SHA-256 differs from :data:`CMKP_FILES`, is
    downloaded from :data:`CMKP_URL_BASE` and checked. With ``download=False``, or offline, a
    missing or corrupted file raises :class:`FetchError` naming the file and ``MMKP_CMKP_DIR``."""
    env = os.environ.get(CMKP_ENV)
    if env:
        folder = Path(env).expanduser()
        if not (folder / "tw_mm_s1" / "test_src.txt").is_file():
            raise FetchError(f"{CMKP_ENV}={env} does not hold the CMKP files (no tw_mm_s1/test_src.txt there)")
        return folder
    folder = cache_dir("data", "cmkp")
    problems = verify_cmkp(folder)
    for rel, problem in problems.items():
        if not download:
            raise FetchError(f"{folder / rel}: {problem}, and downloading is off. Set {CMKP_ENV} to a folder "
                             f"holding the public CMKP files, or call cmkp_dir(download=True)")
        if problem != "missing":
            print(f"{folder / rel}: {problem}; downloading it again", file=sys.stderr)
        try:
            _fetch_one(rel, folder / rel)
        except FetchError as err:
            state = "is missing" if problem == "missing" else "has a wrong checksum"
            raise FetchError(f"{folder / rel} {state} and could not be fetched: {err}") from None
    return folder


# --------------------------------------------------------------------------------------------
# Paths as printed
# --------------------------------------------------------------------------------------------
def _outside_root() -> tuple[str, Path] | None:
    """(the variable's value, its folder resolved) when MMKP_CMKP_DIR names a folder outside the project."""
    env = os.environ.get(CMKP_ENV)
    if not env:
        return None
    folder = Path(env).expanduser().resolve()
    root = project_root().resolve()
    if folder == root or root in folder.parents:
        return None
    return env, folder


def display_path(path: str | os.PathLike) -> str:
    """``path`` as printed for readers: ``$MMKP_CMKP_DIR/<rest>`` under the folder that variable
    names when it lies outside the project (as it does for most users and for CI), else
    :func:`mmkp_helpers.paths.relative` (relative to the project, ``../`` beside it)."""
    outside = _outside_root()
    if outside is not None:
        resolved = Path(path).expanduser().resolve()
        if resolved == outside[1] or outside[1] in resolved.parents:
            rest = resolved.relative_to(outside[1]).as_posix()
            return "$" + CMKP_ENV + ("" if rest == "." else "/" + rest)
    return relative(path)


def display_text(text: str) -> str:
    """``text`` with the folder MMKP_CMKP_DIR names (as given and resolved) written
    ``$MMKP_CMKP_DIR`` when it lies outside the project."""
    outside = _outside_root()
    if outside is None or not text:
        return text
    env, folder = outside
    for form in sorted({str(folder), str(Path(env).expanduser()), env.rstrip("/")}, key=len, reverse=True):
        if len(form) > 1 and os.path.isabs(form):
            text = text.replace(form, "$" + CMKP_ENV)
    return text


class _Rewriting:
    """A text stream that writes :func:`display_text` of everything to ``stream``."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(display_text(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def paths_as_variable():
    """Within it, what is printed (stdout and stderr) names the MMKP_CMKP_DIR folder
    ``$MMKP_CMKP_DIR`` (see :func:`display_text`), e.g. around a loader or a command line that
    prints the files it reads."""
    with contextlib.redirect_stdout(_Rewriting(sys.stdout)), contextlib.redirect_stderr(_Rewriting(sys.stderr)):
        yield


# --------------------------------------------------------------------------------------------
# The training files and their registry
# --------------------------------------------------------------------------------------------
def registry_path(registry: str | os.PathLike | None = None) -> Path:
    """``registry``, else ``MMKP_CMKP_REGISTRY``, else :data:`REGISTRY`."""
    return Path(registry or os.environ.get(REGISTRY_ENV) or REGISTRY)


def read_registry(registry: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{relative path: {size, sha256, recorded_by_command, date}}`` for every training file
    (null values, or a missing file or entry: not yet recorded)."""
    path = registry_path(registry)
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    empty = {"size": None, "sha256": None, "recorded_by_command": None, "date": None}
    return {rel: empty | dict(stored.get(rel) or {}) for rel in TRAIN_FILES}


def is_recorded(entry: dict) -> bool:
    return bool(entry.get("sha256")) and entry.get("size") is not None


def _write_registry(entries: dict[str, dict], registry: str | os.PathLike | None) -> Path:
    path = registry_path(registry)
    text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _lines(data: bytes) -> list[str]:
    """The lines of a file's bytes, split as :func:`data.read_lines` splits them."""
    lines = data.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


#: The field separator of a CMKP ``*_src.txt`` line.
SEP = "<sep>"


def split_src_line(line: str) -> tuple[str, list[str], str]:
    """(text, keyphrases, image URL) of one ``text<sep>kp1;kp2<sep>image_url`` line; a
    ``ValueError`` for a wrong number of fields, an empty keyphrase list or an empty keyphrase
    inside it (``a;;b``). :func:`mmkp_helpers.data.parse_src_line` makes an ``Example`` of it."""
    fields = line.split(SEP)
    if len(fields) != 3:
        raise ValueError(f"expected 3 fields separated by '{SEP}' (text{SEP}kp1;kp2{SEP}image_url), "
                         f"found {len(fields)}")
    text, kp_field, url = (f.strip() for f in fields)
    if not kp_field:
        raise ValueError("empty keyphrase list (the second field must hold kp1;kp2;...)")
    keyphrases = [kp.strip() for kp in kp_field.split(";")]
    for position, kp in enumerate(keyphrases, 1):
        if not kp:
            raise ValueError(f"empty keyphrase at position {position} of {kp_field!r}")
    return text, keyphrases, url


def check_train_format(contents: dict[str, bytes], expected_posts: int = TRAIN_POSTS) -> list[str]:
    """Problems with the training files' bytes (``{relative path: bytes}``), empty when they
    look like CMKP's: ``expected_posts`` lines each, every ``train_src.txt`` line
    ``text<sep>kp1;kp2<sep>http...`` with a non-empty keyphrase list."""
    problems = []
    for rel, data in contents.items():
        try:
            lines = _lines(data)
        except UnicodeDecodeError as err:
            problems.append(f"{rel}: not UTF-8 ({err})")
            continue
        if len(lines) != expected_posts:
            problems.append(f"{rel}: {len(lines)} lines, expected {expected_posts}")
        if rel != TRAIN_SRC:
            continue
        bad = []
        for number, line in enumerate(lines, 1):
            try:
                url = split_src_line(line)[2]
            except ValueError as err:
                bad.append(f"{rel}:{number}: {err}")  # the form of data.DataError's messages
                continue
            if not url.startswith("http"):
                bad.append(f"{rel}:{number}: third field {url!r} is not an image URL")
        if bad:
            problems.append(f"{len(bad)} malformed lines, first: {bad[0]}")
    return problems


def fetch_cmkp_train(folder: str | os.PathLike | None = None, record: bool = False, command: str | None = None,
                     registry: str | os.PathLike | None = None, download: bool = True,
                     verbose: bool = True) -> Path:
    """Fetch the three training files into ``folder/tw_mm_s1/`` (default: the cache folder of
    :func:`cmkp_dir`) and return ``folder``.

    A file already there that matches its recorded size and SHA-256 is kept; any other is
    downloaded from ``cmkp_url_base()`` and must match the record (else :class:`FetchError`,
    nothing saved). A file without a record is accepted only with ``record=True``: then the three
    files must pass :func:`check_train_format`, and their size, SHA-256, ``command`` (default:
    this process's command line) and the date go to the registry (:func:`registry_path`)."""
    folder = Path(folder) if folder is not None else cache_dir("data", "cmkp")
    entries = read_registry(registry)
    contents, fresh = {}, []
    for rel, upstream in TRAIN_FILES.items():
        entry, target = entries[rel], folder / rel
        if target.is_file():
            if is_recorded(entry) and target.stat().st_size == entry["size"] and sha256_file(target) == entry["sha256"]:
                contents[rel] = None
                continue
            if not is_recorded(entry):  # a file put there by hand: checked and recorded as it is, with --record
                if not record:
                    raise FetchError(f"{target} has no recorded size and sha256 in {registry_path(registry)} yet. "
                                     "Check and record it once with `python -m mmkp_helpers.cmkp --record`")
                contents[rel] = target.read_bytes()
                continue
        if not download:
            state = "missing" if not target.is_file() else "not matching the record" if is_recorded(entry) \
                else "not recorded"
            raise FetchError(f"{target}: {state}, and downloading is off")
        url = cmkp_url_base() + upstream
        data = _get(url, "tw_mm_s1/train_src.txt and its OCR and attribute files")
        size, sha = len(data), hashlib.sha256(data).hexdigest()
        if is_recorded(entry):
            if (size, sha) != (entry["size"], entry["sha256"]):
                raise FetchError(f"{url}: downloaded {rel} has size {size} and sha256 {sha}, but the registry "
                                 f"{registry_path(registry)} records size {entry['size']} and sha256 "
                                 f"{entry['sha256']}; not saved")
        elif not record:
            raise FetchError(f"{url}: {rel} (size {size}, sha256 {sha}) has no recorded size and sha256 in "
                             f"{registry_path(registry)} yet; not saved. Check and record it once with "
                             f"`python -m mmkp_helpers.cmkp --record`")
        contents[rel] = data
        fresh.append(rel)
    unrecorded = {rel: data for rel, data in contents.items() if data is not None and not is_recorded(entries[rel])}
    if unrecorded:
        everything = {rel: data if data is not None else (folder / rel).read_bytes() for rel, data in contents.items()}
        problems = check_train_format(everything)
        if problems:
            raise FetchError("the training files do not look like CMKP's, nothing saved or recorded: "
                             + "; ".join(problems))
    for rel in fresh:
        _save(folder / rel, contents[rel])
    if unrecorded:
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        command = command or " ".join([Path(sys.executable).name, *sys.argv])
        for rel, data in unrecorded.items():
            entries[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                            "recorded_by_command": command, "date": today}
        path = _write_registry(entries, registry)
        if verbose:
            print(f"recorded size and sha256 of {', '.join(unrecorded)} in {path}")
    if verbose:
        print(f"CMKP training files in {folder / 'tw_mm_s1'} ({len(fresh)} downloaded)")
    return folder


# --------------------------------------------------------------------------------------------
# Which split a folder gives
# --------------------------------------------------------------------------------------------
def _train_check(folder: Path, entries: dict[str, dict]) -> dict[str, str]:
    """``{relative path: state}`` of the training files in ``folder``; a file that differs from
    its record raises :class:`FetchError` (it is not the authors' file)."""
    states = {}
    for rel in TRAIN_FILES:
        path, entry = folder / rel, entries[rel]
        if not path.is_file():
            states[rel] = "missing"
        elif not is_recorded(entry):
            states[rel] = "present; no recorded sha256 to check it against (python -m mmkp_helpers.cmkp --record)"
        elif path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise FetchError(f"{path} differs from the size and sha256 recorded in the registry "
                             f"({entry['size']} bytes, {entry['sha256']}): not CMKP's training file")
        else:
            states[rel] = "matches the recorded sha256"
    return states


def cmkp_sources(root: str | os.PathLike | None = None, registry: str | os.PathLike | None = None) -> dict:
    """What a CMKP folder gives (``root``, default :func:`cmkp_dir`; the files under ``tw_mm_s1/``).

    The training files are looked for in ``root`` and then in the cache folder, where
    :func:`fetch_cmkp_train` puts them (used from there only when they match a recorded
    checksum). Returns ``{"dataset": "cmkp" | "cmkp-public-resplit", "split": "official" |
    "resplit", "root", "folders": {split: folder}, "files": {split: [file, ...]}, "checks":
    {file: state}}``: ``split`` says whether the authors' train/valid/test split is used, ``files``
    every file read (posts, wordings, OCR), ``checks`` the checksum state of each."""
    root = Path(root) if root is not None else cmkp_dir()
    public = root / "tw_mm_s1"
    for split in ("valid", "test"):
        if not (public / f"{split}_src.txt").is_file():
            raise FetchError(f"{public / f'{split}_src.txt'} not found: {root} is not a CMKP folder")
    entries = read_registry(registry)
    train_root = root if (root / TRAIN_SRC).is_file() else None
    if train_root is None:
        cache = cache_dir("data", "cmkp")
        if (cache / TRAIN_SRC).is_file() and all(is_recorded(entries[rel]) for rel in TRAIN_FILES):
            train_root = cache
    checks = {}
    for rel in (f"tw_mm_s1/{s}_{kind}" for s in ("valid", "test")
                for kind in ("src.txt", "attribute_cleaned.txt", "ocr_final.txt")):
        if (root / rel).is_file():
            checks[rel] = verify_cmkp(root, [rel]).get(rel, "matches the public file's sha256")
    if train_root is not None:
        checks |= {rel: state for rel, state in _train_check(train_root, entries).items() if state != "missing"}
    folders = {"valid": public, "test": public} | ({"train": train_root / "tw_mm_s1"} if train_root else {})
    files = {split: [str(folder / f"{split}_{kind}") for kind in ("src.txt", "attribute_cleaned.txt", "ocr_final.txt")
                     if (folder / f"{split}_{kind}").is_file()] for split, folder in folders.items()}
    return {"dataset": LABEL_OFFICIAL if train_root else LABEL_PUBLIC,
            "split": "official" if train_root else "resplit", "root": str(root),
            "folders": {split: str(folder) for split, folder in folders.items()},
            "files": {split: files[split] for split in ("train", "valid", "test") if split in files},
            "checks": checks}


def dataset_label(root: str | os.PathLike | None = None) -> str:
    """``"cmkp"`` when ``root`` (default :func:`cmkp_dir`) gives the authors' training split,
    else ``"cmkp-public-resplit"``: the ``dataset`` every record of a CMKP run carries."""
    return cmkp_sources(root)["dataset"]


def describe(dataset: str, root: str | os.PathLike | None = None) -> str:
    """One line for a notebook's first cells: which data a run uses, honestly labelled."""
    if dataset != "cmkp":
        return f"dataset: {dataset}"
    src = cmkp_sources(root)
    if src["dataset"] == "cmkp":
        return "dataset: cmkp (the authors' official train/valid/test split, train_src.txt present)"
    return ("dataset: cmkp-public-resplit (CMKP's public valid+test posts, resplit here: CMKP's training file "
            "train_src.txt is absent, so no score is comparable with the paper's or CMKP's; "
            "python -m mmkp_helpers.cmkp fetches it when online)")


def inputs_label(examples: Sequence) -> str:
    """What a model sees of ``examples``: ``"text+image"`` when every one has an image,
    ``"text+wordings+ocr"`` when none has, else ``"text+image (N missing: text+wordings+ocr)"``."""
    n = len(examples)
    missing = sum(1 for ex in examples if not getattr(ex, "image", None))
    if n == 0 or missing == n:
        return "text+wordings+ocr"
    if missing == 0:
        return "text+image"
    return f"text+image ({missing} missing: text+wordings+ocr)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmkp_helpers.cmkp", description=(
        "Fetch the public CMKP files and the training files (train_src.txt, OCR, attributes), checked "
        "against their SHA-256; --record checks a first download's format and records its size and SHA-256."))
    parser.add_argument("--record", action="store_true",
                        help="accept training files without a recorded checksum after a format check, and record them")
    parser.add_argument("--dir", default=None, help="folder for the training files (default: the cache folder)")
    parser.add_argument("--root", default=None, help="CMKP folder to describe (default: cmkp_dir())")
    parser.add_argument("--registry", default=None, help=f"registry file (default {REGISTRY})")
    parser.add_argument("--status", action="store_true", help="only say which files and split a folder gives")
    args = parser.parse_args(argv)
    try:
        if not args.status:
            cmkp_dir()
            command = "python -m mmkp_helpers.cmkp " + " ".join(argv if argv is not None else sys.argv[1:])
            fetch_cmkp_train(args.dir, record=args.record, command=command.strip(), registry=args.registry)
        info = cmkp_sources(args.root, registry=args.registry)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
