"""Batched generation, token accounting, forced reasoning modes, prediction files, and scoring.

:func:`generate` renders each example's user turn with a prompt template, batches them with
LEFT padding (so every row's next token sits at the same position), decodes greedily by default,
and returns one :class:`Generation` per example: the raw text, the parsed keyphrases and
reasoning, the number of generated tokens and the wall time.

Forced modes (for models trained on both direct and CoT targets, e.g. Dynamic CoT). Each mode
promises the form of its outputs, and the raw text of a :class:`Generation` includes the prefill:

- ``mode=None``: the model decides what to write.
- ``mode="think"``: the assistant turn is prefilled with the opening of a rationale,
  :func:`think_prefill` (``"<think"``), so every output starts with ``<think``. The prefill is
  ``"<think"`` rather than ``"<think>"`` because the Qwen tokenizer merges ``>`` with the next
  character (``"<think>Because"`` is ``<th|ink|>Because``): prefilling the whole tag would start
  the model at a token boundary that training never showed.
- ``mode="direct"``: the assistant turn is prefilled with the opening of a direct answer,
  :func:`direct_prefill` (``"Keyphrases:"``, the longest prefix of
  :data:`~mmkp_helpers.prompts.ANSWER_LABEL` that ends on a token boundary of direct targets), so
  every output starts with it; and at every generated position the tokens that could begin a
  ``<think>`` or ``</think>`` tag (:func:`think_tag_tokens`) are banned, so the answer never
  contains one (a tag written later would make the parser read the answer as reasoning).

Rationale quality of CoT outputs (closed, loop-free, answer-consistent, failure kinds) is
:mod:`mmkp_helpers.rationale`'s; :func:`generation_stats` counts the token-budget cut-offs.

Precision: on a GPU, generation runs under autocast in the model's compute dtype
(:func:`compute_dtype`: a 4-bit base's bf16 compute dtype, as in training), not in float32.

Token counts: the tokens the model generated up to and including its end-of-turn token (not the
prefill, not padding); ``hit_limit``: no end-of-turn token was generated (the output stopped at
``max_new_tokens``). Wall time: each batch's time divided evenly over its examples.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from .collate import load_image
from .data import Example
from .prompts import (ANSWER_LABEL, THINK_CLOSE, THINK_OPEN, PromptTemplate, build_messages, get_template,
                      parse_generation)
from .rationale import opens_think

MODES = (None, "direct", "think")


@dataclass
class Generation:
    """One example's generation: ``raw`` (the prefill, if any, plus the decoded new tokens,
    special tokens removed), what :func:`~mmkp_helpers.prompts.parse_generation` read from it,
    ``n_tokens`` generated, ``seconds`` of wall time, and ``hit_limit``: True when no end-of-turn
    token was generated (it stopped at ``max_new_tokens``), None when unknown (files written
    before it was recorded)."""
    id: str
    raw: str
    keyphrases: list[str]
    reasoning: str | None
    parse_ok: bool
    n_tokens: int
    seconds: float
    prompt: str = "direct"
    mode: str | None = None
    hit_limit: bool | None = None
    q: float | None = None  # auto decoding: the model's probability of reasoning (mmkp_helpers.decision)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Prompt rendering and modes
# --------------------------------------------------------------------------------------------
def _stable_prefix(tokenizer, text: str, followers: Sequence[str]) -> str:
    """The longest prefix of ``text`` whose tokens are the first tokens of ``text + follower`` for
    every follower: a prefill that ends on a token boundary the training targets also have."""
    stable = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    for follower in followers:
        ids = tokenizer(text + follower, add_special_tokens=False)["input_ids"]
        n = 0
        while n < min(len(stable), len(ids)) and stable[n] == ids[n]:
            n += 1
        stable = stable[:n]
    return tokenizer.decode(stable)


def think_prefill(tokenizer) -> str:
    """The longest prefix of ``<think>`` whose tokens do not merge with the text that follows
    the tag in a CoT target (``"<think"`` for the Qwen tokenizer)."""
    return _stable_prefix(tokenizer, THINK_OPEN, ("Because", "the", "\n", " ", "1"))


def direct_prefill(tokenizer) -> str:
    """The longest prefix of the answer label (``Keyphrases:``) whose tokens do not merge with
    what follows it in a direct target (``" " + keyphrase``): ``"Keyphrases:"`` for the Qwen
    tokenizer."""
    return _stable_prefix(tokenizer, ANSWER_LABEL, (" bike", " the", " 1", " #tag", " New York", " "))


def prefill(tokenizer, mode: str | None) -> str:
    """What ``mode`` prefills the assistant turn with: :func:`think_prefill`,
    :func:`direct_prefill`, or nothing (``mode=None``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return {"think": think_prefill, "direct": direct_prefill}.get(mode, lambda _: "")(tokenizer)


def think_opening_token(tokenizer) -> int:
    """The first token of a CoT target (the token whose probability is the model's choice to reason)."""
    return tokenizer(THINK_OPEN + "Because", add_special_tokens=False)["input_ids"][0]


_TAG_TOKENS: dict[int, tuple[object, list[int]]] = {}


def think_tag_tokens(tokenizer) -> list[int]:
    """Every token that could begin or hold a ``<think>`` or ``</think>`` tag (case-insensitive):
    its text contains ``<think`` or ``</think``, or ends with a non-empty prefix of one (``<``,
    ``</``, ``<th``, ``.<``, ...). Whatever tokens spell a tag, the one holding its ``<`` is one of
    these, so banning them all makes the tags impossible (at the price of any text ending in ``<``,
    which keyphrases do not need). Computed once per tokenizer (about 2 s for Qwen's 151k tokens)."""
    cached = _TAG_TOKENS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    tags = (THINK_OPEN[:-1].lower(), THINK_CLOSE[:-1].lower())
    prefixes = tuple({tag[:k] for tag in tags for k in range(1, len(tag) + 1)})
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    ids = [i for i, t in enumerate(texts) if t.lower().endswith(prefixes) or any(tag in t.lower() for tag in tags)]
    _TAG_TOKENS[id(tokenizer)] = (tokenizer, ids)
    return ids


class _BanTokens:
    """A logits processor that forbids some tokens at every generated position."""

    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = list(token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.token_ids] = float("-inf")
        return scores


def render_prompt(processor, example: Example, prompt: str | PromptTemplate = "direct", mode: str | None = None,
                  max_keyphrases: int = 5) -> str:
    """The chat text that generation continues: system + user turn + ``<|im_start|>assistant\\n``
    + the mode's :func:`prefill` (``"<think"`` in ``mode="think"``, ``"Keyphrases:"`` in
    ``mode="direct"``)."""
    start = prefill(processor.tokenizer, mode)
    messages = build_messages(example, prompt, max_keyphrases=max_keyphrases)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + start


def _model_device(model) -> torch.device:
    return next(p.device for p in model.parameters())


def compute_dtype(model) -> torch.dtype | None:
    """The dtype a model computes in on a GPU: a 4-bit base's ``bnb_4bit_compute_dtype``, else the
    dtype of its floating-point weights when that is bf16 or fp16; None on the CPU (float32)."""
    if _model_device(model).type != "cuda":
        return None
    config = getattr(model, "config", None)
    qc = getattr(config, "quantization_config", None)
    dtype = getattr(qc, "bnb_4bit_compute_dtype", None) if qc is not None and not isinstance(qc, dict) else (
        qc.get("bnb_4bit_compute_dtype") if isinstance(qc, dict) else None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return dtype if dtype in (torch.bfloat16, torch.float16) else None


def precision_label(model) -> str:
    """In words, the precision a model generates in: its base weights (4-bit NF4 or a float dtype)
    and the compute dtype (:func:`compute_dtype`; float32 on a CPU). Notebooks 02 and 03 print it,
    so a zero-shot baseline says which base it is the baseline of."""
    import bitsandbytes as bnb  # a dependency of the package; import only here

    four_bit = any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    dtype = compute_dtype(model)
    weights = "4-bit NF4 base" if four_bit else (
        f"{next(p.dtype for p in model.parameters() if p.is_floating_point())} base".replace("torch.", ""))
    compute = str(dtype).replace("torch.", "") if dtype is not None else "float32"
    return f"{weights}, {compute} compute on {_model_device(model).type}"


def count_generated(new_tokens: torch.Tensor, eos_ids: Iterable[int]) -> list[int]:
    """Per row of generated ids: tokens up to and including the first end token; all of them
    when there is none (the row stopped at the length limit)."""
    return [n for n, _ in scan_generated(new_tokens, eos_ids)]


def scan_generated(new_tokens: torch.Tensor, eos_ids: Iterable[int]) -> list[tuple[int, bool]]:
    """Per row of generated ids: ``(count, hit_limit)``, the :func:`count_generated` count and
    whether the row holds no end token at all (it stopped at the length limit)."""
    eos = torch.tensor(sorted(set(eos_ids)), device=new_tokens.device)
    is_end = torch.isin(new_tokens, eos)
    out = []
    for row in range(new_tokens.shape[0]):
        hits = is_end[row].nonzero()
        out.append((int(hits[0]) + 1, False) if len(hits) else (int(new_tokens.shape[1]), True))
    return out


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    return [i for i in ids if i is not None]


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
def generate(model, processor, examples: Sequence[Example], prompt: str | PromptTemplate = "direct",
             batch_size: int = 8, max_new_tokens: int = 48, mode: str | None = None,
             min_new_tokens: int | None = None, do_sample: bool = False, temperature: float = 1.0,
             max_keyphrases: int = 10, prompt_keyphrases: int = 5, progress: bool = True,
             prefills: Mapping[str, str] | None = None, **generate_kwargs) -> list[Generation]:
    """Generate keyphrases for ``examples``, ``batch_size`` at a time; one :class:`Generation`
    per example, in the order given.

    - ``prompt``: a template name (``direct``, ``think``, ``text_only``, ``image_only``) or a
      :class:`~mmkp_helpers.prompts.PromptTemplate`; ``prompt_keyphrases`` is the number the
      prompt asks for, ``max_keyphrases`` the parser's cap.
    - ``mode``: ``None``, ``"direct"`` or ``"think"`` (see the module docstring); the prefill is
      part of ``raw``, not of ``n_tokens``.
    - ``prefills``: example id -> text the assistant turn continues after the mode's prefill (an
      intervention: e.g. the opening of a rationale, true or edited, which the model then continues;
      ``raw`` includes it).
    - Greedy unless ``do_sample=True``; ``min_new_tokens`` (benchmarks) forces equal lengths.
    - Images come from ``Example.image`` (RGB); an example without one gets no image content.
    Prompts are never truncated (cutting one could cut image tokens)."""
    from .progress import tqdm
    from transformers import LogitsProcessorList

    template = get_template(prompt)
    tokenizer = processor.tokenizer
    start_text = prefill(tokenizer, mode)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    device = _model_device(model)
    dtype = compute_dtype(model)  # on a GPU: generate in the dtype training computed in (bf16), not float32
    was_training = model.training
    model.eval()
    out: list[Generation] = []
    try:
        bar = tqdm(total=len(examples), desc=f"generate[{template.name}{'/' + mode if mode else ''}]",
                   disable=not progress, unit="ex")
        for start in range(0, len(examples), batch_size):
            batch = list(examples[start:start + batch_size])
            extra = [(prefills or {}).get(ex.id, "") for ex in batch]
            texts = [render_prompt(processor, ex, template, mode, prompt_keyphrases) + more
                     for ex, more in zip(batch, extra)]
            images = [load_image(ex.image) for ex in batch if template.wants_image(ex)]
            enc = processor(text=texts, images=images or None, padding=True, padding_side="left",
                            return_tensors="pt").to(device)
            prompt_len = enc["input_ids"].shape[1]
            kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad_id,
                          eos_token_id=eos_ids)
            if do_sample:
                kwargs["temperature"] = temperature
            if min_new_tokens:
                kwargs["min_new_tokens"] = min_new_tokens
            if mode == "direct":  # no <think> or </think> anywhere in a direct answer
                kwargs["logits_processor"] = LogitsProcessorList([_BanTokens(think_tag_tokens(tokenizer))])
            kwargs.update(generate_kwargs)
            tic = time.perf_counter()
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                sequences = model.generate(**enc, **kwargs)
            seconds = (time.perf_counter() - tic) / len(batch)
            new_tokens = sequences[:, prompt_len:]
            for ex, more, row, (n, hit_limit) in zip(batch, extra, new_tokens, scan_generated(new_tokens, eos_ids)):
                raw = start_text + more + tokenizer.decode(row[:n], skip_special_tokens=True)
                parsed = parse_generation(raw, max_keyphrases=max_keyphrases)
                out.append(Generation(id=ex.id, raw=raw, keyphrases=parsed.keyphrases, reasoning=parsed.reasoning,
                                      parse_ok=parsed.parse_ok, n_tokens=n, seconds=seconds,
                                      prompt=template.name, mode=mode, hit_limit=hit_limit))
            bar.update(len(batch))
        bar.close()
    finally:
        if was_training:
            model.train()
    return out


# --------------------------------------------------------------------------------------------
# Writing, reading, scoring
# --------------------------------------------------------------------------------------------
def write_cmkp_predictions(path: str | os.PathLike, generations: Sequence[Generation]) -> Path:
    """Predictions in the CMKP line format: one example a line, ``kp1;kp2;...`` ranked (an
    empty line when nothing was parsed), in the order of ``generations``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for g in generations:
            f.write(";".join(k.replace(";", " ").replace("\n", " ") for k in g.keyphrases) + "\n")
    return path


def write_generations_jsonl(path: str | os.PathLike, generations: Sequence[Generation]) -> Path:
    """One JSON object a line: ``id``, ``prediction`` (the keyphrase list), ``raw``,
    ``n_tokens``, ``seconds``, and ``reasoning``, ``parse_ok``, ``prompt``, ``mode``, ``hit_limit``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for g in generations:
            f.write(json.dumps({"id": g.id, "prediction": g.keyphrases, "raw": g.raw, "n_tokens": g.n_tokens,
                                "seconds": g.seconds, "reasoning": g.reasoning, "parse_ok": g.parse_ok,
                                "prompt": g.prompt, "mode": g.mode, "hit_limit": g.hit_limit, "q": g.q},
                               ensure_ascii=False) + "\n")
    return path


def read_generations_jsonl(path: str | os.PathLike) -> list[Generation]:
    """Read back what :func:`write_generations_jsonl` wrote (``hit_limit`` None in files written
    before it was recorded)."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                out.append(Generation(id=d["id"], raw=d["raw"], keyphrases=d["prediction"], reasoning=d.get("reasoning"),
                                      parse_ok=d.get("parse_ok", bool(d["prediction"])), n_tokens=d["n_tokens"],
                                      seconds=d["seconds"], prompt=d.get("prompt", "direct"), mode=d.get("mode"),
                                      hit_limit=d.get("hit_limit"), q=d.get("q")))
    return out


def _aligned(generations: Sequence[Generation], examples: Sequence[Example]) -> list[Generation]:
    by_id = {g.id: g for g in generations}
    missing = [ex.id for ex in examples if ex.id not in by_id]
    if missing or len(by_id) != len(generations):
        raise ValueError(f"generations do not match the examples (missing ids {missing[:5]}, "
                         f"{len(generations) - len(by_id)} duplicate ids)")
    return [by_id[ex.id] for ex in examples]


def evaluate(generations: Sequence[Generation], examples: Sequence[Example],
             train_keyphrases: Iterable[str] | None = None) -> dict:
    """Score generations against the examples' keyphrases with
    :func:`mmkp_helpers.metrics.score_examples` (generations are matched to examples by id):
    ``{"n", "all": {...}, "present": {...}, "absent": {...}, ...}``."""
    from .metrics import score_examples

    aligned = _aligned(generations, examples)
    return score_examples([g.keyphrases for g in aligned], list(examples), train_keyphrases=train_keyphrases)


def opened_think(g: Generation) -> bool:
    """Whether a generation reasons: it starts with ``<think>`` (prefilled or chosen at its first
    token, where a model trained on both forms makes the choice); a tag written later, inside an
    answer, does not count."""
    return opens_think(g.raw)


def cut_in_think(g: Generation) -> bool:
    """Whether a generation reasons and ran out of tokens (``hit_limit``): cut off by the budget
    while reasoning (or while answering after it), and nothing else; a rationale that stopped on
    its own without ``</think>`` is ``unclosed`` (:mod:`mmkp_helpers.rationale`), not cut off."""
    return opened_think(g) and g.hit_limit is True


def generation_stats(generations: Sequence[Generation]) -> dict:
    """Counts and costs of a set of generations: ``n``, ``parse_failed`` (unreadable outputs),
    ``with_reasoning``, ``think_share`` (share that opened ``<think>``), ``cut_off`` (hit the
    token limit), ``cut_in_think`` (opened ``<think>`` and hit the limit), ``gen_tokens_mean``,
    ``seconds_per_example``, ``keyphrases_mean``. Generations with an unknown ``hit_limit`` are
    counted as not cut off. Rationale quality: :func:`mmkp_helpers.rationale.quality_stats`."""
    n = len(generations)
    if n == 0:
        return {"n": 0, "parse_failed": 0, "with_reasoning": 0, "think_share": None, "cut_off": 0, "cut_in_think": 0,
                "gen_tokens_mean": None, "seconds_per_example": None, "keyphrases_mean": None}
    return {"n": n, "parse_failed": sum(not g.parse_ok for g in generations),
            "with_reasoning": sum(g.reasoning is not None for g in generations),
            "think_share": sum(opened_think(g) for g in generations) / n,
            "cut_off": sum(g.hit_limit is True for g in generations),
            "cut_in_think": sum(cut_in_think(g) for g in generations),
            "gen_tokens_mean": sum(g.n_tokens for g in generations) / n,
            "seconds_per_example": sum(g.seconds for g in generations) / n,
            "keyphrases_mean": sum(len(g.keyphrases) for g in generations) / n}
