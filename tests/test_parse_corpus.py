"""A corpus of realistic model outputs for the generation parser.

Teachers (GPT-4o-class) and real VLM students (Qwen2-VL-, Llama-class) rarely answer with the bare
``Keyphrases: a; b`` line they were asked for: they open with "Sure! Here are ...", close with
"Let me know ...", explain every list item, answer in JSON or hashtags, reason before answering,
or refuse. Each case below is written the way such a model writes, with the keyphrases a careful
reader would take from it (CMKP keyphrases are lower-cased; a hashtag is one keyphrase).
"""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mmkp_helpers.prompts import _LABEL_WORD, parse_generation

GOT = ["game of thrones", "got", "hbo"]
HARBOUR = ["sunset", "harbour", "golden hour"]

CORPUS = [
    # ------------------------------------------------------------------ preambles
    ("sure_list", "Sure! Here are the keyphrases:\n- game of thrones\n- got", ["game of thrones", "got"]),
    ("here_are_5", "Here are 5 keyphrases for this post:\n\n1. Game of Thrones\n2. GoT\n3. HBO\n4. Iron Throne\n"
     "5. Season 8", GOT + ["iron throne", "season 8"]),
    ("based_on_hashtags", "Based on the image and text, the hashtags are:\n#GameOfThrones #GoT #HBO",
     ["gameofthrones", "got", "hbo"]),
    ("certainly_bullets", "Certainly! Here are some relevant keyphrases for this tweet:\n\n* Blue Jays\n* MLB\n"
     "* World Series", ["blue jays", "mlb", "world series"]),
    ("would_be_inline", "The keyphrases for this tweet would be: sunset, harbour, golden hour", HARBOUR),
    ("sure_inline_hashtags", "Sure, here are the hashtags: #Sunset #Harbour #GoldenHour",
     ["sunset", "harbour", "goldenhour"]),
    ("of_course_here_you_go", "Of course! Here you go:\n\nsunset; harbour; golden hour", HARBOUR),
    ("came_up_with_inline", "Certainly! Here's what I came up with: game of thrones, got, hbo", GOT),
    ("llama_given_post", "Here are the keyphrases for the given social media post:\n\n* Game of Thrones\n* GoT\n"
     "* HBO\n* Fantasy", GOT + ["fantasy"]),
    ("sure_i_can_help", "Sure, I can help with that! Here are the keyphrases:\n1. marathon\n2. running\n"
     "3. boston marathon", ["marathon", "running", "boston marathon"]),
    ("ranked_intro_parenthesis", "Keyphrases (most relevant first): sunset; harbour", ["sunset", "harbour"]),
    ("as_an_ai", "As an AI language model, I cannot see images, but based on the text, the keyphrases are: "
     "marathon, running", ["marathon", "running"]),
    # ------------------------------------------------------------------ postambles
    ("let_me_know", "- marathon\n- running\n- boston\n\nLet me know if you need more!",
     ["marathon", "running", "boston"]),
    ("these_capture", "Keyphrases: sunset; harbour\n\nThese capture the main themes of the post.",
     ["sunset", "harbour"]),
    ("hope_this_helps", "sunset, harbour, golden hour\n\nI hope this helps.", HARBOUR),
    ("reflect_and_feel_free", "Here are the keyphrases:\n1. sunset\n2. harbour\n\nThese keyphrases reflect the "
     "scene in the image and the caption. Feel free to ask for more!", ["sunset", "harbour"]),
    ("postamble_same_line", "Keyphrases: covid-19; vaccine; public health. These capture the main topics of "
     "the post.", ["covid-19", "vaccine", "public health"]),
    ("explanation_after_list", "Keyphrases: sunset; harbour\n\nExplanation: The post is about an evening at "
     "the harbour, and the image shows the sun going down.", ["sunset", "harbour"]),
    # ------------------------------------------------------------------ markdown
    ("bold_label", "**Keyphrases:** game of thrones, got, hbo", GOT),
    ("heading", "### Keyphrases\n\n1. sunset\n2. harbour\n3. golden hour", HARBOUR),
    ("bold_items_en_dash", "1. **Game of Thrones** – the show the post is about\n2. **GoT** – the common "
     "abbreviation, used by fans\n3. **HBO** – the network that airs it", GOT),
    ("italic_colon", "- *GoT*: abbreviation of the show\n- *HBO*: the network", ["got", "hbo"]),
    ("bold_colon_sentences", "Here are the keyphrases:\n\n1. **Game of Thrones**: The TV series referenced in the "
     "post.\n2. **Daenerys Targaryen**: The character shown in the image.\n3. **Dragons**: Visible in the "
     "image, central to the scene.", ["game of thrones", "daenerys targaryen", "dragons"]),
    ("tails_keep_hyphens", "- Boston Marathon (the race in the photo)\n- running - the activity\n"
     "- covid-19 - the pandemic mentioned\n- t-shirt", ["boston marathon", "running", "covid-19", "t-shirt"]),
    ("bold_heading_hashtags", "**Hashtags**\n- #BlueJays\n- #MLB\n- #WorldSeries",
     ["bluejays", "mlb", "worldseries"]),
    ("bold_colon_inside", "**Final Answer:**\n\n1. **Sunset**\n2. **Harbour**", ["sunset", "harbour"]),
    ("nested_explanations", "1. **Game of Thrones**\n   - The show the post is about.\n2. **HBO**\n"
     "   - The network that airs it.", ["game of thrones", "hbo"]),
    ("item_then_sentence", "1. Sunset. The sky is orange in the photo.\n2. Harbour. Boats are moored there.",
     ["sunset", "harbour"]),
    # ------------------------------------------------------------------ JSON and literals
    ("json_object", '{"keyphrases": ["Game of Thrones", "GoT", "HBO"]}', GOT),
    ("json_fenced", '```json\n{\n  "keyphrases": ["sunset", "harbour", "golden hour"]\n}\n```', HARBOUR),
    ("json_list", '["sunset", "harbour", "golden hour"]', HARBOUR),
    ("python_list", "['sunset', 'harbour', 'golden hour']", HARBOUR),
    ("json_with_chat", 'Here is the output in JSON format:\n\n```json\n{"hashtags": ["#BlueJays", "#MLB"]}\n```\n\n'
     "Let me know if you need anything else!", ["bluejays", "mlb"]),
    ("json_objects", '[{"keyphrase": "marathon", "relevance": 0.9}, {"keyphrase": "running", "relevance": 0.7}]',
     ["marathon", "running"]),
    ("json_string_value", '{"keyphrases": "sunset; harbour"}', ["sunset", "harbour"]),
    ("json_after_label", 'Keyphrases: ["sunset", "harbour"]', ["sunset", "harbour"]),
    ("json_pretty_two_keys", '{\n  "keyphrases": [\n    "covid-19",\n    "vaccine"\n  ],\n  "explanation": '
     '"The post is about [vaccination], see the image."\n}', ["covid-19", "vaccine"]),
    # ------------------------------------------------------------------ hashtags
    ("hashtag_line", "#GameOfThrones #GoT #HBO", ["gameofthrones", "got", "hbo"]),
    ("hashtags_then_comment", "#GameOfThrones #GoT #HBO\n\nThese hashtags capture the fandom and the network.",
     ["gameofthrones", "got", "hbo"]),
    ("hashtag_label_commas", "Hashtags: #BlueJays, #MLB, #WorldSeries2024", ["bluejays", "mlb", "worldseries2024"]),
    ("tags_label", "Tags: sunset, harbour", ["sunset", "harbour"]),
    # ------------------------------------------------------------------ reasoning, then the answer
    ("think_then_label", "<think>The image shows the Iron Throne and the caption mentions the finale.</think>\n"
     "Keyphrases: game of thrones; finale", ["game of thrones", "finale"]),
    ("reasoning_final_answer", "Reasoning: The image shows a runner crossing the finish line, and the text "
     "mentions Boston.\nFinal answer: boston marathon, running", ["boston marathon", "running"]),
    ("so_the_keyphrases_are", "The post talks about the finale of a fantasy show... So the keyphrases are: "
     "game of thrones, finale, hbo.", ["game of thrones", "finale", "hbo"]),
    ("step_by_step_bold_final", "Let me think step by step. The picture shows a sunset over a harbour.\n\n"
     "**Final Answer:** sunset; harbour; golden hour", HARBOUR),
    ("think_then_chat", "<think>\nThe caption says the sun is going down over the boats.\n</think>\n\n"
     "Sure! Here are the keyphrases:\n1. sunset\n2. harbour", ["sunset", "harbour"]),
    ("reasoning_lines_no_label", "The image shows a crowded stadium.\nblue jays; mlb", ["blue jays", "mlb"]),
    # ------------------------------------------------------------------ terse, repeated, refused, empty
    ("qwen_label", "Keyphrases: sunset; harbour; golden hour", HARBOUR),
    ("qwen_bare", "sunset; harbour; golden hour", HARBOUR),
    ("qwen_single", "sunset", ["sunset"]),
    ("qwen_repeated_label", "Keyphrases: sunset; harbour\nKeyphrases: sunset; harbour", ["sunset", "harbour"]),
    ("qwen_degenerate_repeat", "sunset, harbour, sunset, harbour, sunset, harbour", ["sunset", "harbour"]),
    ("and_before_last", "Keyphrases: game of thrones, got, and hbo", GOT),
    ("hyphens_inline", "covid-19; t-shirt; x-men", ["covid-19", "t-shirt", "x-men"]),
    ("refusal", "I'm sorry, I can't help with that.", []),
    ("refusal_curly", "I’m sorry, but I can’t identify people in images.", []),
    ("empty", "", []),
    ("whitespace", "   \n\t \n", []),
    ("cut_off_think", "<think>The image shows a harbour at dusk and the caption mentions", []),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in CORPUS])
def test_corpus(text, expected):
    parsed = parse_generation(text)
    assert parsed.keyphrases == expected
    assert parsed.parse_ok == bool(expected)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40
    assert len({i for i, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("text, reasoning", [
    ("Sure! Here are the keyphrases:\n- game of thrones\n- got", None),  # a chat opener is no reasoning
    ("Sure, I can help with that! Here are the keyphrases:\n1. marathon", None),
    ("<think>It shows boats.</think>\nSure! Here are the keyphrases:\n1. sunset", "It shows boats."),
    ("The post talks about the finale... So the keyphrases are: game of thrones", "The post talks about the finale..."),
    ("Reasoning: The image shows a runner.\nFinal answer: running", "Reasoning: The image shows a runner."),
    ('```json\n{"keyphrases": ["sunset", "harbour"]}\n```', None),
    ("<think>The image shows a harbour at dusk and the caption mentions",
     "The image shows a harbour at dusk and the caption mentions"),
    ("I'm sorry, I can't help with that.", None),
])
def test_corpus_reasoning(text, reasoning):
    assert parse_generation(text).reasoning == reasoning


def test_caps_apply_to_chatty_and_json_answers():
    text = "Here are the hashtags:\n" + "\n".join(f"{i + 1}. **kp{i}** – why" for i in range(12))
    assert parse_generation(text).keyphrases == [f"kp{i}" for i in range(10)]
    assert parse_generation(text, max_keyphrases=2).keyphrases == ["kp0", "kp1"]
    long = "a phrase far too long to be one keyphrase of a post"
    assert parse_generation(f'{{"keyphrases": ["{long}", "sea"]}}').keyphrases == ["sea"]
    assert parse_generation(f'["{long}"]', max_words=None).keyphrases == [long]


# ------------------------------------------------------------------ properties
PREAMBLES = [
    "Sure! Here are the keyphrases:",
    "Here are 5 keyphrases for this post:",
    "Based on the image and text, the hashtags are:",
    "Certainly! Here are some keyphrases that capture the post:",
    "The keyphrases for this tweet would be:",
    "Of course! Here you go:",
    "Okay, these are my suggestions:",
    "**Keyphrases:**",
    "### Keyphrases",
    "Here's a list of relevant keywords, most relevant first:",
]
POSTAMBLES = [
    "",
    "Let me know if you need more!",
    "These capture the main themes of the post.",
    "I hope this helps.",
    "Feel free to ask if you would like more hashtags.",
    "These keyphrases reflect both the image and the caption.",
    "Note that the image was not very clear.",
]
FORMATS = {
    "bullets": lambda kps: "\n".join(f"- {k}" for k in kps),
    "numbered": lambda kps: "\n".join(f"{i}. {k}" for i, k in enumerate(kps, 1)),
    "bold_explained": lambda kps: "\n".join(f"{i}. **{k.title()}** – the {k} in the post"
                                           for i, k in enumerate(kps, 1)),
    "colon_explained": lambda kps: "\n".join(f"- {k}: related to the image" for k in kps),
    "semicolons": lambda kps: "; ".join(kps),
    "commas": lambda kps: ", ".join(kps),
    "lines": lambda kps: "\n".join(kps),
}
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_phrase = st.lists(_word, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(_phrase, min_size=1, max_size=6, unique=True), st.sampled_from(PREAMBLES),
       st.sampled_from(POSTAMBLES), st.sampled_from(sorted(FORMATS)), st.booleans())
def test_chat_around_any_list_is_never_a_keyphrase(keyphrases, preamble, postamble, fmt, inline):
    # "a, b, or c" reads as three keyphrases (the Oxford comma), so in a comma list a keyphrase that
    # starts with "and" or "or" is ambiguous ("a, or a" is one keyphrase "a" twice): not generated there
    assume(fmt != "commas" or all(k.split()[0] not in ("and", "or") for k in keyphrases))
    # a lone label word ("hashtags", "tags", "keywords") is read as a header, never as a keyphrase
    # (test_a_lone_label_word_is_a_header_not_a_keyphrase): not generated as one
    assume(not any(_LABEL_WORD.fullmatch(k) for k in keyphrases))
    body = FORMATS[fmt](keyphrases)
    joiner = " " if inline and preamble.endswith(":") and fmt in ("semicolons", "commas") else "\n"
    text = f"{preamble}{joiner}{body}\n\n{postamble}".strip()
    assert parse_generation(text).keyphrases == keyphrases


@settings(max_examples=150, deadline=None)
@given(st.lists(_phrase, min_size=1, max_size=4, unique=True), st.lists(_phrase, min_size=1, max_size=4))
def test_a_line_ending_with_a_colon_is_never_a_keyphrase(keyphrases, intro_words):
    intro = " ".join(intro_words)
    parsed = parse_generation(f"{intro}:\n" + "\n".join(f"- {k}" for k in keyphrases))
    assert parsed.keyphrases == keyphrases


def test_a_lone_label_word_is_a_header_not_a_keyphrase():
    """An item that is only a label word ("**Hashtags**", "- tags") is a header of the list that
    follows, never a keyphrase (a property test's example, "1. **Hashtags** – the hashtags in the
    post", found that the property test must not generate one)."""
    for word in ("hashtags", "Hashtags", "tags", "keywords", "keyphrases", "final answer"):
        assert _LABEL_WORD.fullmatch(word.lower())
        assert parse_generation(f"Sure! Here are the keyphrases:\n1. **{word}** - the {word} in the post\n2. **Cat** - a cat"
                                ).keyphrases == ["cat"]
        assert parse_generation(f"- {word}\n- cat").keyphrases == ["cat"]

