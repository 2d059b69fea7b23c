"""The default profile's cut of the Qwen tokenizer: the same token strings on every benchmark text,
any other text still encoded and decoded unchanged, the same special tokens and chat template."""
import random

import pytest

from mmkp_helpers import tiny_base, vocab


@pytest.fixture(scope="module")
def full():
    return vocab.build_qwen_tokenizer()


@pytest.fixture(scope="module")
def corpus():
    return tiny_base.tokenizer_corpus()


@pytest.fixture(scope="module")
def cut(full, corpus):
    return vocab.cut_tokenizer(full, corpus)


def test_the_corpus_is_tokenized_as_qwen_tokenizes_it(full, cut, corpus):
    sample = random.Random(0).sample(corpus, 1500) + corpus[-20:]
    for text in sample:
        assert cut.convert_ids_to_tokens(cut(text)["input_ids"]) == full.convert_ids_to_tokens(full(text)["input_ids"]), text
    assert len(cut) < 1200 < len(full)  # a few hundred words, the 256 bytes and the special tokens


@pytest.mark.parametrize("text", ["Hello wörld 🙂 naïve #GameOfThrones 12345", "zebra quux", "你好，世界。",
                                  "RT @user: https://t.co/abc123 — 'quoted'", "  spaces\n\nand\ttabs  "])
def test_any_text_still_round_trips(cut, text):
    ids = cut(text)["input_ids"]
    assert ids and cut.decode(ids) == text and max(ids) < len(cut)


def test_special_tokens_template_and_vocabulary_size(full, cut):
    assert cut.extra_special_tokens == full.extra_special_tokens == vocab.QWEN_VL_SPECIAL_TOKENS
    ids = cut.convert_tokens_to_ids(vocab.QWEN_VL_SPECIAL_TOKENS)
    n_bpe = len(cut) - len(ids)
    assert ids == list(range(n_bpe, len(cut)))  # right after the BPE tokens, in Qwen's order
    assert (cut.eos_token, cut.pad_token) == (full.eos_token, full.pad_token) == ("<|im_end|>", "<|endoftext|>")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a post"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Keyphrases: car"}]}]
    assert cut.apply_chat_template(messages, tokenize=False) == full.apply_chat_template(messages, tokenize=False)
    assert vocab.vocab_size(full) == 151_936
    assert vocab.vocab_size(cut) % vocab.VOCAB_MULTIPLE == 0 and 0 <= vocab.vocab_size(cut) - len(cut) < vocab.VOCAB_MULTIPLE
    with pytest.raises(ValueError, match="BPE"):
        vocab.cut_tokenizer(type("T", (), {"backend_tokenizer": type("B", (), {"to_str": lambda self: '{"model": {"type": "WordPiece"}}'})()})(), [])
