"""The training collator: chat-templated batches and their label masks, position by position."""
from __future__ import annotations

import pytest
import torch

from mmkp_helpers.collate import (IGNORE_INDEX, ChatCollator, TargetForms, TrainRecord, load_image,
                                  make_records)
from mmkp_helpers.data import Example
from mmkp_helpers.prompts import build_messages


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from mmkp_helpers.modeling import load_processor

    return load_processor(str(tiny_model_dir))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("collate_images")
    paths = {}
    for name, colour, size in [("red", (220, 20, 20), (56, 56)), ("blue", (20, 20, 220), (112, 84))]:
        paths[name] = str(folder / f"{name}.png")
        Image.new("RGB", size, colour).save(paths[name])
    return paths


@pytest.fixture
def records(images):
    examples = [
        Example("a", "red car in the street", ["red", "street car"], image=images["red"], attributes=["car"]),
        Example("b", "hello", ["greeting"]),
        Example("c", "a blue wall, long post text here to make it the longest one of all", ["blue wall"],
                image=images["blue"], ocr="NO PARKING"),
    ]
    return make_records(examples, rationales={"a": "the car is red", "c": "the wall is blue"})


def expected_row(processor, record: TrainRecord, form: str, prompt: str = "direct"):
    """Independent reconstruction: the prompt tokenized on its own (with its image), then the
    target's tokens, <|im_end|> and the newline. Returns (input_ids, labels) without padding."""
    tok = processor.tokenizer
    msgs = build_messages(record.example, prompt)
    prompt_text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    has_image = any(c["type"] == "image" for c in msgs[0]["content"])
    images = [load_image(record.example.image)] if has_image else None
    prompt_ids = processor(text=[prompt_text], images=images, return_tensors="pt")["input_ids"][0].tolist()
    answer = tok(record.target(form), add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    ids = prompt_ids + answer + newline
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer + [IGNORE_INDEX] * len(newline)
    return ids, labels


def check_batch(processor, batch, records, forms, prompt="direct"):
    pad = processor.tokenizer.pad_token_id
    for row, (record, form) in enumerate(zip(records, forms)):
        ids, labels = expected_row(processor, record, form, prompt)
        n = len(ids)
        # right padding: the sequence, then padding
        assert batch["input_ids"][row, :n].tolist() == ids
        assert batch["attention_mask"][row, :n].tolist() == [1] * n
        assert (batch["input_ids"][row, n:] == pad).all()
        assert (batch["attention_mask"][row, n:] == 0).all()
        # every position: the answer + <|im_end|> learned, all else -100
        assert batch["labels"][row, :n].tolist() == labels
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_every_position_mixed_batch(processor, records):
    forms = TargetForms(default="direct")
    batch = ChatCollator(processor, forms=forms)(records)
    check_batch(processor, batch, records, ["direct"] * 3)
    assert batch["example_ids"] == ["a", "b", "c"]
    assert batch["forms"] == ["direct"] * 3
    # two images: pixel rows = sum of patches; image tokens = patches / merge^2
    grid = batch["image_grid_thw"]
    assert grid.shape == (2, 3)
    assert batch["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_image_tokens = (batch["input_ids"] == image_pad).sum(dim=1).tolist()
    assert n_image_tokens == [int(grid[0].prod()) // 4, 0, int(grid[1].prod()) // 4]


def test_vision_and_padding_never_learned(processor, records):
    batch = ChatCollator(processor)(records)
    tok = processor.tokenizer
    for name in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>"):
        tid = tok.convert_tokens_to_ids(name)
        assert (batch["input_ids"] == tid).any()
        assert not (batch["labels"] == tid).any()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    # the learned tokens decode to exactly target + <|im_end|>
    for row, record in enumerate(records):
        learned = batch["input_ids"][row][batch["labels"][row] != IGNORE_INDEX]
        assert tok.decode(learned) == record.direct + "<|im_end|>"


def test_without_images(processor, records):
    text_records = records[1:2]
    batch = ChatCollator(processor)(text_records)
    assert "pixel_values" not in batch
    check_batch(processor, batch, text_records, ["direct"])


def test_text_only_prompt_drops_images(processor, records):
    batch = ChatCollator(processor, prompt="text_only")(records)
    assert "pixel_values" not in batch
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert not (batch["input_ids"] == image_pad).any()
    check_batch(processor, batch, records, ["direct"] * 3, prompt="text_only")


def test_cot_form_and_fallback(processor, records):
    forms = TargetForms(default="cot")
    batch = ChatCollator(processor, forms=forms)(records)
    # "b" has no rationale: it trains direct even when CoT is asked for
    assert batch["forms"] == ["cot", "direct", "cot"]
    check_batch(processor, batch, records, ["cot", "direct", "cot"])
    learned = batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX]
    assert processor.tokenizer.decode(learned) == "<think>the car is red</think>\nKeyphrases: red; street car<|im_end|>"


def test_form_changes_take_effect_on_next_batch(processor, records):
    forms = TargetForms()
    collator = ChatCollator(processor, forms=forms)
    first = collator(records)
    forms["c"] = "cot"
    second = collator(records)
    assert first["forms"] == ["direct", "direct", "direct"]
    assert second["forms"] == ["direct", "direct", "cot"]
    assert second["input_ids"].shape[1] > first["input_ids"].shape[1]  # the rationale made "c" longer
    check_batch(processor, second, records, ["direct", "direct", "cot"])


def test_target_forms_state(tmp_path):
    forms = TargetForms(default="direct", forms={"a": "cot"})
    assert forms["a"] == "cot" and forms["zzz"] == "direct"
    v = forms.version
    forms.update({"b": "cot"})
    forms.set_default("cot")
    assert forms.version == v + 2
    assert forms.counts(["a", "b", "c"]) == {"direct": 0, "cot": 3}
    loaded = TargetForms.load(forms.save(tmp_path / "forms.json"))
    assert loaded.to_dict() == forms.to_dict()
    other = TargetForms()
    other.load_state(forms.to_dict())
    assert other["c"] == "cot"
    with pytest.raises(ValueError):
        forms["a"] = "sometimes"
    with pytest.raises(ValueError):
        TargetForms(default="sometimes")
    assert TargetForms(default="both")["a"] == "both"  # each visit then trains one form (resolve)


def test_train_record_target():
    rec = TrainRecord(Example("x", "t", ["k"]), "k", None)
    assert rec.target("cot") == "k" and rec.used_form("cot") == "direct"
    with pytest.raises(ValueError):
        rec.target("other")


def test_batch_is_accepted_by_the_model(tiny_model_dir, processor, records):
    """The collated batch (minus attribution keys) runs through the model; its own loss on our
    labels is finite, so image features and image tokens agree."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    batch = ChatCollator(processor, forms=TargetForms(default="cot"))(records)
    inputs = {k: v for k, v in batch.items() if k not in ("example_ids", "forms", "image_paths")}
    with torch.no_grad():
        out = model(**inputs)
    assert torch.isfinite(out.loss)


def test_cached_rows_give_the_processors_batches(processor, images):
    """The collator's row cache (on by default) assembles exactly the batches the processor makes
    on the whole batch with cache=False: every key, dtype and value, in both forms, with and
    without images, with the text-only template, with truncation, and on a revisit (from the cache)."""
    import itertools

    posts = [Example(f"p{i}", text, kps, image=images[("red", "blue")[i % 2]] if i % 3 else None,
                     attributes=["car", "wall"][: i % 3], ocr="STOP" if i % 4 == 0 else "")
             for i, (text, kps) in enumerate(itertools.product(
                 ["red car", "a blue wall, and a long post text to make padding differ from row to row", "hi"],
                 [["red"], ["blue wall", "street"]]))]
    records = make_records(posts, rationales={p.id: f"the post names {p.keyphrases[0]}" for p in posts[::2]})
    for prompt, max_length, default, pixel_bytes in [("direct", None, "direct", 2**29), ("direct", None, "cot", 2**29),
                                                     ("text_only", None, "cot", 2**29), ("direct", 60, "cot", 2**29),
                                                     ("direct", None, "cot", 0)]:
        cached = ChatCollator(processor, prompt=prompt, forms=TargetForms(default), max_length=max_length,
                              pixel_cache_bytes=pixel_bytes)
        plain = ChatCollator(processor, prompt=prompt, forms=TargetForms(default), max_length=max_length, cache=False)
        assert cached.cache and not plain.cache
        for size in (4, 3):  # the second pass assembles other batches from the kept rows and pixels
            for start in range(0, len(records), size):
                batch, expected = cached(records[start:start + size]), plain(records[start:start + size])
                assert set(batch) == set(expected)
                for key, value in expected.items():
                    if torch.is_tensor(value):
                        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), (prompt, key)
                    else:
                        assert batch[key] == value, key
        assert len(cached._rows) >= len(records) and not plain._rows
        assert cached.truncated_ids == plain.truncated_ids and cached.overlong_ids == plain.overlong_ids
        assert bool(cached.truncated_ids) == (max_length is not None)  # the truncation path ran
        assert bool(cached._pixels) == (pixel_bytes > 0 and prompt == "direct")  # past the budget: per batch
