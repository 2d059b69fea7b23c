"""Prompt templates, target serialization and the tolerant generation parser."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmkp_helpers.data import Example
from mmkp_helpers.prompts import (MODALITY_ABLATIONS, TEMPLATES, ZERO_SHOT_VARIANTS, Parsed, build_messages,
                                  cot_target, direct_target, get_template, parse_generation, serialize_target,
                                  with_options)


@pytest.fixture
def example() -> Example:
    return Example("e1", "Sunset over the harbour tonight", ["sunset", "harbour life"], image="img.png",
                   attributes=["sky", "boat"], ocr="PORT OF CALL")


def _user(messages):
    return messages[0]["content"]


def _text(messages) -> str:
    return [c["text"] for c in _user(messages) if c["type"] == "text"][0]


# ------------------------------------------------------------------ templates
def test_variants_are_named():
    assert set(ZERO_SHOT_VARIANTS) | set(MODALITY_ABLATIONS) == set(TEMPLATES)
    with pytest.raises(ValueError, match="unknown prompt"):
        get_template("nope")


@pytest.mark.parametrize("name", ["direct", "think"])
def test_full_templates_carry_everything(example, name):
    msgs = build_messages(example, name)
    assert msgs[0]["role"] == "user" and len(msgs) == 1
    assert _user(msgs)[0] == {"type": "image"}
    text = _text(msgs)
    assert "Post: Sunset over the harbour tonight" in text
    assert "Image wordings: sky, boat" in text
    assert "Text in the image: PORT OF CALL" in text
    assert ("<think>" in text) == (name == "think")


def test_text_only_has_no_image_and_no_image_derived_text(example):
    msgs = build_messages(example, "text_only")
    assert [c["type"] for c in _user(msgs)] == ["text"]
    text = _text(msgs)
    assert "Sunset over the harbour" in text
    assert "sky" not in text and "PORT OF CALL" not in text


def test_image_only_has_image_but_no_post_text(example):
    msgs = build_messages(example, "image_only")
    assert _user(msgs)[0] == {"type": "image"}
    text = _text(msgs)
    assert "Sunset over the harbour" not in text
    assert "Image wordings: sky, boat" in text


def test_example_without_image_gets_no_image_content(example):
    example.image = None
    for name in TEMPLATES:
        assert all(c["type"] == "text" for c in _user(build_messages(example, name)))


def test_missing_wordings_and_ocr_are_left_out():
    ex = Example("x", "just text", ["a"])
    text = _text(build_messages(ex, "direct"))
    assert "Image wordings" not in text and "Text in the image" not in text


def test_assistant_turn_and_custom_template(example):
    msgs = build_messages(example, "direct", target="sunset; harbour life")
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": "sunset; harbour life"}]}
    custom = with_options("direct", name="no_ocr", use_ocr=False)
    assert "PORT OF CALL" not in _text(build_messages(example, custom))
    assert "at most 3 keyphrases" in _text(build_messages(example, "direct", max_keyphrases=3))


# ------------------------------------------------------------------ targets
def test_target_serialization():
    assert direct_target(["kp1", "kp2", "kp3"]) == "Keyphrases: kp1; kp2; kp3"
    assert cot_target("it shows a dog", ["dog", "puppy"]) == "<think>it shows a dog</think>\nKeyphrases: dog; puppy"
    assert serialize_target(["a"]) == "Keyphrases: a"
    assert serialize_target(["a"], "why") == "<think>why</think>\nKeyphrases: a"


def test_answer_label_keeps_keyphrase_tokens_as_in_running_text(tiny_model_dir):
    # " car" in the post and in the answer are the same token; a bare "car" would not be
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    in_post = tok.encode("just got a new car")[-1]
    in_answer = tok.encode(direct_target(["car", "red car"]))
    assert in_answer[tok.encode("Keyphrases:").__len__()] == in_post
    assert tok.encode("car")[0] != in_post


def test_targets_parse_back():
    kps = ["sunset", "harbour life", "boats"]
    assert parse_generation(direct_target(kps)) == Parsed(None, kps, True)
    assert parse_generation(cot_target("because boats", kps)) == Parsed("because boats", kps, True)


# ------------------------------------------------------------------ parser
@pytest.mark.parametrize("text, expected", [
    ("a; b; c", ["a", "b", "c"]),
    ("a, b, c", ["a", "b", "c"]),
    ("a\nb\n\nc", ["a", "b", "c"]),
    ("1. sunset\n2. beach\n3) red sky", ["sunset", "beach", "red sky"]),
    ("1. sunset 2. beach 3. red sky", ["sunset", "beach", "red sky"]),
    ("- sunset\n* beach\n• red sky", ["sunset", "beach", "red sky"]),
    ('"sunset", \'beach\', “red sky”', ["sunset", "beach", "red sky"]),
    ('["sunset", "beach"]', ["sunset", "beach"]),
    ("#BlueJays #MLB", ["bluejays", "mlb"]),
    ("#BlueJays; #WorldSeries2024", ["bluejays", "worldseries2024"]),
    ("Keyphrases: sunset; beach", ["sunset", "beach"]),
    ("**Hashtags:** #a #b", ["a", "b"]),
    ("Sunset; sunset; SUNSET; beach", ["sunset", "beach"]),
    ("Answer: a; b<|im_end|>", ["a", "b"]),
    ("sunset.", ["sunset"]),
])
def test_parser_formats(text, expected):
    parsed = parse_generation(text)
    assert parsed.keyphrases == expected
    assert parsed.parse_ok


def test_think_block_is_reasoning():
    p = parse_generation("<think>The photo shows a harbour at dusk.</think>\nsunset; harbour")
    assert p.reasoning == "The photo shows a harbour at dusk."
    assert p.keyphrases == ["sunset", "harbour"]


def test_unclosed_think_block():
    p = parse_generation("<think>The photo shows a harbour and then the model ran out of tok")
    assert p == Parsed("The photo shows a harbour and then the model ran out of tok", [], False)
    p = parse_generation("<think>reasoning goes here\nKeyphrases: sunset; harbour")
    assert p.reasoning == "reasoning goes here" and p.keyphrases == ["sunset", "harbour"]


def test_closing_tag_only_when_the_opening_was_prefilled():
    p = parse_generation(">Because boats</think>\nboats; sea")
    assert p.keyphrases == ["boats", "sea"] and "Because boats" in p.reasoning


def test_step_by_step_with_final_label_line():
    text = "Let me think step by step. The post talks about a harbour.\nSo the answer follows.\nKeyphrases: harbour, sea"
    p = parse_generation(text)
    assert p.keyphrases == ["harbour", "sea"]
    assert p.reasoning.startswith("Let me think step by step.")


def test_length_caps():
    text = "; ".join(f"kp{i}" for i in range(20))
    assert parse_generation(text).keyphrases == [f"kp{i}" for i in range(10)]
    assert parse_generation(text, max_keyphrases=3).keyphrases == ["kp0", "kp1", "kp2"]
    sentence = "this is a whole sentence that is clearly not a keyphrase at all"
    assert parse_generation(f"{sentence}; sea").keyphrases == ["sea"]
    assert parse_generation(sentence, max_words=None).keyphrases == [sentence]


@pytest.mark.parametrize("text", ["", "   ", "!!!", "; ; ,", "<think></think>", "\n\n\n", None])
def test_unparseable_is_empty_and_counted(text):
    p = parse_generation(text)
    assert p.keyphrases == [] and p.parse_ok is False


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=12))
def test_parser_never_raises(text, k):
    p = parse_generation(text, max_keyphrases=k)
    assert isinstance(p, Parsed)
    assert len(p.keyphrases) <= k
    assert len(set(p.keyphrases)) == len(p.keyphrases)
    assert all(kp and kp == kp.strip() and kp == kp.lower() for kp in p.keyphrases)
    assert p.parse_ok == bool(p.keyphrases)


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_phrase = st.lists(_word, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(_phrase, min_size=1, max_size=6, unique=True),
       st.one_of(st.none(), st.text(alphabet="abc xyz.\n", max_size=40)))
def test_serialized_targets_round_trip(keyphrases, rationale):
    p = parse_generation(serialize_target(keyphrases, rationale))
    assert p.keyphrases == keyphrases
    assert p.parse_ok
