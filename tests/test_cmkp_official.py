"""CMKP as its authors split it: the training-file fetcher and its registry (against a local HTTP
server), the ``cmkp`` / ``cmkp-public-resplit`` label, prepare_splits on the official split, and
images passed through to the split files."""
from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import json
import threading
import warnings
from pathlib import Path

import pytest

from mmkp_helpers import cmkp, data, overlap
from mmkp_helpers.cmkp import FetchError
from mmkp_helpers.data import Example, read_jsonl, read_lines

SIDE = ("attribute_cleaned", "ocr_final")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A registry and cache of this test's own: the project's registry and cache stay untouched,
    and what they hold cannot change the label these tests see."""
    monkeypatch.setenv("MMKP_CMKP_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MMKP_CMKP_URL", raising=False)


def _side_lines(cmkp_dir: Path, split: str, kind: str, n: int, start: int = 0) -> list[str]:
    return read_lines(cmkp_dir / "tw_mm_s1" / f"{split}_{kind}.txt")[start:start + n]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _public_folder(cmkp_dir: Path, root: Path, n_valid: int = 200, n_test: int = 50) -> Path:
    """``root/tw_mm_s1/{valid,test}_*.txt``: the first posts of the real public files with their
    real wordings and OCR (the tiny split's valid/test posts are exactly these)."""
    for split, n in (("valid", n_valid), ("test", n_test)):
        _write(root / "tw_mm_s1" / f"{split}_src.txt", _side_lines(cmkp_dir, split, "src", n))
        for kind in SIDE:
            _write(root / "tw_mm_s1" / f"{split}_{kind}.txt", _side_lines(cmkp_dir, split, kind, n))
    return root


def _train_side(cmkp_dir: Path, kind: str, n: int) -> list[str]:
    """Line-aligned side files for training posts, in CMKP's format. The real training wordings
    and OCR are not available here: these are the last valid posts' lines, cycled (format only)."""
    pool = _side_lines(cmkp_dir, "valid", kind, 1000, start=4370)
    return [pool[i % len(pool)] for i in range(n)]


def _official_folder(cmkp_dir: Path, root: Path) -> Path:
    """A small folder in CMKP's exact layout: the tiny split's 200 real training posts as
    ``train_src.txt`` (+ side files), the first 200 valid and 50 test posts."""
    _public_folder(cmkp_dir, root)
    train = read_lines(cmkp_dir / "tw_mm_s1_tiny" / "train_src.txt")
    _write(root / "tw_mm_s1" / "train_src.txt", train)
    for kind in SIDE:
        _write(root / "tw_mm_s1" / f"train_{kind}.txt", _train_side(cmkp_dir, kind, len(train)))
    return root


# ------------------------------------------------------------------ labels and sources
def test_public_files_only_are_a_resplit(cmkp_dir):
    assert cmkp.dataset_label(cmkp_dir) == "cmkp-public-resplit"
    info = cmkp.cmkp_sources(cmkp_dir)
    assert info["split"] == "resplit" and set(info["folders"]) == {"valid", "test"}
    assert set(info["checks"].values()) == {"matches the public file's sha256"} and len(info["checks"]) == 6
    # the names stay importable from mmkp_helpers.data, as the same objects
    assert data.dataset_label is cmkp.dataset_label and data.FetchError is FetchError
    assert data.cmkp_dir is cmkp.cmkp_dir and data.CMKP_FILES is cmkp.CMKP_FILES


def test_train_file_makes_the_official_label(cmkp_dir, tmp_path):
    root = _official_folder(cmkp_dir, tmp_path / "cmkp")
    info = cmkp.cmkp_sources(root)
    assert cmkp.dataset_label(root) == "cmkp" and info["split"] == "official"
    assert info["files"]["train"] == [str(root / "tw_mm_s1" / f"train_{k}.txt")
                                      for k in ("src", "attribute_cleaned", "ocr_final")]
    assert "no recorded sha256" in info["checks"]["tw_mm_s1/train_src.txt"]
    assert "checksum mismatch" in info["checks"]["tw_mm_s1/valid_src.txt"]   # 200 of the 5,370 posts
    # a train_src.txt that differs from a recorded checksum is not CMKP's: refused, not labelled
    entries = cmkp.read_registry()
    entries["tw_mm_s1/train_src.txt"] |= {"size": 10, "sha256": "0" * 64}
    cmkp._write_registry(entries, None)
    with pytest.raises(FetchError, match="not CMKP's training file"):
        cmkp.dataset_label(root)


def test_inputs_label():
    def ex(image):
        return Example(id="x", text="t", keyphrases=["k"], image=image)

    assert cmkp.inputs_label([ex("a.jpg"), ex("b.jpg")]) == "text+image"
    assert cmkp.inputs_label([ex(None), ex(None)]) == "text+wordings+ocr"
    assert cmkp.inputs_label([ex("a.jpg"), ex(None), ex(None)]) == "text+image (2 missing: text+wordings+ocr)"


# ------------------------------------------------------------------ prepare_splits
def test_prepare_splits_uses_the_official_split(cmkp_dir, tmp_path):
    root = _official_folder(cmkp_dir, tmp_path / "cmkp")
    paths = overlap.prepare_splits("cmkp", tmp_path / "results", seed=0, cmkp_root=root, verbose=False)
    original = {s: read_jsonl(p) for s, p in paths["original"].items()}
    for split, n in (("train", 200), ("valid", 200), ("test", 50)):
        src = data.load_cmkp(root / "tw_mm_s1", split, verbose=False)
        assert len(original[split]) == n
        assert [(e.id, e.text, e.keyphrases, e.attributes, e.ocr) for e in original[split]] == \
               [(e.id, e.text, e.keyphrases, e.attributes, e.ocr) for e in src]
    assert original["train"][0].attributes == _train_side(cmkp_dir, "attribute_cleaned", 1)[0].split()
    m = overlap.read_manifest(tmp_path / "results", "cmkp")
    assert m["dataset_label"] == "cmkp" and m["original_split"] == "official"
    assert m["sizes"] == {"train": 200, "valid": 200, "test": 50} and m["pool"] == 450
    assert m["cmkp"]["files"]["train"][0] == str(root / "tw_mm_s1" / "train_src.txt")
    assert m["inputs"]["pool"] == "text+wordings+ocr" and m["images"]["images_dir"] is None
    assert m["images"]["n_fallback"] == 450 and m["images"]["by_split"]["train"]["n_posts"] == 200
    # the clean split is cut from the union of the three files, with the official part sizes
    clean = {s: read_jsonl(p) for s, p in paths["clean"].items()}
    assert {s: len(v) for s, v in clean.items()} == m["sizes"]
    assert sorted(e.id for v in clean.values() for e in v) == sorted(e.id for v in original.values() for e in v)
    assert {e.id.split("-")[0] for e in clean["train"]} == {"train", "valid", "test"}
    assert m["figures"]["clean"]["text"]["test_vs_train"]["near_duplicates"] == 0


def test_prepare_splits_public_only_resplits(cmkp_dir, tmp_path):
    root = _public_folder(cmkp_dir, tmp_path / "cmkp")
    overlap.prepare_splits("cmkp", tmp_path / "results", seed=0, cmkp_root=root, verbose=False)
    m = overlap.read_manifest(tmp_path / "results", "cmkp")
    assert m["dataset_label"] == "cmkp-public-resplit" and m["original_split"] == "random"
    assert m["pool"] == 250 and m["sizes"] == {"train": 187, "valid": 25, "test": 38}
    assert set(m["cmkp"]["folders"]) == {"valid", "test"}
    with pytest.raises(ValueError, match="images_dir"):
        overlap.prepare_splits("synthetic", tmp_path / "results", images_dir=tmp_path)


def _image(path: Path, fmt: str) -> None:
    from PIL import Image

    Image.new("RGB", (32, 24), (20, 120, 200)).save(path, format=fmt)


def test_images_dir_reaches_the_split_files(cmkp_dir, tmp_path):
    root = _official_folder(cmkp_dir, tmp_path / "cmkp")
    images = tmp_path / "images"
    images.mkdir()
    posts = {s: data.load_cmkp(root / "tw_mm_s1", s, verbose=False) for s in ("train", "valid", "test")}
    chosen = {("train", 0): "PNG", ("train", 7): "JPEG", ("valid", 3): "JPEG", ("test", 0): "PNG", ("test", 49): "JPEG"}
    names = {}
    for (split, i), fmt in chosen.items():
        name = data.image_name(posts[split][i].meta["image_url"])
        _image(images / name, fmt)   # CMKP's file name: the URL's basename (".jpg" whatever the format)
        names[posts[split][i].id] = images / name
    corrupt = posts["valid"][5]
    (images / data.image_name(corrupt.meta["image_url"])).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = overlap.prepare_splits("cmkp", tmp_path / "results", seed=0, cmkp_root=root, images_dir=images,
                                       verbose=False)
    assert any("corrupted or truncated" in str(w.message) for w in caught)
    for variant in ("original", "clean"):
        written = [e for p in paths[variant].values() for e in read_jsonl(p)]
        assert {e.id: e.image for e in written if e.image} == {k: str(v) for k, v in names.items()}
    m = overlap.read_manifest(tmp_path / "results", "cmkp")
    im = m["images"]
    assert (im["n_images"], im["n_corrupt_images"], im["n_missing_images"], im["n_fallback"]) == (5, 1, 444, 445)
    assert im["by_split"]["test"] == {"n_posts": 50, "n_images": 2, "n_missing_images": 48, "n_corrupt_images": 0,
                                      "n_fallback": 48}
    assert im["images_dir"] == str(images.resolve())
    assert m["inputs"]["pool"] == "text+image (445 missing: text+wordings+ocr)"
    assert m["inputs"]["original"]["test"] == "text+image (48 missing: text+wordings+ocr)"
    assert m["params"]["images_dir"] == str(images.resolve())


# ------------------------------------------------------------------ the fetcher, on a local server
class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        _Handler.requests.append(self.path)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server with CMKP's upstream layout, standing in for the upstream repository."""
    served = tmp_path / "upstream"
    served.mkdir()
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("MMKP_CMKP_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield served
    httpd.shutdown()
    httpd.server_close()


def _serve_train(cmkp_dir: Path, served: Path, n: int = cmkp.TRAIN_POSTS) -> dict[str, bytes]:
    """``n`` training posts in CMKP's format (the tiny split's real training posts, cycled) and
    their side files, under the upstream paths."""
    train = read_lines(cmkp_dir / "tw_mm_s1_tiny" / "train_src.txt")
    contents = {"tw_mm_s1/train_src.txt": [train[i % len(train)] for i in range(n)],
                "tw_mm_s1/train_attribute_cleaned.txt": _train_side(cmkp_dir, "attribute_cleaned", n),
                "tw_mm_s1/train_ocr_final.txt": _train_side(cmkp_dir, "ocr_final", n)}
    return {rel: _write(served / cmkp.TRAIN_FILES[rel], lines).read_bytes() for rel, lines in contents.items()}


def test_fetcher_records_a_first_download_then_checks_against_it(cmkp_dir, tmp_path, server, capsys):
    served = _serve_train(cmkp_dir, server)
    registry = tmp_path / "registry.json"
    # not yet recorded: a plain fetch refuses, saves nothing, records nothing
    with pytest.raises(FetchError, match="no recorded size and sha256.*--record"):
        cmkp.fetch_cmkp_train(tmp_path / "a", verbose=False)
    assert not (tmp_path / "a" / "tw_mm_s1").exists() and not registry.exists()
    # the recording command: format checked, files saved to the cache, size and sha256 recorded
    assert cmkp.main(["--record"]) == 0
    cache = tmp_path / "cache" / "data" / "cmkp"
    entries = json.loads(registry.read_text())
    for rel, content in served.items():
        assert (cache / rel).read_bytes() == content
        assert entries[rel]["size"] == len(content)
        assert entries[rel]["sha256"] == hashlib.sha256(content).hexdigest()
        assert entries[rel]["recorded_by_command"] == "python -m mmkp_helpers.cmkp --record"
        assert entries[rel]["date"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    out = capsys.readouterr().out
    assert "recorded size and sha256 of tw_mm_s1/train_src.txt" in out
    assert json.loads(out[out.index("{"):])["dataset"] == "cmkp"
    # the cache's recorded training files make the public folder the official split
    info = cmkp.cmkp_sources(cmkp_dir)
    assert info["dataset"] == "cmkp" and info["folders"]["train"] == str(cache / "tw_mm_s1")
    assert info["checks"]["tw_mm_s1/train_src.txt"] == "matches the recorded sha256"
    # a matching download is accepted without --record; files already there are not downloaded again
    _Handler.requests = []
    assert cmkp.fetch_cmkp_train(tmp_path / "b", verbose=False) == tmp_path / "b"
    assert all((tmp_path / "b" / rel).read_bytes() == content for rel, content in served.items())
    assert len(_Handler.requests) == 3
    cmkp.fetch_cmkp_train(tmp_path / "b", verbose=False)
    assert len(_Handler.requests) == 3
    # upstream changed (same size, another byte): a wrong sha256 is refused and nothing is saved
    src = server / cmkp.TRAIN_FILES["tw_mm_s1/train_src.txt"]
    changed = bytearray(src.read_bytes())
    changed[0] = ord("X") if changed[0] != ord("X") else ord("Y")
    src.write_bytes(bytes(changed))
    with pytest.raises(FetchError, match="registry .* records size"):
        cmkp.fetch_cmkp_train(tmp_path / "c", verbose=False)
    assert not (tmp_path / "c" / "tw_mm_s1" / "train_src.txt").exists()
    assert json.loads(registry.read_text()) == entries


def test_fetcher_refuses_to_record_a_file_not_in_cmkp_format(cmkp_dir, tmp_path, server):
    _serve_train(cmkp_dir, server, n=200)   # the tiny split's size, not the 42,959 training posts
    with pytest.raises(FetchError, match=r"do not look like CMKP's.*200 lines, expected 42959"):
        cmkp.fetch_cmkp_train(tmp_path / "a", record=True, verbose=False)
    assert not (tmp_path / "a" / "tw_mm_s1").exists() and not (tmp_path / "registry.json").exists()
    served = _serve_train(cmkp_dir, server)
    src = server / cmkp.TRAIN_FILES["tw_mm_s1/train_src.txt"]
    lines = served["tw_mm_s1/train_src.txt"].decode().split("\n")
    lines[41] = lines[41].replace("<sep>", " ", 1)   # two fields on line 42
    src.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(FetchError, match=r"1 malformed lines, first: tw_mm_s1/train_src\.txt:42: expected 3 fields"):
        cmkp.fetch_cmkp_train(tmp_path / "a", record=True, verbose=False)
    assert not (tmp_path / "registry.json").exists()


def test_fetcher_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MMKP_CMKP_URL", "http://127.0.0.1:9/")   # nothing listens on the discard port
    with pytest.raises(FetchError, match="cannot download http://127.0.0.1:9/data/tw_mm_s1/train_src.txt"):
        cmkp.fetch_cmkp_train(tmp_path / "a", record=True, verbose=False)
    with pytest.raises(FetchError, match="missing, and downloading is off"):
        cmkp.fetch_cmkp_train(tmp_path / "a", download=False, verbose=False)


def test_every_cmkp_record_carries_the_label(cmkp_dir, tmp_path, monkeypatch):
    """A notebook passes dataset="cmkp"; the record says what the data really was."""
    from mmkp_helpers import results

    scores = {"all": {m: 0.0 for m in ("F1@1", "F1@3", "F1@5", "F1@M", "MAP@5")}}
    monkeypatch.setenv("MMKP_CMKP_DIR", str(cmkp_dir))
    rec = results.metric_record("03_sft_qlora", "sft", "text+image", "cmkp", "clean", 1, 10.0, scores)
    assert rec["dataset"] == "cmkp-public-resplit"
    monkeypatch.setenv("MMKP_CMKP_DIR", str(_official_folder(cmkp_dir, tmp_path / "cmkp")))
    rec = results.metric_record("03_sft_qlora", "sft", "text+image", "cmkp", "clean", 1, 10.0, scores)
    assert rec["dataset"] == "cmkp"
    assert results.metric_record("02_zero_shot", "zero_shot", "direct", "synthetic", "clean", 1, 1.0,
                                 scores)["dataset"] == "synthetic"
    assert "cmkp-public-resplit" in cmkp.describe("cmkp", cmkp_dir) and cmkp.describe("synthetic") == "dataset: synthetic"
