"""Batched generation, token accounting, forced modes, prediction files and scoring."""
from __future__ import annotations

import json

import pytest
import torch

from mmkp_helpers.data import Example
from mmkp_helpers.inference import (Generation, count_generated, evaluate, generate, generation_stats,
                                    read_generations_jsonl, render_prompt, think_opening_token, think_prefill,
                                    write_cmkp_predictions, write_generations_jsonl)


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    from mmkp_helpers.modeling import load_vlm

    return load_vlm(str(tiny_model_dir), verbose=False)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Example]:
    """Posts of different lengths, with and without (differently sized) images."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("gen_images")
    out = []
    for i in range(6):
        image = None
        if i % 3:
            image = str(folder / f"{i}.png")
            Image.new("RGB", (56 + 28 * i, 56), (40 * i, 100, 200 - 30 * i)).save(image)
        out.append(Example(f"g{i}", " ".join(["word"] * (1 + 4 * i)), [f"kp{i}"], image=image,
                           attributes=["sky"] if i == 2 else [], ocr="OPEN" if i == 4 else ""))
    return out


def test_generations_in_order_with_accounting(model_and_processor, examples):
    model, processor = model_and_processor
    gens = generate(model, processor, examples, batch_size=4, max_new_tokens=5, progress=False)
    assert [g.id for g in gens] == [ex.id for ex in examples]
    for g in gens:
        assert 1 <= g.n_tokens <= 5 and g.seconds > 0
        assert g.prompt == "direct" and g.mode is None
        assert isinstance(g.keyphrases, list) and g.parse_ok == bool(g.keyphrases)
    # wall time is per batch, split evenly over its examples
    assert len({g.seconds for g in gens[:4]}) == 1


def test_left_padding_batching_matches_one_by_one(model_and_processor, examples):
    """Greedy outputs do not depend on the batch (left padding, mixed image/no-image rows)."""
    model, processor = model_and_processor
    one = generate(model, processor, examples, batch_size=1, max_new_tokens=6, progress=False)
    many = generate(model, processor, examples, batch_size=6, max_new_tokens=6, progress=False)
    assert [g.raw for g in one] == [g.raw for g in many]
    assert [g.n_tokens for g in one] == [g.n_tokens for g in many]


def test_min_new_tokens_fixes_the_length(model_and_processor, examples):
    model, processor = model_and_processor
    gens = generate(model, processor, examples[:3], max_new_tokens=7, min_new_tokens=7, progress=False)
    assert [g.n_tokens for g in gens] == [7, 7, 7]


def test_image_tokens_match_the_image(model_and_processor, examples):
    """The rendered prompt carries one image placeholder, expanded to the image's token count."""
    _, processor = model_and_processor
    from mmkp_helpers.collate import load_image

    ex = examples[2]
    text = render_prompt(processor, ex)
    assert text.count("<|image_pad|>") == 1 and text.endswith("<|im_start|>assistant\n")
    enc = processor(text=[text], images=[load_image(ex.image)], return_tensors="pt")
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((enc["input_ids"] == pad).sum()) == int(enc["image_grid_thw"].prod()) // 4
    assert "<|image_pad|>" not in render_prompt(processor, examples[0])  # no image: no image content
    assert "<|image_pad|>" not in render_prompt(processor, ex, "text_only")


@pytest.mark.parametrize("prompt", ["think", "text_only", "image_only"])
def test_every_prompt_variant_generates(model_and_processor, examples, prompt):
    model, processor = model_and_processor
    gens = generate(model, processor, examples[:3], prompt=prompt, batch_size=3, max_new_tokens=3, progress=False)
    assert [g.prompt for g in gens] == [prompt] * 3


def test_think_mode_prefills_the_tag(model_and_processor, examples):
    model, processor = model_and_processor
    tok = processor.tokenizer
    assert think_prefill(tok) == "<think"
    # the prefill's tokens are exactly the first tokens of a CoT target
    target_ids = tok("<think>Because", add_special_tokens=False)["input_ids"]
    prefill_ids = tok(think_prefill(tok), add_special_tokens=False)["input_ids"]
    assert target_ids[:len(prefill_ids)] == prefill_ids
    assert render_prompt(processor, examples[0], mode="think").endswith("<|im_start|>assistant\n<think")
    gens = generate(model, processor, examples[:2], mode="think", max_new_tokens=3, progress=False)
    assert all(g.raw.startswith("<think") and g.mode == "think" for g in gens)
    assert all(g.n_tokens <= 3 for g in gens)  # the prefill is not counted


def test_direct_mode_bans_opening_a_think_block(model_and_processor, examples):
    """Bias the model towards the token that opens <think>: unforced, it starts with it;
    in direct mode it cannot."""
    model, processor = model_and_processor
    opening = think_opening_token(processor.tokenizer)
    bias = {(opening,): 1e4}
    free = generate(model, processor, examples[:2], max_new_tokens=2, sequence_bias=bias, progress=False)
    assert all(g.raw.startswith("<th") for g in free)
    forced = generate(model, processor, examples[:2], max_new_tokens=2, mode="direct", sequence_bias=bias,
                      progress=False)
    assert not any(g.raw.startswith("<th") for g in forced)
    # only the first position is constrained: the biased token follows at the second
    assert all("<th" in g.raw for g in forced)


def test_unknown_mode_is_refused(model_and_processor, examples):
    model, processor = model_and_processor
    with pytest.raises(ValueError, match="unknown mode"):
        generate(model, processor, examples[:1], mode="maybe", progress=False)


def test_training_mode_is_restored(model_and_processor, examples):
    model, processor = model_and_processor
    model.train()
    generate(model, processor, examples[:1], max_new_tokens=1, progress=False)
    assert model.training
    model.eval()


def test_count_generated_stops_at_first_end_token():
    eos = [9, 8]
    new = torch.tensor([[1, 2, 9, 8, 8], [1, 2, 3, 4, 5], [8, 8, 8, 8, 8], [3, 8, 9, 9, 9]])
    assert count_generated(new, eos) == [3, 5, 1, 2]


def _gen(i, kps, n=4, raw=None):
    return Generation(id=f"g{i}", raw=raw if raw is not None else "; ".join(kps), keyphrases=kps, reasoning=None,
                      parse_ok=bool(kps), n_tokens=n, seconds=0.5)


def test_writers_round_trip(tmp_path):
    from mmkp_helpers.metrics import read_predictions

    gens = [_gen(0, ["sunset", "red sky"]), _gen(1, []), _gen(2, ["a;b", "c"], raw='x "quoted"\nline')]
    path = write_cmkp_predictions(tmp_path / "pred.txt", gens)
    assert path.read_text().splitlines() == ["sunset;red sky", "", "a b;c"]
    assert read_predictions(path, expected_lines=3) == [["sunset", "red sky"], [], ["a b", "c"]]
    jpath = write_generations_jsonl(tmp_path / "gen.jsonl", gens)
    first = json.loads(jpath.read_text().splitlines()[0])
    assert {"id", "prediction", "raw", "n_tokens", "seconds"} <= set(first)
    assert read_generations_jsonl(jpath) == gens


def test_evaluate_scores_by_id():
    examples = [Example("g0", "a red sky at sunset", ["sunset", "red sky"]),
                Example("g1", "nothing here", ["harbour"]),
                Example("g2", "text", ["kp"], meta={"kinds": {"kp": "image"}})]
    perfect = [_gen(2, ["kp"]), _gen(0, ["sunset", "red sky"]), _gen(1, ["harbour"])]  # any order
    scores = evaluate(perfect, examples)
    assert scores["n"] == 3
    assert scores["all"]["F1@M"] == pytest.approx(1.0)
    assert scores["present"]["F1@M"] == pytest.approx(1.0) and scores["absent"]["F1@M"] == pytest.approx(1.0)
    assert "image" in scores
    empty = evaluate([_gen(0, []), _gen(1, []), _gen(2, [])], examples)
    assert empty["all"]["F1@M"] == 0.0
    with pytest.raises(ValueError, match="do not match"):
        evaluate(perfect[:2], examples)
    with_unseen = evaluate(perfect, examples, train_keyphrases=["sunset"])
    assert "unseen" in with_unseen


def test_generation_stats():
    gens = [_gen(0, ["a"], n=4), _gen(1, [], n=10)]
    gens[1].reasoning = "because"
    gens[1].raw = "<think>because the bike is"  # cut off by the budget while reasoning
    stats = generation_stats(gens)
    assert stats == {"n": 2, "parse_failed": 1, "with_reasoning": 1, "think_share": 0.5, "cut_in_think": 1,
                     "gen_tokens_mean": 7.0, "seconds_per_example": 0.5, "keyphrases_mean": 0.5}
    gens[1].raw = "<think>because</think>\nKeyphrases: bike"
    assert generation_stats(gens)["cut_in_think"] == 0 and generation_stats(gens)["think_share"] == 0.5
    assert generation_stats([])["gen_tokens_mean"] is None
