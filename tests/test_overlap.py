"""Overlap analysis: the real CMKP figures, near-duplicate search (exact, LSH, datasketch), images,
the clean split builder, prepare_splits and the mmkp-overlap CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mmkp_helpers import overlap
from mmkp_helpers.data import Example, load_cmkp, read_jsonl, read_keyphrase_list, write_jsonl
from mmkp_helpers.synthetic import SyntheticConfig, generate


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cmkp_test(cmkp_dir) -> list[Example]:
    return load_cmkp(cmkp_dir / "tw_mm_s1", "test", verbose=False)


@pytest.fixture(scope="module")
def cmkp_pool(cmkp_dir, cmkp_test) -> list[Example]:
    return load_cmkp(cmkp_dir / "tw_mm_s1", "valid", verbose=False) + cmkp_test


@pytest.fixture(scope="module")
def sample_20k(cmkp_pool) -> list[str]:
    """20,000 posts: the 10,742 real CMKP valid+test texts and 9,258 edited copies of them (and of
    each other), so that near-duplicate pairs exist at every similarity."""
    texts = [e.text for e in cmkp_pool]
    return texts + overlap.edited_copies(texts, 20_000 - len(texts), seed=0)


@pytest.fixture(scope="module")
def synthetic_pool() -> list[Example]:
    """The synthetic pool without recurring accounts: many small clusters, steerable both ways."""
    return _pool(generate(seed=0, dup_share=1.0, n_series=0))


@pytest.fixture(scope="module")
def account_pool() -> list[Example]:
    """The default synthetic pool: 8 recurring accounts, each one large cluster with its own tags."""
    return _pool(generate(seed=0, dup_share=1.0))


def _pool(parts) -> list[Example]:
    seen, pool = set(), []
    for name in ("train", "valid", "test_clean", "test"):
        for ex in parts[name]:
            if ex.id not in seen:
                seen.add(ex.id)
                pool.append(ex)
    return pool


# ------------------------------------------------------------------ keyphrase overlap on real CMKP
def test_cmkp_keyphrase_overlap(cmkp_dir, cmkp_test):
    """The published figures: 98.95% of test keyphrase occurrences are among the 4,261 training
    keyphrases, 98.62% of test posts have only seen keyphrases (exact and stemmed agree)."""
    train_kps = read_keyphrase_list(cmkp_dir / "train_keyphrases.txt")
    assert len(train_kps) == 4261 and len(cmkp_test) == 5372
    result = overlap.keyphrase_overlap(train_kps, cmkp_test)
    for matching in ("exact", "stemmed"):
        r = result[matching]
        assert r["occurrences"] == 7117
        assert round(100 * r["occurrence_share"], 2) == 98.95
        assert round(100 * r["posts_all_seen_share"], 2) == 98.62
    assert result["exact"]["seen_occurrences"] == 7042 and result["exact"]["posts_all_seen"] == 5298
    assert result["exact"]["train_distinct"] == 4261


def test_present_absent_and_labels(cmkp_test, cmkp_dir):
    pa = overlap.present_absent(cmkp_test)
    assert 0.36 < pa["present_share"] < 0.39          # "about 37% of keyphrases present"
    assert pa["present"] + pa["absent"] == pa["occurrences"] == 7117
    labels = overlap.keyphrase_labels(read_keyphrase_list(cmkp_dir / "train_keyphrases.txt"), cmkp_test)
    assert sum(labels.values()) == 7117
    assert labels["present, unseen"] + labels["absent, unseen"] == 7117 - 7042
    assert labels["present, seen"] + labels["present, unseen"] == pa["present"]


# ------------------------------------------------------------------ text normalisation, exact duplicates
def test_normalisation_and_exact_duplicates():
    assert overlap.normalize_text("RT @bob: Hello, World!! http://t.co/x <url> #Sunset") == "hello world sunset"
    assert overlap.normalize_text("<number> people , at <user>") == "number people at"
    assert overlap.shingle_set("a b c") == frozenset({("a", "b"), ("b", "c")})
    assert overlap.shingle_set("Solo!") == frozenset({("solo",)})
    assert overlap.shingle_set("... !!") == frozenset()
    texts = ["Hello world, nice day", "hello WORLD nice day !", "RT @x : hello world nice day", "!!", "? ?",
             "something else entirely here"]
    pairs = overlap.near_duplicate_pairs(texts, 0.5, method="exact")
    assert pairs.as_set() == {(0, 1), (0, 2), (1, 2)}      # empty texts are nobody's duplicates
    assert np.all(pairs.jaccard == 1.0)


def test_text_overlap_counts():
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    train = [base, "a completely different post about football and rain", "cats and dogs living together"]
    test = [base.upper() + " !",                                         # exact after normalisation
            base.replace("lazy", "sleepy"),                                # near (Jaccard 0.75)
            "nothing in common with anything at all here",                 # fresh
            ""]                                                            # empty
    for method in ("lsh", "exact", "datasketch"):
        r = overlap.text_overlap(train, test, 0.5, method=method, arrays=True)
        assert r["exact_duplicates"] == 1 and r["near_duplicates"] == 2, method
        assert r["arrays"]["near"].tolist() == [True, True, False, False]
        assert r["arrays"]["best"][1] == pytest.approx(overlap.jaccard(overlap.shingle_set(test[1]),
                                                                       overlap.shingle_set(base)))
        assert r["test_empty_texts"] == 1
        assert {(e["test"], e["train"]) for e in r["examples"]} == {(0, 0), (1, 0)}


# ------------------------------------------------------------------ near-duplicate search
def test_signatures_equal_datasketch(cmkp_pool):
    from datasketch import MinHash

    sets = overlap.TextSets([e.text for e in cmkp_pool[:60]])
    sig = sets.signatures(num_perm=64, seed=3)
    for r in range(sets.n_reps):
        ids = sets.ids[sets.offsets[r]:sets.offsets[r + 1]]
        m = MinHash(num_perm=64, seed=3, hashfunc=lambda x: x)
        m.update_batch([int(h) for h in sets.hashes[ids] >> np.uint64(32)])
        assert np.array_equal(m.hashvalues, sig[r])


def test_exact_method_is_brute_force(cmkp_pool):
    """The inverted-index search returns exactly the pairs and Jaccard values of comparing every
    pair of Python sets."""
    texts = [e.text for e in cmkp_pool[:900]]
    texts += overlap.edited_copies(texts, 600, seed=1)
    brute = overlap.brute_force_pairs(texts, 0.4)
    fast = overlap.near_duplicate_pairs(texts, 0.4, method="exact")
    assert len(brute) > 150
    assert fast.as_set() == brute.as_set()
    jb = dict(zip(zip(brute.i.tolist(), brute.j.tolist()), brute.jaccard.tolist()))
    assert all(abs(jb[(a, b)] - s) < 1e-12 for a, b, s in zip(fast.i.tolist(), fast.j.tolist(), fast.jaccard.tolist()))


def test_numpy_banding_equals_datasketch_lsh(cmkp_pool):
    """Our numpy banding and datasketch's MinHashLSH (fed our signatures) give the same candidates."""
    texts = [e.text for e in cmkp_pool[:2000]]
    texts += overlap.edited_copies(texts, 1000, seed=2)
    sets = overlap.TextSets(texts)
    bands, rows = overlap.lsh_params(0.5, 128)
    sig = sets.signatures(128, 1, columns=bands * rows)
    ours = set(zip(*(a.tolist() for a in overlap._lsh_candidates(sets, sig, bands, rows))))
    theirs = set(zip(*(a.tolist() for a in overlap._datasketch_candidates(sets, sig, 128, 1, bands, rows))))
    assert len(ours) > 500 and ours == theirs


def test_lsh_recall_20k(sample_20k):
    """MinHash-LSH finds >= 95% of the pairs that exact Jaccard finds at the same threshold, on
    20,000 posts with many true pairs at every similarity; every reported pair is a true one."""
    assert len(sample_20k) == 20_000
    for threshold in (0.5, 0.8):
        truth = overlap.near_duplicate_pairs(sample_20k, threshold, method="exact")
        found = overlap.near_duplicate_pairs(sample_20k, threshold, method="lsh")
        counts, _ = np.histogram(truth.jaccard, bins=[threshold, threshold + 0.1, 0.999, 1.0])
        assert len(truth) > 800 and counts.min() >= 100, counts   # near the threshold, higher, identical
        r = overlap.recall(found, truth)
        assert r["recall"] >= 0.95, r
        assert r["extra"] == 0 and np.all(found.jaccard >= threshold)


def test_clusters_are_connected_components():
    texts = ["a b c d e f g h", "a b c d e f g z", "q r c d e f g z", "p q r s t u", "P Q R S T U", "zz yy xx ww"]
    # 0~1 (0.75), 1~2 (0.56), but 0~2 (0.4): one chain; 3 = 4 exactly; 5 alone
    assert overlap.jaccard(overlap.shingle_set(texts[0]), overlap.shingle_set(texts[2])) == 0.4
    cluster, info = overlap.near_duplicate_clusters(texts, 0.5, method="exact")
    assert cluster.tolist() == [0, 0, 0, 1, 1, 2]
    assert info["clusters"] == 3 and info["largest_cluster"] == 3


# ------------------------------------------------------------------ images
def _photo(seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)


def test_image_phash_duplicates(tmp_path):
    def ex(name, image):
        path = tmp_path / name
        image.save(path)
        return Example(id=name, text="t", keyphrases=["k"], image=str(path))

    train = [ex(f"train{i}.png", _photo(i)) for i in range(20)]
    originals = [Image.open(train[i].image).convert("RGB") for i in range(4)]
    test = [ex("resized.jpg", originals[0].resize((60, 60))),                    # smaller, JPEG
            ex("blurred.png", originals[1].filter(ImageFilter.GaussianBlur(1))),
            ex("bigger.jpg", originals[2].resize((160, 160))),
            ex("same.png", originals[3]),
            *[ex(f"new{i}.png", _photo(100 + i)) for i in range(6)],
            Example(id="no-image", text="t", keyphrases=["k"])]
    r = overlap.image_overlap(train, test)
    assert r["test_images"] == 10 and r["test_without_image"] == 1
    assert r["duplicates"] == 4, r["nearest_distance"]
    assert {(e["test"], e["train"]) for e in r["examples"]} == {(0, 0), (1, 1), (2, 2), (3, 3)}
    assert min(r["nearest_distance"][4:]) > overlap.IMAGE_MAX_DISTANCE


# ------------------------------------------------------------------ split builder
def _cross_pairs(parts, threshold, brute: bool) -> int:
    """Near-duplicate pairs across parts, found independently of the builder."""
    texts, part = [], []
    for name in ("train", "valid", "test"):
        texts += [e.text for e in parts[name]]
        part += [name] * len(parts[name])
    pairs = (overlap.brute_force_pairs(texts, threshold) if brute
             else overlap.near_duplicate_pairs(texts, threshold, method="exact"))
    return sum(part[i] != part[j] for i, j in pairs.as_set())


def test_clean_split_synthetic(synthetic_pool):
    pool = synthetic_pool
    sizes = overlap._sizes(len(pool), 0.1, 0.15)
    clean, info = overlap.build_clean_split(pool, sizes, seed=0, unseen_share=0.1)
    assert {k: len(v) for k, v in clean.items()} == sizes and sum(sizes.values()) == len(pool)
    assert (sizes["valid"], sizes["test"]) == (round(0.1 * len(pool)), round(0.15 * len(pool)))
    assert sorted(e.id for v in clean.values() for e in v) == sorted(e.id for e in pool)
    assert _cross_pairs(clean, 0.5, brute=True) == 0                # literally every pair checked
    unseen = overlap.keyphrase_overlap(clean["train"], clean["test"])["exact"]["unseen_occurrence_share"]
    assert abs(unseen - 0.1) <= 0.01 and unseen == info["unseen_share_achieved"]
    assert info["held_out_keyphrases"] and all(" " in kp for kp in info["held_out_keyphrases"])  # colour x topic
    # the random split of the same pool keeps near-duplicates across train and test
    original = overlap.random_split(pool, sizes, seed=0)
    assert {k: len(v) for k, v in original.items()} == sizes
    assert _cross_pairs(original, 0.5, brute=False) > 20
    # same seed: same split; another seed: another one
    again, _ = overlap.build_clean_split(pool, sizes, seed=0, unseen_share=0.1)
    assert all([e.id for e in again[k]] == [e.id for e in clean[k]] for k in sizes)
    other, _ = overlap.build_clean_split(pool, sizes, seed=1, unseen_share=0.1)
    assert [e.id for e in other["test"]] != [e.id for e in clean["test"]]


def test_clean_split_keeps_accounts_whole(account_pool):
    """An account's posts are near-duplicates of one another, so each lands wholly on one side of
    the clean split (its tags unseen when that side is test), and on both sides of a random one."""
    sizes = overlap._sizes(len(account_pool), 0.1, 0.15)
    clean, info = overlap.build_clean_split(account_pool, sizes, seed=0, unseen_share=0.35)
    assert info["within_tolerance"] and _cross_pairs(clean, 0.5, brute=False) == 0
    original = overlap.random_split(account_pool, sizes, seed=0)

    def sides(parts):
        out = {}
        for name, exs in parts.items():
            for ex in exs:
                if ex.meta["truth"]["series"]:
                    out.setdefault(ex.meta["truth"]["series"], set()).add(name)
        return out

    assert all(len(s) == 1 for s in sides(clean).values())
    test_accounts = [a for a, s in sides(clean).items() if s == {"test"}]
    assert test_accounts  # and their tags are unseen in training
    seen = {kp for ex in clean["train"] for kp in ex.keyphrases}
    assert all(tag not in seen for ex in clean["test"] for tag in ex.meta["truth"]["tags"])
    assert sum(len(s) > 1 for s in sides(original).values()) >= 6
    seen = {kp for ex in original["train"] for kp in ex.keyphrases}
    assert all(tag in seen for ex in original["test"] for tag in ex.meta["truth"]["tags"])
    # asking for less than whole accounts allow: the builder says it cannot
    with pytest.warns(UserWarning, match="cannot give"):
        overlap.build_clean_split(account_pool, sizes, seed=0, unseen_share=0.1)


@pytest.mark.parametrize("target", [0.05, 0.2])
def test_clean_split_cmkp_unseen_share(cmkp_pool, target):
    """On the real pool the plain fill leaves ~11% unseen: the builder steers both ways."""
    sizes = overlap._sizes(len(cmkp_pool), 0.1, 0.15)
    clean, info = overlap.build_clean_split(cmkp_pool, sizes, seed=0, unseen_share=target)
    unseen = overlap.keyphrase_overlap(clean["train"], clean["test"])["exact"]["unseen_occurrence_share"]
    assert abs(unseen - target) <= 0.01, info
    assert (info["held_out_keyphrases"] != []) == (target > info["unseen_share_plain"])
    assert _cross_pairs(clean, 0.5, brute=False) == 0


# ------------------------------------------------------------------ prepare_splits
def test_prepare_splits_synthetic(tmp_path):
    paths = overlap.prepare_splits("synthetic", tmp_path, seed=0, verbose=False)
    folder = tmp_path / "data" / "splits" / "synthetic"
    assert set(paths) == {"original", "clean"}
    for variant in ("original", "clean"):
        assert set(paths[variant]) == {"train", "valid", "test"}
        assert (folder / variant / "train_keyphrases.txt").is_file()
    test = read_jsonl(paths["clean"]["test"])
    manifest = overlap.read_manifest(tmp_path, "synthetic")
    sizes = manifest["sizes"]
    assert sum(sizes.values()) == manifest["pool"] and sizes["test"] == round(overlap.TEST_SHARE["synthetic"] * manifest["pool"])
    assert len(test) == sizes["test"] and all(Path(e.image).is_file() for e in test)    # images reachable
    f = manifest["figures"]
    assert f["clean"]["text"]["test_vs_train"]["near_duplicates"] == 0
    assert f["original"]["text"]["test_vs_train"]["near_duplicate_share"] > 0.1
    # no steering on the synthetic pool: the unseen share is what whole clusters and the held-out
    # colour x object pairs give, none in the random split (every keyphrase recurs in its train)
    assert manifest["params"]["unseen_share"] is None and overlap.UNSEEN_SHARE["synthetic"] is None
    assert f["clean"]["unseen_share"]["test"] > 0.1 > f["original"]["unseen_share"]["test"]
    assert manifest["clean_split"]["within_tolerance"]
    assert manifest["dataset_label"] == "synthetic" and manifest["cmkp"] is None
    assert manifest["inputs"]["clean"]["test"] == "text+image" and manifest["images"]["n_fallback"] == 0
    # the held-out colour x object pairs stay unseen on the clean split: reachable unseen keyphrases
    forced = manifest["clean_split"]["forced_unseen_keyphrases"]
    assert len(forced) == SyntheticConfig().heldout_combos
    seen = set(read_keyphrase_list(folder / "clean" / "train_keyphrases.txt"))
    unseen_kinds = [ex.kinds[kp] for ex in test for kp in ex.keyphrases if kp not in seen]
    assert unseen_kinds.count("text+image") >= 20 and set(unseen_kinds) == {"tag", "text+image"}
    assert not set(forced) & seen
    assert f["original"]["unseen_share"]["test"] == 0.0
    assert f["original"]["counts"] == f["clean"]["counts"]
    # a second call with the same parameters does nothing
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*.jsonl")}
    assert overlap.prepare_splits("synthetic", tmp_path, seed=0, verbose=False) == paths
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.jsonl")} == stamp
    # other parameters: rebuilt, and the same seed gives the same files
    before = paths["clean"]["test"].read_bytes()
    overlap.prepare_splits("synthetic", tmp_path, seed=0, unseen_share=0.34, verbose=False)
    assert overlap.read_manifest(tmp_path, "synthetic")["params"]["unseen_share"] == 0.34
    overlap.prepare_splits("synthetic", tmp_path, seed=0, verbose=False)
    assert paths["clean"]["test"].read_bytes() == before


def test_prepare_splits_cmkp(tmp_path, cmkp_dir, monkeypatch):
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path / "cache"))   # training files fetched there would change the split
    paths = overlap.prepare_splits("cmkp", tmp_path, seed=0, cmkp_root=cmkp_dir, verbose=False)
    counts = {s: len(read_jsonl(p)) for s, p in paths["clean"].items()}
    assert counts == {"train": 8057, "valid": 1074, "test": 1611}
    m = overlap.read_manifest(tmp_path, "cmkp")
    assert m["pool"] == 10742
    # only the public valid/test files: a resplit, labelled so, text + wordings + OCR (no images)
    assert m["dataset_label"] == "cmkp-public-resplit" and m["original_split"] == "random"
    assert set(m["cmkp"]["folders"]) == {"valid", "test"} and len(m["cmkp"]["files"]["test"]) == 3
    assert m["inputs"]["pool"] == "text+wordings+ocr" and m["images"]["n_fallback"] == 10742
    assert m["figures"]["original"]["text"]["test_vs_train"]["near_duplicates"] > 0
    assert m["figures"]["clean"]["text"]["test_vs_train"]["near_duplicates"] == 0


# ------------------------------------------------------------------ CLI
def test_cli_keyphrase_list_json(cmkp_dir, capsys):
    rc = overlap.main(["--train", str(cmkp_dir / "train_keyphrases.txt"),
                       "--test", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train"]["keyphrases"] == 4261 and report["train"]["posts"] is None
    assert round(100 * report["keyphrases"]["exact"]["occurrence_share"], 2) == 98.95
    assert round(100 * report["keyphrases"]["exact"]["posts_all_seen_share"], 2) == 98.62
    assert report["text"] is None and report["images"] is None


def test_cli_folder_and_split_text(cmkp_dir, capsys):
    rc = overlap.main(["--train", str(cmkp_dir / "tw_mm_s1"), "--train-split", "valid",
                       "--test", str(cmkp_dir / "tw_mm_s1" / "test_src.txt"), "--examples", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "test posts with a near-duplicate in train" in out and "MinHash-LSH, 26 bands x 3 rows" in out


def test_cli_jsonl_with_images_subprocess(tmp_path):
    """Our JSONL on both sides, images included, through the installed entry point."""
    parts = generate(seed=0, n_train=80, n_valid=10, n_test=30)
    from mmkp_helpers.synthetic import render_image

    for ex in parts["train"] + parts["test"]:
        path = tmp_path / "images" / f"{ex.id}.png"
        path.parent.mkdir(exist_ok=True)
        render_image(ex.meta["drawing"]).save(path)
        ex.image = str(path)
    write_jsonl(parts["train"], tmp_path / "train.jsonl")
    write_jsonl(parts["test"], tmp_path / "test.jsonl")
    proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.overlap", "--train", str(tmp_path / "train.jsonl"),
                           "--test", str(tmp_path / "test.jsonl"), "--json"], capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["text"]["near_duplicate_share"] >= 0.3       # the synthetic test copies 30% of its posts
    assert report["images"]["test_images"] == 30
    assert report["text"]["examples"][0]["test_id"].startswith("syn-test")
    bad = subprocess.run([sys.executable, "-m", "mmkp_helpers.overlap", "--train", str(tmp_path / "nope.jsonl"),
                          "--test", str(tmp_path / "test.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "mmkp-overlap:" in bad.stderr


# ------------------------------------------------------------------ the scale benchmark, small
def test_scale_benchmark_runs_small(capsys):
    from mmkp_helpers.bench import overlap_scale

    assert overlap_scale.main(["--posts", "20000", "--check-recall", "3000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["posts"] == 20000 and out["under_2min"] and out["under_4gb"]
    assert out["injected_found_share"] >= 0.95 and out["recall_check"]["recall"] >= 0.95
    assert 0.5 < out["figures"]["keyphrase_occurrence_seen_share"] < 1.0   # 18,000 training posts
