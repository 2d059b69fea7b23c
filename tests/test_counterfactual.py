"""Counterfactual rationales (SCOTT's objective): what a counterfactual copy changes, and that it
trains its answer line only."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from mmkp_helpers import counterfactual as cf
from mmkp_helpers.collate import IGNORE_INDEX, ChatCollator, TargetForms, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.rationale import check, conclusions, consistent

RATIONALE = ("the text names a shirt and a holiday: shirt, holiday. the picture shows a red square and a blue "
             "square, so the shirt is purple: purple shirt. the background is blue, which shows sea: sea.")
KEYPHRASES = ["shirt", "holiday", "purple shirt", "sea"]
POOL = ["shirt", "holiday", "purple shirt", "sea", "red shirt", "green hat", "match", "snow", "blue shirt"]


def test_a_perturbed_rationale_concludes_its_new_answer_and_keeps_its_reasoning():
    seen = set()
    for seed in range(40):
        changed = cf.perturb(RATIONALE, KEYPHRASES, POOL, random.Random(seed))
        assert changed is not None
        rationale, answer = changed
        assert set(conclusions(rationale)) == set(answer) != set(KEYPHRASES)  # the new answer follows the rationale
        assert len(set(answer) - set(KEYPHRASES)) == 1  # exactly one keyphrase changed
        assert consistent(rationale, answer) and check(f"<think>{rationale}</think>\nKeyphrases: "
                                                       + "; ".join(answer)).well_formed
        assert rationale.replace(": ", "|").split("|")[0] == RATIONALE.split(": ")[0]  # reasoning text kept
        assert "so the shirt is purple" in rationale
        seen.add(next(iter(set(answer) - set(KEYPHRASES))))
    # the replacement of a two-word keyphrase keeps its head noun: "purple shirt" became another shirt
    assert seen & {"red shirt", "blue shirt"} and not seen & {"green hat"}


def test_replacement_prefers_the_same_head_then_the_same_length():
    rng = random.Random(0)
    assert cf.replacement("purple shirt", POOL, [], rng) in {"red shirt", "blue shirt"}
    assert cf.replacement("purple cup", POOL, [], rng) in {"purple shirt", "red shirt", "green hat", "blue shirt"}
    assert cf.replacement("sea", ["sea"], [], rng) is None
    assert cf.perturb("no conclusion here.", ["x"], POOL, rng) is None


def test_counterfactual_records_are_seeded_answer_only_and_a_share(tmp_path):
    examples = [Example(f"p{i}", f"post {i}", KEYPHRASES) for i in range(200)]
    records = make_records(examples, {ex.id: RATIONALE for ex in examples[:150]})  # 50 have no rationale
    first = cf.counterfactual_records(records, 0.4, seed=3, pool=POOL)
    assert [r.cot for r in first] == [r.cot for r in cf.counterfactual_records(records, 0.4, seed=3, pool=POOL)]
    assert [r.id for r in first] != [r.id for r in cf.counterfactual_records(records, 0.4, seed=4, pool=POOL)]
    assert 0.25 * 150 < len(first) < 0.55 * 150  # about 40% of the 150 records with a rationale
    assert all(r.answer_only and r.id.endswith(cf.SUFFIX) and int(r.id[1:-3]) < 150 for r in first)
    assert cf.counterfactual_records(records, 0.0) == []
    assert len(cf.counterfactual_records(records, 1.0, pool=POOL)) == 150
    with pytest.raises(ValueError, match="share"):
        cf.counterfactual_records(records, 1.5)


def test_an_answer_only_record_trains_its_answer_line_and_nothing_else(tiny_model_dir):
    from mmkp_helpers.modeling import load_processor

    processor = load_processor(str(tiny_model_dir))
    record = make_records([Example("a", "a shirt for the holiday", KEYPHRASES)], {"a": RATIONALE})[0]
    counter = cf.counterfactual_records([record], 1.0, pool=POOL)[0]
    collator = ChatCollator(processor, forms=TargetForms("cot"))
    batch = collator([record, counter])
    tok = processor.tokenizer
    trained = [tok.decode(batch["input_ids"][i][batch["labels"][i] != IGNORE_INDEX]) for i in range(2)]
    assert trained[0].startswith("<think>") and RATIONALE in trained[0]
    assert trained[1].startswith("Keyphrases:") and "<think>" not in trained[1]
    assert trained[1].replace("<|im_end|>", "").strip() == "Keyphrases: " + "; ".join(counter.example.keyphrases)
    # the rationale is still in the input, as context
    assert "so the shirt is purple" in tok.decode(batch["input_ids"][1])
    # in the direct form an answer-only record trains its (direct) target as any record does
    direct = ChatCollator(processor, forms=TargetForms("direct"))([counter])
    assert int((direct["labels"] != IGNORE_INDEX).sum()) == int(torch.as_tensor(direct["answer_mask"]).sum())


def test_answer_weight_weighs_the_answer_line_of_cot_rows_only():
    from types import SimpleNamespace

    from mmkp_helpers.training import KeyphraseTrainer, SFTSettings

    answer = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    weights = KeyphraseTrainer.answer_weights(SimpleNamespace(answer_weight=4.0), answer, ["cot", "direct", "cot"])
    assert weights.tolist() == [[1, 1, 4, 4], [1, 1, 1, 1], [4, 4, 4, 4]]
    assert SFTSettings().answer_weight == 1.0  # the notebooks' recipe: every token weighs the same


@pytest.fixture(scope="module")
def shaped_posts():
    from mmkp_helpers.synthetic import generate

    posts = generate(seed=3, n_train=120, n_valid=0, n_test=0)["train"]
    return {needs: [ex for ex in posts if ex.meta["needs"] == needs] for needs in ("text", "image", "composition")}


@pytest.mark.parametrize("style", ["verbose", "compact", "running", "unordered", "described"])
def test_a_reread_follows_its_changed_reading_by_the_rule(shaped_posts, style):
    from mmkp_helpers.synthetic import mix
    from mmkp_helpers.teacher.oracle import OracleTeacher, check_oracle_rationale

    teacher = OracleTeacher(style=style)
    assert all(teacher.reread(ex) is None and teacher.opening(ex) is None for ex in shaped_posts["text"])
    for ex in shaped_posts["composition"] + shaped_posts["image"]:
        rationale, keyphrases, context = teacher.reread(ex, seed=1)
        truth = ex.meta["truth"]
        colour_kp = next(k for k in keyphrases if k.endswith(" " + truth["topic"]))
        assert colour_kp != f"{truth['colour']} {truth['topic']}"  # another colour ...
        assert set(keyphrases) - {colour_kp} == set(ex.keyphrases) - {f"{truth['colour']} {truth['topic']}"}
        assert rationale.startswith(context) and colour_kp not in context  # ... reached after the reading
        assert rationale[len(context):].split(":")[0].strip(";, ")  # the rule or the step follows
        assert check(f"<think>{rationale}</think>\nKeyphrases: " + "; ".join(keyphrases)).well_formed
        opening = teacher.opening(ex)
        assert teacher.rationale_and_keyphrases(ex)[0].startswith(opening) and opening != context
        if truth["needs"] == "composition":  # the changed pair mixes into the changed colour
            words = context.split(", on a")[0].replace(",", " ").split()  # (not the background's "dark blue")
            primaries = [w for w in words if w in ("red", "blue", "yellow")][-2:]
            assert mix(*primaries) == colour_kp.split()[0]
        # the same post under its true truth gets no complaint from the oracle's own check
        assert check_oracle_rationale(ex, teacher.rationale_and_keyphrases(ex)[0]) == []
    assert teacher.reread(shaped_posts["image"][0], 1) == teacher.reread(shaped_posts["image"][0], 1)


def test_reread_records_train_everything_after_the_changed_reading(tiny_model_dir, shaped_posts):
    from mmkp_helpers.modeling import load_processor
    from mmkp_helpers.teacher.oracle import OracleTeacher

    teacher = OracleTeacher(style="verbose")
    posts = shaped_posts["composition"][:2] + shaped_posts["text"][:1]
    records = make_records(posts, {ex.id: teacher.rationale_and_keyphrases(ex)[0] for ex in posts})
    rereads = cf.reread_records(records, 1.0, teacher.reread, seed=0)
    assert [r.id for r in rereads] == [ex.id + cf.REREAD_SUFFIX for ex in posts[:2]]  # a text post has no reading
    assert cf.reread_records(records, 0.0, teacher.reread) == []
    with pytest.raises(ValueError, match="rewrite"):
        cf.reread_records(records, 0.5, None)
    processor = load_processor(str(tiny_model_dir))
    batch = ChatCollator(processor, forms=TargetForms("cot"))(rereads)
    tok = processor.tokenizer
    for i, r in enumerate(rereads):
        trained = tok.decode(batch["input_ids"][i][batch["labels"][i] != IGNORE_INDEX])
        assert r.cot.startswith(r.context) and trained.startswith(r.cot[len(r.context):][:20])
        assert r.context[len("<think>"):][-30:] not in trained  # the changed reading is context only
        assert trained.replace("<|im_end|>", "").strip().endswith("; ".join(r.example.keyphrases))
    bad = dataclasses.replace(rereads[0], context="<think>the picture shows nothing at all")
    with pytest.raises(ValueError, match="not the opening"):
        ChatCollator(processor, forms=TargetForms("cot"))([bad])


def test_stranger_posts_are_signed_posts_resigned_by_an_unknown_account_without_tags():
    """cf.stranger_posts: a share of the signed training posts, re-signed by a name of no account of the
    benchmark; the text changes in the signature only, the tags leave the keyphrases, and the oracle's
    rationale says no training post shows the account (faithful by its own check)."""
    from mmkp_helpers import reading
    from mmkp_helpers.synthetic import SERIES_NAMES, SIGNATURE, generate
    from mmkp_helpers.teacher.oracle import OracleTeacher, check_oracle_rationale

    splits = generate(seed=3, n_train=200, n_valid=20, n_test=60)
    accounts = reading.accounts([ex for part in splits.values() for ex in part])
    strangers = sorted(set(SERIES_NAMES) - accounts)
    train = splits["train"]
    signed = {ex.id: ex for ex in train if ex.meta["truth"].get("series")}
    posts = cf.stranger_posts(train, 0.5, strangers, seed=0)
    assert 0.3 * len(signed) < len(posts) < 0.7 * len(signed)
    assert cf.stranger_posts(train, 0.5, strangers, seed=0) == posts and cf.stranger_posts(train, 0.0, strangers) == []
    assert len(cf.stranger_posts(train, 1.0, strangers)) == len(signed)
    for ex in posts:
        original = signed[ex.id.removesuffix(cf.STRANGER_SUFFIX)]
        name = ex.meta["truth"]["series"]
        assert ex.id.endswith(cf.STRANGER_SUFFIX) and name in strangers and name not in accounts
        old = f"{SIGNATURE} {original.meta['truth']['series']}"
        assert ex.text == original.text.replace(old, f"{SIGNATURE} {name}")
        assert ex.keyphrases == [k for k in original.keyphrases if k not in original.meta["truth"]["tags"]]
        assert ex.meta["drawing"] == original.meta["drawing"] and "tag" not in ex.meta["kinds"].values()
        for style in ("verbose", "running", "compact"):
            rationale, concluded, _ = OracleTeacher(style=style).rationale_and_keyphrases(ex)
            assert concluded == ex.keyphrases and f"{SIGNATURE} {name}" in rationale
            assert check_oracle_rationale(ex, rationale) == []
    with pytest.raises(ValueError, match="stranger names"):
        cf.stranger_posts(train, 1.0, [])
    with pytest.raises(ValueError, match="not a signed"):
        cf.resign(next(ex for ex in train if ex.id not in signed), "river")
    with pytest.raises(ValueError, match="share"):
        cf.stranger_posts(train, 1.5, strangers)
