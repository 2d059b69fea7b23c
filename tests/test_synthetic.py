"""The synthetic benchmark: determinism, and every property its design promises."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from mmkp_helpers.data import read_jsonl, read_keyphrase_list
from mmkp_helpers.metrics import score_examples
from mmkp_helpers.synthetic import (COLOUR_RGB, COLOURS, EVENTS, MIXES, NEEDS, PRIMARIES, SCENES, SERIES_NAMES, TAGS,
                                    TOPICS, SyntheticConfig, caption, generate, make_synthetic, mix)
from mmkp_helpers.text import present_in_text

NEAR_DUP = 0.5  # the design's near-duplicate threshold on word-bigram Jaccard


def tree_hash(folder: Path) -> str:
    """One SHA-256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "seed0"
    make_synthetic(out, seed=0)
    return out


@pytest.fixture(scope="module")
def splits(bench) -> dict:
    return {name: read_jsonl(bench / f"{name}.jsonl") for name in ("train", "valid", "test", "test_clean")}


# ------------------------------------------------------------------ determinism
def test_same_seed_same_bytes(bench, tmp_path):
    again = make_synthetic(tmp_path / "again", seed=0)
    assert set(again) == {"train", "valid", "test", "test_clean"}
    assert tree_hash(tmp_path / "again") == tree_hash(bench)
    make_synthetic(tmp_path / "other", seed=1, n_train=60, n_valid=10, n_test=20)
    assert (tmp_path / "other" / "train.jsonl").read_bytes()[:2000] != (bench / "train.jsonl").read_bytes()[:2000]


def test_in_memory_generation_matches_files(splits):
    mem = generate(seed=0)
    for name, examples in splits.items():
        assert [(e.id, e.text, e.keyphrases) for e in mem[name]] == [(e.id, e.text, e.keyphrases) for e in examples]


# ------------------------------------------------------------------ sizes and files
def test_sizes_and_files(bench, splits):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "valid": 100, "test": 550, "test_clean": 550}
    assert manifest["counts"] == {k: len(v) for k, v in splits.items()}
    assert manifest["variants"]["clean"]["test"] == "test_clean"
    assert len({e.id for part in splits.values() for e in part}) == 600 + 100 + 550 + 165
    # exact shares of the kinds of post in every fresh split, recorded in the manifest
    for name, n in (("valid", 100), ("test_clean", 550)):
        counts = {k: sum(ex.meta["needs"] == k for ex in splits[name]) for k in NEEDS}
        assert counts == {"image": round(0.35 * n), "composition": round(0.25 * n),
                          "text": n - round(0.35 * n) - round(0.25 * n)}
        assert {k: v["posts"] for k, v in manifest["needs"][name].items()} == counts
    for part in splits.values():
        for ex in part:
            assert 4 <= len(ex.text.split()) <= (22 if ex.meta["truth"]["series"] else 20)  # + "via <name>"
            assert ex.image and Path(ex.image).is_file()
    assert read_keyphrase_list(bench / "train_keyphrases.txt") == sorted({kp for e in splits["train"] for kp in e.keyphrases})


def test_images_carry_the_cues(splits):
    """The background colour is the scene's; an image post's centre is its shape's colour; a
    composition post's two halves are its two primaries; a text post's picture is plain grey."""
    def close(pixel, rgb, tol):
        return all(abs(a - b) <= tol for a, b in zip(pixel, rgb))

    for ex in splits["test"][:90]:
        img = Image.open(ex.image)
        assert img.format == "PNG" and img.size == (112, 112) and img.mode == "RGB"
        assert not img.info  # no metadata, no timestamps
        truth = ex.meta["truth"]
        background = SCENES[truth["scene"]][0] if truth["scene"] else (128, 128, 128)
        assert close(img.getpixel((2, 2)), background, 8)
        if truth["needs"] == "image":
            assert close(img.getpixel((56, 56)), COLOUR_RGB[truth["colour"]], 12)
        elif truth["needs"] == "composition":
            left, right = truth["primaries"]
            assert close(img.getpixel((30, 56)), PRIMARIES[left], 12) and close(img.getpixel((82, 56)), PRIMARIES[right], 12)
            assert mix(left, right) == truth["colour"]
        else:
            assert truth["scene"] is None and close(img.getpixel((56, 56)), background, 8)
        assert caption(truth).endswith("background.")


def test_the_mixing_rule_is_one_to_one():
    assert sorted(MIXES.values()) == sorted(COLOURS) and set(PRIMARIES) <= set(COLOURS)
    assert mix("red", "blue") == mix("blue", "red") == "purple" and mix("yellow", "yellow") == "yellow"


# ------------------------------------------------------------------ keyphrase kinds
def test_kind_shares_within_bounds(bench, splits):
    expected = SyntheticConfig().expected_kind_shares()
    assert expected["present"] == pytest.approx(1.3 / (1.3 + 0.6 + 0.6 * 0.85 + 240 / 600 * 3))
    fresh = SyntheticConfig(n_series=0).expected_kind_shares()  # valid and test posts: no accounts
    assert fresh["tag"] == 0.0 and fresh["present"] == pytest.approx(1.3 / (1.3 + 0.6 + 0.51))
    manifest = json.loads((bench / "manifest.json").read_text())
    for name, examples in splits.items():
        counts = {"present": 0, "image": 0, "text+image": 0, "tag": 0}
        for ex in examples:
            assert set(ex.meta["kinds"]) == set(ex.keyphrases)
            for kp in ex.keyphrases:
                counts[ex.meta["kinds"][kp]] += 1
        total = sum(counts.values())
        for kind in counts:
            assert manifest["kind_shares"][name][kind] == pytest.approx(counts[kind] / total, abs=1e-4)
        if name == "test":  # fresh posts and copies of training posts: in between
            assert 0 < counts["tag"] / total < expected["tag"]
            continue
        target, tolerance = (expected, 0.04) if name == "train" else (fresh, 0.07)
        for kind, share in target.items():
            assert abs(counts[kind] / total - share) <= tolerance, (name, kind, counts[kind] / total)


def test_kinds_follow_their_rules(splits):
    for examples in splits.values():
        for ex in examples:
            words = set(ex.text.split())
            truth = ex.meta["truth"]
            for kp, kind in ex.meta["kinds"].items():
                if kind == "present":
                    assert present_in_text(kp, ex.text) and kp in (truth["topic"], truth["event"])
                else:  # image-only and text+image keyphrases are never in the text
                    assert not present_in_text(kp, ex.text)
                if kind == "image":
                    assert kp == truth["scene"] and kp not in words
                if kind == "text+image":
                    colour, topic = kp.split()
                    assert (colour, topic) == (truth["colour"], truth["topic"]) and truth["needs"] != "text"
                    assert colour not in words and topic in words
                    if truth["needs"] == "composition":
                        assert mix(*truth["primaries"]) == colour
                if kind == "tag":  # an account's tag: never in the text, which carries the signature
                    assert kp in truth["tags"] and kp not in words and f"via {truth['series']}" in ex.text
            # no scene or colour word appears in any text; a text post's keyphrases are all in its text or tags
            assert not words & (set(SCENES) | set(COLOURS))
            if truth["needs"] == "text":
                assert set(ex.meta["kinds"].values()) <= {"present", "tag"}
            # the ground truth a teacher needs: one cue per keyphrase
            assert [c["keyphrase"] for c in ex.meta["cues"]] == ex.keyphrases


def test_unseen_test_keyphrases_are_made_of_seen_words(bench, splits):
    seen = {kp for ex in splits["train"] for kp in ex.keyphrases}
    seen_words = {w for kp in seen for w in kp.split()}
    heldout = json.loads((bench / "manifest.json").read_text())["heldout_combos"]
    assert heldout and not set(heldout) & seen
    for name in ("test", "test_clean", "valid"):
        unseen = [kp for ex in splits[name] for kp in ex.keyphrases if kp not in seen]
        assert len(set(unseen)) >= 4, name
        assert set(unseen) <= set(heldout)
        assert all(set(kp.split()) <= seen_words for kp in unseen)
    # exactly unseen_share of the fresh composition posts use a held-out pair; no other post does
    comp = [ex for ex in splits["test_clean"] if ex.meta["needs"] == "composition"]
    assert sum(ex.meta["heldout"] for ex in comp) == round(0.9 * len(comp))
    assert not any(ex.meta["heldout"] for ex in splits["test_clean"] if ex.meta["needs"] != "composition")
    # every topic, colour, scene and event is seen in training
    assert {w for w in seen_words} >= set(TOPICS) | set(COLOURS) | set(SCENES) | set(EVENTS)


# ------------------------------------------------------------------ recurring accounts
def test_accounts_repeat_one_post_with_tags_of_their_own(bench, splits):
    cfg = SyntheticConfig()
    manifest = json.loads((bench / "manifest.json").read_text())
    train = splits["train"]
    accounts: dict[str, list] = {}
    for ex in train:
        if ex.meta["truth"]["series"]:
            accounts.setdefault(ex.meta["truth"]["series"], []).append(ex)
    assert len(accounts) == cfg.n_series and all(len(posts) == cfg.series_size for posts in accounts.values())
    assert set(accounts) <= set(SERIES_NAMES)
    assert {a["name"]: a["tags"] for a in manifest["series"]} == {
        f"via {name}": posts[0].meta["truth"]["tags"] for name, posts in accounts.items()}
    owner = {}
    for name, posts in accounts.items():
        first = posts[0]
        tags = first.meta["truth"]["tags"]
        assert len(tags) == cfg.series_tags and set(tags) <= set(TAGS)
        for ex in posts:  # one subject, one frame, one set of tags: near-duplicates of the first post
            truth = ex.meta["truth"]
            assert (truth["topic"], truth["needs"], truth["colour"], truth["scene"], truth["tags"]) == (
                first.meta["truth"]["topic"], first.meta["truth"]["needs"], first.meta["truth"]["colour"],
                first.meta["truth"]["scene"], tags)
            assert ex.keyphrases[-len(tags):] == tags
            assert _jaccard(ex.text, first.text) >= NEAR_DUP
        for tag in tags:
            assert owner.setdefault(tag, name) == name  # no tag is shared between accounts
    # nobody else uses the tags or the signature
    for name in ("train", "valid", "test_clean"):
        for ex in splits[name]:
            if not ex.meta["truth"]["series"]:
                assert not set(ex.keyphrases) & set(owner) and " via " not in f" {ex.text} "
    # copies of account posts keep the account's tags: the original test split has seen tags
    copied = [ex for ex in splits["test"] if ex.meta["truth"]["series"]]
    assert copied and all("near_duplicate_of" in ex.meta for ex in copied)
    assert not any(ex.meta["truth"]["series"] for ex in splits["test_clean"] + splits["valid"])


# ------------------------------------------------------------------ original vs clean overlap
def _bigrams(text: str) -> set:
    words = text.lower().split()
    return {tuple(words[i:i + 2]) for i in range(len(words) - 1)}


def _jaccard(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return len(x & y) / len(x | y)


def _max_jaccard(text: str, train_bigrams: list[set]) -> float:
    a = _bigrams(text)
    return max(len(a & b) / len(a | b) for b in train_bigrams)


def test_original_split_overlaps_and_clean_does_not(splits):
    train = {ex.id: ex for ex in splits["train"]}
    train_bigrams = [_bigrams(ex.text) for ex in splits["train"]]
    original = [(ex, _max_jaccard(ex.text, train_bigrams)) for ex in splits["test"]]
    near = [ex for ex, j in original if j >= NEAR_DUP]
    assert len(near) >= 0.25 * len(splits["test"])
    for ex in near:  # each near-duplicate copies a training post's keyphrases
        source = train[ex.meta["near_duplicate_of"]]
        assert ex.keyphrases == source.keyphrases and ex.text != source.text
    assert {ex.id for ex in near} == {ex.id for ex in splits["test"] if "near_duplicate_of" in ex.meta}
    assert all(_max_jaccard(ex.text, train_bigrams) < NEAR_DUP for ex in splits["test_clean"])
    assert all(_max_jaccard(ex.text, train_bigrams) < NEAR_DUP for ex in splits["valid"])
    # the two variants share their fresh posts: the difference is exactly the near-duplicates
    clean_ids = {ex.id for ex in splits["test_clean"]}
    assert {ex.id for ex in splits["test"]} - clean_ids == {ex.id for ex in near}


# ------------------------------------------------------------------ it scores, and the words are Qwen tokens
def test_oracle_scores_one_and_kind_subsets(splits, bench):
    test = splits["test_clean"]
    result = score_examples([ex.keyphrases for ex in test], test,
                            train_keyphrases=read_keyphrase_list(bench / "train_keyphrases.txt"))
    for subset in ("all", "present", "absent", "unseen", "image", "text+image", "kind:present", "needs:text",
                   "needs:image", "needs:composition"):
        assert result[subset]["F1@M"] == pytest.approx(1.0) and result[subset]["MAP@5"] == pytest.approx(1.0)
    # a text-only guess (topic, event, and the most common colour and scene) stays far below
    guess = [[w for w in (ex.meta["truth"]["topic"], ex.meta["truth"]["event"]) if w]
             + [f"red {ex.meta['truth']['topic']}", "night"] for ex in test]
    text_only = score_examples(guess, test)
    assert text_only["needs:text"]["R@M"] == 1.0
    assert text_only["image"]["F1@M"] < 0.5 and text_only["text+image"]["F1@M"] < 0.5
    assert text_only["kind:present"]["R@M"] == 1.0  # the text alone gives every present keyphrase


def test_keyphrase_words_are_single_qwen_tokens():
    from mmkp_helpers.modeling import build_qwen_tokenizer

    tok = build_qwen_tokenizer()
    for word in (*TOPICS, *EVENTS, *COLOURS, *SCENES, *TAGS):  # (the tiny base's cut vocabulary keeps them)
        assert len(tok.tokenize(" " + word)) == 1 and len(tok.tokenize(word)) == 1, word


def test_config_is_checked():
    with pytest.raises(ValueError):
        generate(n_train=10, n_test=100, dup_share=0.5)
    with pytest.raises(ValueError):
        generate(p_scene=1.5)
    with pytest.raises(ValueError):
        generate(n_train=10, n_series=8, series_share=0.4)  # 4 posts for 8 accounts
    with pytest.raises(ValueError):
        generate(series_share=1.5)
    with pytest.raises(ValueError, match="p_image \\+ p_composition"):
        generate(p_image=0.7, p_composition=0.5)
    assert SyntheticConfig().series_size == 30 and SyntheticConfig(n_train=60).series_size == 3
    assert not any(ex.meta["truth"]["series"] for ex in generate(n_series=0, n_train=60, n_valid=5, n_test=10)["train"])


# ------------------------------------------------------------------ the cues survive a frozen random vision tower
def _image_features(model, processor, examples):
    import torch

    images = [Image.open(ex.image).convert("RGB") for ex in examples]
    inputs = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
    feats = getattr(feats, "pooler_output", feats)
    if isinstance(feats, (list, tuple)):
        feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])
    return feats.reshape(len(examples), -1)


@pytest.mark.slow
def test_linear_probe_on_frozen_random_vision_tower(splits, tiny_model_dir):
    """The design premise: the image tokens of the tiny random Qwen2-VL (untrained vision tower)
    still tell the scene, an image post's shape colour and a composition post's two primaries apart,
    so what the pictures show reaches the language model even before any training."""
    import torch
    from transformers import AutoModelForImageTextToText

    from mmkp_helpers.modeling import load_processor

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir)).eval()
    processor = load_processor(str(tiny_model_dir))
    train, test = splits["train"], splits["test_clean"]
    x_train, x_test = _image_features(model, processor, train), _image_features(model, processor, test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    cues = {"scene": (lambda ex: True, lambda t: t["scene"]),
            "colour": (lambda ex: ex.meta["needs"] == "image", lambda t: t["colour"]),  # one shape's colour
            "primaries": (lambda ex: ex.meta["needs"] == "composition", lambda t: t["primaries"])}  # both shapes'
    for cue, (kept, label) in cues.items():
        tr = [i for i, ex in enumerate(train) if kept(ex)]
        te = [i for i, ex in enumerate(test) if kept(ex)]
        labels = sorted({str(label(train[i].meta["truth"])) for i in tr})
        y_train = torch.tensor([labels.index(str(label(train[i].meta["truth"]))) for i in tr])
        y_test = torch.tensor([labels.index(str(label(test[i].meta["truth"]))) for i in te])
        xa, xb = x_train[tr], x_test[te]
        weight = torch.zeros(x_train.shape[1], len(labels), requires_grad=True)
        bias = torch.zeros(len(labels), requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
        for _ in range(200):
            loss = torch.nn.functional.cross_entropy(xa @ weight + bias, y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy = ((xb @ weight + bias).argmax(1) == y_test).float().mean().item()
        assert accuracy >= 0.9, (cue, accuracy)
