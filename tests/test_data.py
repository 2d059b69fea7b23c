"""Loaders (CMKP layout, JSONL, LLaVA JSON), bad input, splits and the CMKP fetcher."""
from __future__ import annotations

import json
import shutil
import sys
import types
import urllib.error
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmkp_helpers import cmkp, data
from mmkp_helpers.data import (CMKP_FILES, DataError, Example, FetchError, decode_cmkp_vocab, load_cmkp,
                               load_examples, parse_src_line, read_jsonl, read_keyphrase_list, read_llava_json,
                               split_examples, subsample, verify_cmkp, write_jsonl)

# (``cmkp_dir`` in these tests is conftest's fixture; the fetcher is called as ``data.cmkp_dir()``, which
# ``data`` re-exports from ``mmkp_helpers.cmkp``: its one network call, ``cmkp._download``, is what tests replace.)


# ------------------------------------------------------------------ the real CMKP files
@pytest.mark.parametrize("split, n, n_ocr", [("valid", 5370, None), ("test", 5372, 889)])
def test_load_real_cmkp(cmkp_dir, split, n, n_ocr, capsys):
    examples = load_cmkp(cmkp_dir / "tw_mm_s1", split)
    assert len(examples) == n
    report = data.last_load_report
    assert report.n_posts == n and report.n_with_attributes == n
    assert report.n_fallback == n  # no images folder: every post uses text + wordings + OCR
    assert all(len(ex.attributes) == 5 for ex in examples)
    assert report.n_with_ocr == sum(1 for ex in examples if ex.ocr) > 0
    if n_ocr is not None:
        assert report.n_with_ocr == n_ocr
    assert len({ex.id for ex in examples}) == n
    assert f"{n} posts" in capsys.readouterr().out
    first = examples[0]
    assert first.source.endswith(f"{split}_src.txt:1")
    if split == "test":
        assert first.keyphrases == ["wildflower hour"]
        assert first.attributes == ["green", "trees", "leaves", "flowers", "rocks"]
        assert first.meta["image_url"].endswith("D0wn9TnXQAAGWyD.jpg")
    # about 1.33 keyphrases a post
    assert 1.2 < sum(len(ex.keyphrases) for ex in examples) / n < 1.45


def test_load_examples_dispatch(cmkp_dir):
    by_file = load_examples(cmkp_dir / "tw_mm_s1_tiny" / "train_src.txt")
    by_dir = load_examples(cmkp_dir / "tw_mm_s1_tiny", split="train")
    assert len(by_file) == len(by_dir) == 200
    assert [e.keyphrases for e in by_file] == [e.keyphrases for e in by_dir]
    with pytest.raises(ValueError, match="split"):
        load_examples(cmkp_dir / "tw_mm_s1_tiny")


def test_train_keyphrase_list(cmkp_dir):
    kps = read_keyphrase_list(cmkp_dir / "train_keyphrases.txt")
    assert len(kps) == len(set(kps)) == 4261


# ------------------------------------------------------------------ bad input
def _write_split(folder: Path, lines: list[str | bytes], split: str = "test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}_src.txt"
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


GOOD = "a post about dogs<sep>dogs;pets<sep>https://pbs.twimg.com/media/AAA.jpg"


def test_wrong_number_of_fields(tmp_path):
    _write_split(tmp_path, [GOOD, "no separators here;kp"])
    with pytest.raises(DataError, match=r"test_src\.txt:2: expected 3 fields .* found 1") as info:
        load_cmkp(tmp_path, "test")
    assert info.value.line == 2 and info.value.path.endswith("test_src.txt")
    _write_split(tmp_path, [GOOD, GOOD, "a<sep>b<sep>c<sep>d"])
    with pytest.raises(DataError, match=r"test_src\.txt:3: expected 3 fields .* found 4"):
        load_cmkp(tmp_path, "test")


def test_empty_keyphrase_list(tmp_path):
    _write_split(tmp_path, [GOOD, "text<sep>  <sep>http://x/y.jpg"])
    with pytest.raises(DataError, match=r"test_src\.txt:2: empty keyphrase list"):
        load_cmkp(tmp_path, "test")
    _write_split(tmp_path, ["text<sep>a;;b<sep>http://x/y.jpg"])
    with pytest.raises(DataError, match=r"test_src\.txt:1: empty keyphrase at position 2"):
        load_cmkp(tmp_path, "test")


def test_invalid_utf8(tmp_path):
    _write_split(tmp_path, [GOOD, GOOD, b"caf\xe9 au lait<sep>coffee<sep>http://x/y.jpg"])
    with pytest.raises(DataError, match=r"test_src\.txt:3: invalid UTF-8"):
        load_cmkp(tmp_path, "test")


def test_side_files_must_be_aligned(tmp_path):
    _write_split(tmp_path, [GOOD, GOOD])
    (tmp_path / "test_attribute_cleaned.txt").write_text("dog grass ball park sun\n")
    with pytest.raises(DataError, match=r"test_attribute_cleaned\.txt:2: file ends after 1 lines"):
        load_cmkp(tmp_path, "test")
    (tmp_path / "test_attribute_cleaned.txt").write_text("a\nb\n")
    (tmp_path / "test_ocr_final.txt").write_text("\n\nextra\n")
    with pytest.raises(DataError, match=r"test_ocr_final\.txt:3: extra line"):
        load_cmkp(tmp_path, "test")


def _png(path: Path, colour=(200, 30, 30)) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 64), colour).save(path, format="PNG")
    return path


def test_missing_and_corrupted_images(tmp_path, capsys):
    lines = [f"post {i}<sep>kp{i}<sep>https://pbs.twimg.com/media/IMG{i}.jpg" for i in range(4)]
    _write_split(tmp_path, lines)
    images = tmp_path / "images"
    images.mkdir()
    _png(images / "IMG0.jpg")                       # a readable image (PIL reads by content, not name)
    good = _png(images / "IMG1.jpg").read_bytes()
    (images / "IMG1.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (images / "IMG3.jpg").write_bytes(b"not an image at all")  # garbage
    # IMG2 is missing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        examples = load_cmkp(tmp_path, "test", images_dir=images)
    report = data.last_load_report
    assert (report.n_images, report.n_missing_images, report.n_corrupt_images, report.n_fallback) == (1, 1, 2, 3)
    assert examples[0].image == str(images / "IMG0.jpg")
    assert [ex.image for ex in examples[1:]] == [None, None, None]
    messages = [str(w.message) for w in caught]
    assert any("test_src.txt:2: image" in m and "IMG1.jpg" in m and "truncated" in m for m in messages)
    assert any("test_src.txt:4: image" in m and "IMG3.jpg" in m for m in messages)
    assert "3 fall back to text + wordings + OCR (1 missing, 2 corrupted)" in capsys.readouterr().out
    # a missing image is a counted fallback, never an error ... unless images are required
    with pytest.raises(DataError, match=r"test_src\.txt:2: image .*IMG1\.jpg is corrupted"):
        load_cmkp(tmp_path, "test", images_dir=images, require_images=True)
    (images / "IMG1.jpg").write_bytes(good)
    (images / "IMG3.jpg").unlink()
    with pytest.raises(DataError, match=r"test_src\.txt:3: image .*IMG2\.jpg is missing"):
        load_cmkp(tmp_path, "test", images_dir=images, require_images=True)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\n"), max_size=120))
def test_property_src_parser(line):
    """Arbitrary text is either a post or a DataError naming the file and line; nothing else."""
    try:
        ex = parse_src_line(line, "f_src.txt", 7)
    except DataError as err:
        assert str(err).startswith("f_src.txt:7: ")
        return
    assert ex.keyphrases and all(kp.strip() == kp and kp for kp in ex.keyphrases)
    assert ex.source == "f_src.txt:7"


def test_bad_line_after_good_lines(tmp_path):
    """Through a file, a bad line is reported with its own number."""
    _write_split(tmp_path, [GOOD] * 5 + ["<sep><sep>"])
    with pytest.raises(DataError, match=r":6: empty keyphrase list"):
        load_cmkp(tmp_path, "test")


# ------------------------------------------------------------------ JSONL
def _examples(tmp_path: Path) -> list[Example]:
    (tmp_path / "data" / "images").mkdir(parents=True)
    img = _png(tmp_path / "data" / "images" / "a.png")
    return [
        Example("a", "Ünïcode post 🙂", ["kp one", "kp2"], image=str(img), attributes=["x", "y"], ocr="SALE",
                source="somewhere:1", meta={"z": 1, "kinds": {"kp2": "image", "kp one": "present"}}),
        Example("b", "second", ["k"], image=None),
    ]


def test_jsonl_round_trip_is_byte_identical(tmp_path):
    examples = _examples(tmp_path)
    first = write_jsonl(examples, tmp_path / "data" / "x.jsonl")
    record = json.loads(first.read_text(encoding="utf-8").splitlines()[0])
    assert list(record) == ["id", "text", "keyphrases", "image", "attributes", "ocr", "meta"]
    assert record["image"] == "images/a.png"           # relative to the file's folder
    assert list(record["meta"]) == ["kinds", "z"]      # sorted keys
    assert "meta" not in json.loads(first.read_text(encoding="utf-8").splitlines()[1])
    back = read_jsonl(first)
    assert back[0].image == examples[0].image and back[0].text == examples[0].text
    assert back[0].meta == examples[0].meta and back[0].attributes == ["x", "y"] and back[0].ocr == "SALE"
    assert back[0].source == f"{first}:1"
    second = write_jsonl(back, tmp_path / "data" / "y.jsonl")
    assert first.read_bytes() == second.read_bytes()
    # a moved folder still finds its images
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    assert read_jsonl(tmp_path / "moved" / "x.jsonl")[0].image == str(tmp_path / "moved" / "images" / "a.png")


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "keyphrases": ["a"]}\n\n{"text": "x", "keyphrases": []}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: empty keyphrases list"):
        read_jsonl(path)
    path.write_text('{"text": "ok", "keyphrases": ["a"]}\n{"text": "x", "keyphrases": ["a"]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"keyphrases": ["a"]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing field 'text'"):
        read_jsonl(path)
    path.write_bytes(b'{"text": "\xff", "keyphrases": ["a"]}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: invalid UTF-8"):
        read_jsonl(path)
    # unknown keys are kept in meta, not dropped; the id defaults to <stem>-<line>
    path.write_text('{"text": "t", "keyphrases": ["a"], "lang": "en"}\n')
    ex = read_jsonl(path)[0]
    assert ex.meta == {"lang": "en"} and ex.id == "bad-1"


# ------------------------------------------------------------------ LLaVA JSON
def test_read_llava_json(tmp_path):
    records = [
        {"id": "p1", "image": "imgs/1.jpg", "text": "sunset at the beach",
         "conversations": [{"from": "human", "value": "<image>\nGive keyphrases."}, {"from": "gpt", "value": "sunset, beach life"}]},
        {"id": "p2", "image": "imgs/2.jpg",
         "conversations": [{"from": "human", "value": "<image>\ngame night with friends"}, {"from": "gpt", "value": "game night"}]},
    ]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(records, indent=2))
    examples = read_llava_json(path)
    assert [e.keyphrases for e in examples] == [["sunset", "beach life"], ["game night"]]
    assert examples[0].text == "sunset at the beach"
    assert examples[1].text == "game night with friends"
    assert examples[0].image == str(tmp_path / "imgs" / "1.jpg")
    assert read_llava_json(path, image_root="/data")[1].image == "/data/imgs/2.jpg"
    start = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if '"p2"' in line) - 1
    assert examples[1].source == f"{path}:{start}"  # the line where the record starts
    assert load_examples(path)[0].id == "p1"


def test_llava_json_errors_name_the_record_line(tmp_path):
    path = tmp_path / "llava.json"
    good = {"id": "p1", "text": "t", "conversations": [{"from": "gpt", "value": "a"}]}
    bad = {"id": "p2", "text": "t", "conversations": [{"from": "human", "value": "only a question"}]}
    path.write_text(json.dumps([good, bad], indent=1))
    line = path.read_text().splitlines().index(" {", 2) + 1
    with pytest.raises(DataError, match=rf"llava\.json:{line}: no gpt/assistant turn"):
        read_llava_json(path)
    path.write_text('[\n{"id": 1,\n "text": }\n]')
    with pytest.raises(DataError, match=r"llava\.json:3: invalid JSON"):
        read_llava_json(path)
    path.write_text('{"not": "an array"}')
    with pytest.raises(DataError, match=r"llava\.json:1: expected a JSON array"):
        read_llava_json(path)


# ------------------------------------------------------------------ splits
def test_split_and_subsample_are_deterministic():
    examples = [Example(str(i), f"t{i}", ["k"]) for i in range(20)]
    a = split_examples(examples, {"train": 0.5, "valid": 5, "test": 5}, seed=3)
    b = split_examples(examples, {"train": 0.5, "valid": 5, "test": 5}, seed=3)
    assert {k: [e.id for e in v] for k, v in a.items()} == {k: [e.id for e in v] for k, v in b.items()}
    assert sorted(e.id for part in a.values() for e in part) == sorted(e.id for e in examples)
    with pytest.raises(ValueError):
        split_examples(examples, {"train": 15, "test": 6})
    s = subsample(examples, 5, seed=1)
    assert [e.id for e in s] == [e.id for e in subsample(examples, 5, seed=1)]
    assert [int(e.id) for e in s] == sorted(int(e.id) for e in s)
    assert subsample(examples, None) == examples


# ------------------------------------------------------------------ the fetcher (no network)
def test_cmkp_dir_uses_the_environment_variable(cmkp_dir, monkeypatch):
    monkeypatch.setenv("MMKP_CMKP_DIR", str(cmkp_dir))
    monkeypatch.setattr(cmkp, "_download", lambda url, timeout=60.0: pytest.fail("network touched"))
    assert data.cmkp_dir() == cmkp_dir
    monkeypatch.setenv("MMKP_CMKP_DIR", "/nonexistent/cmkp")
    with pytest.raises(FetchError, match="MMKP_CMKP_DIR=/nonexistent/cmkp"):
        data.cmkp_dir()


def test_shared_files_match_checksums(cmkp_dir):
    assert verify_cmkp(cmkp_dir) == {}
    assert set(CMKP_FILES) >= {"tw_mm_s1/test_src.txt", "sample_pred/best_pred.txt", "train_keyphrases.txt"}


def _offline(url, timeout=60.0):
    raise urllib.error.URLError("no network in tests")


def test_offline_without_folder_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MMKP_CMKP_DIR", raising=False)
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cmkp, "_download", _offline)
    with pytest.raises(FetchError, match="MMKP_CMKP_DIR") as info:
        data.cmkp_dir()
    assert "missing" in str(info.value) and "raw.githubusercontent.com/yuewang-cuhk/CMKP" in str(info.value)
    with pytest.raises(FetchError, match="MMKP_CMKP_DIR"):
        data.cmkp_dir(download=False)


def test_corrupted_cached_file_is_detected_and_refetched(cmkp_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MMKP_CMKP_DIR", raising=False)
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "data" / "cmkp"
    for rel in CMKP_FILES:  # a complete cache, outside the repository
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cmkp_dir / rel, cache / rel)
    monkeypatch.setattr(cmkp, "_download", lambda url, timeout=60.0: pytest.fail("network touched"))
    assert data.cmkp_dir() == cache  # all checksums good: nothing fetched
    victim = cache / "tw_mm_s1" / "test_src.txt"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated
    with pytest.raises(FetchError, match=r"test_src\.txt: checksum mismatch"):
        data.cmkp_dir(download=False)
    monkeypatch.setattr(cmkp, "_download", _offline)
    with pytest.raises(FetchError, match=r"test_src\.txt has a wrong checksum and could not be fetched.*MMKP_CMKP_DIR"):
        data.cmkp_dir()
    fetched = []

    def fake_download(url, timeout=60.0):
        fetched.append(url)
        upstream = {up: rel for rel, (up, _) in CMKP_FILES.items()}[url[len(data.CMKP_URL_BASE):]]
        return (cmkp_dir / upstream).read_bytes()

    monkeypatch.setattr(cmkp, "_download", fake_download)
    assert data.cmkp_dir() == cache
    assert fetched == [data.CMKP_URL_BASE + "data/tw_mm_s1/test_src.txt"]
    assert verify_cmkp(cache) == {}
    # a download whose checksum is wrong is refused, not saved
    victim.write_bytes(b"x")
    monkeypatch.setattr(cmkp, "_download", lambda url, timeout=60.0: b"tampered")
    with pytest.raises(FetchError, match="expected"):
        data.cmkp_dir()
    assert victim.read_bytes() == b"x"


def test_decode_cmkp_vocab(tmp_path, monkeypatch):
    """train_keyphrases.txt is decoded from upstream's vocab.pt (pickled my_io.Vocabulary objects)."""
    import torch

    module = types.ModuleType("my_io")

    class Vocabulary:
        def __init__(self):
            self.word2idx, self.idx2word, self.idx = {}, {}, 0

        def add_word(self, word):
            if word not in self.word2idx:
                self.word2idx[word] = self.idx
                self.idx2word[self.idx] = word
                self.idx += 1

    Vocabulary.__module__ = "my_io"
    Vocabulary.__qualname__ = "Vocabulary"
    module.Vocabulary = Vocabulary
    monkeypatch.setitem(sys.modules, "my_io", module)
    words, targets = Vocabulary(), Vocabulary()
    for w in ("<pad>", "<unk>", "love"):
        words.add_word(w)
    for kp in ("<unk>", "zshq", "1 0 yr challenge", "beagles"):
        targets.add_word(kp)
    path = tmp_path / "vocab.pt"
    torch.save([words, targets], str(path))
    monkeypatch.delitem(sys.modules, "my_io")  # decoding must not need upstream's module
    assert decode_cmkp_vocab(path.read_bytes()) == "1 0 yr challenge\nbeagles\nzshq\n"
