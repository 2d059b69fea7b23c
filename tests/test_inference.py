"""Batched generation, token accounting, forced modes, prediction files and scoring."""
from __future__ import annotations

import json

import pytest
import torch

from mmkp_helpers.data import Example
from mmkp_helpers.inference import (Generation, count_generated, cut_in_think, direct_prefill, evaluate, generate,
                                    generation_stats, read_generations_jsonl, render_prompt, scan_generated,
                                    think_opening_token, think_prefill, think_tag_tokens, write_cmkp_predictions,
                                    write_generations_jsonl)


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


def test_direct_mode_prefills_the_answer_label(model_and_processor, examples):
    model, processor = model_and_processor
    tok = processor.tokenizer
    assert direct_prefill(tok) == "Keyphrases:"
    # the prefill's tokens are exactly the first tokens of a direct target
    from mmkp_helpers.prompts import direct_target

    for kps in (["bike"], ["the trip", "1 day"], ["#tag"], []):
        target_ids = tok(direct_target(kps), add_special_tokens=False)["input_ids"]
        prefill_ids = tok(direct_prefill(tok), add_special_tokens=False)["input_ids"]
        assert target_ids[:len(prefill_ids)] == prefill_ids
    assert render_prompt(processor, examples[0], mode="direct").endswith("<|im_start|>assistant\nKeyphrases:")


def test_think_tag_tokens_cover_every_spelling_of_a_tag(model_and_processor):
    tok = model_and_processor[1].tokenizer
    banned = set(think_tag_tokens(tok))
    assert think_opening_token(tok) in banned
    for text in ("<think>Because", "x<think>", "a <think>", ".<think>", "</think>", " </think>\n", "<THINK>"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert banned & set(ids), text
    keyphrase_ids = tok("Keyphrases: bike; new york; the think tank; 1 <3 u", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in keyphrase_ids if i in banned] == [" <"]  # only text ending in "<" is lost
    assert think_tag_tokens(tok) is think_tag_tokens(tok)  # computed once per tokenizer


def test_each_mode_has_the_form_it_promises(model_and_processor, examples):
    """Forced direct: starts with the answer label, never a <think> (even for a model pushed
    towards it at every step); forced think: starts with <think. Free: the model decides."""
    model, processor = model_and_processor
    tok = processor.tokenizer
    push = {(think_opening_token(tok),): 1e4, (tok.convert_tokens_to_ids("<"),): 5e3}
    free = generate(model, processor, examples[:3], max_new_tokens=4, sequence_bias=push, progress=False)
    assert all(g.raw.startswith("<th") for g in free)  # the push works when nothing forbids it
    direct = generate(model, processor, examples[:3], max_new_tokens=6, mode="direct", sequence_bias=push,
                      progress=False)
    for g in direct:
        assert g.raw.startswith("Keyphrases:") and g.mode == "direct"
        assert "<think" not in g.raw.lower() and "</think" not in g.raw.lower()
        assert g.n_tokens <= 6  # the prefill is not counted
    plain = generate(model, processor, examples[:3], max_new_tokens=6, mode="direct", progress=False)
    assert all(g.raw.startswith("Keyphrases:") and "<think" not in g.raw.lower() for g in plain)
    think = generate(model, processor, examples[:3], max_new_tokens=6, mode="think", progress=False)
    assert all(g.raw.startswith("<think") and g.mode == "think" for g in think)


def test_hit_limit_is_true_exactly_when_no_end_token_was_generated(model_and_processor, examples):
    model, processor = model_and_processor
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    ended = generate(model, processor, examples[:3], max_new_tokens=4, sequence_bias={(end,): 1e4}, progress=False)
    assert all(g.hit_limit is False and g.n_tokens == 1 for g in ended)
    running = generate(model, processor, examples[:3], max_new_tokens=4, min_new_tokens=4, progress=False)
    assert all(g.hit_limit is True and g.n_tokens == 4 for g in running)  # the end token was suppressed
    stats = generation_stats(running + ended)
    assert stats["cut_off"] == 3 and stats["cut_in_think"] == 0


def test_scan_generated_property():
    """Over random rows: hit_limit == no end token in the row; the count stops at the first one."""
    gen = torch.Generator().manual_seed(0)
    eos = [7, 9]
    new = torch.randint(0, 12, (200, 6), generator=gen)
    for row, (n, hit) in zip(new.tolist(), scan_generated(new, eos)):
        assert hit == (not any(t in eos for t in row))
        assert n == (len(row) if hit else next(i for i, t in enumerate(row) if t in eos) + 1)
    assert [n for n, _ in scan_generated(new, eos)] == count_generated(new, eos)


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
    gens[0].hit_limit, gens[1].hit_limit = True, False  # and None (unknown) for the third
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
    gens[1].hit_limit = True
    stats = generation_stats(gens)
    assert stats == {"n": 2, "parse_failed": 1, "with_reasoning": 1, "think_share": 0.5, "cut_off": 1,
                     "cut_in_think": 1, "gen_tokens_mean": 7.0, "seconds_per_example": 0.5, "keyphrases_mean": 0.5}
    gens[1].hit_limit = False  # the same text, stopped on its own: unclosed, not cut off
    assert generation_stats(gens)["cut_in_think"] == 0 and generation_stats(gens)["cut_off"] == 0
    assert not cut_in_think(gens[1])
    gens[1].raw, gens[1].hit_limit = "<think>because</think>\nKeyphrases: bike", True
    assert generation_stats(gens)["cut_in_think"] == 1  # the budget ran out after the answer began
    gens[0].hit_limit = True  # a direct output that hit the limit: cut off, not in <think>
    assert generation_stats(gens)["cut_off"] == 2 and generation_stats(gens)["cut_in_think"] == 1
    gens[1].hit_limit = None  # unknown (an old file): not counted
    assert generation_stats(gens)["cut_in_think"] == 0 and generation_stats(gens)["think_share"] == 0.5
    assert generation_stats([])["gen_tokens_mean"] is None


def test_record_carries_rationale_quality():
    from mmkp_helpers import experiment

    examples = [Example("g0", "a bike trip", ["bike"]), Example("g1", "a bike trip", ["trip"])]
    gens = [_gen(0, ["bike"], raw="<think>the text names a bike: bike.</think>\nKeyphrases: bike"),
            _gen(1, ["trip"], raw="Keyphrases: trip")]
    gens[0].hit_limit = gens[1].hit_limit = False
    rec = experiment.record("04", "fine_tune_cot", "v", "synthetic", "clean", gens, evaluate(gens, examples))
    assert rec["well_formed_share"] == 1.0 and rec["think_share"] == 0.5
    assert rec["rationale_quality"]["n_cot"] == 1 and rec["rationale_quality"]["well_formed"] == 1
    assert "examples" not in rec["rationale_quality"]
    assert rec["cut_off"] == 0 and rec["cut_in_think"] == 0
    direct = experiment.record("04", "sft", "v", "synthetic", "clean", gens[1:], evaluate(gens[1:], examples[1:]))
    assert direct["well_formed_share"] is None and direct["rationale_quality"]["n_cot"] == 0


def test_prefills_continue_the_mode_prefill_and_stay_in_raw(model_and_processor, examples):
    model, processor = model_and_processor
    prefills = {examples[0].id: "the picture shows a red square"}
    gens = generate(model, processor, examples[:2], mode="think", max_new_tokens=3, progress=False, prefills=prefills)
    assert gens[0].raw.startswith("<think" + prefills[examples[0].id])
    assert gens[1].raw.startswith("<think") and not gens[1].raw.startswith("<think" + "the picture")
    assert all(g.n_tokens <= 3 for g in gens)  # neither prefill is counted
