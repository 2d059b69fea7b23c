"""The default profile's base model: a tiny Qwen2-VL, pretrained once on CPU, then adapted by QLoRA.

A real QLoRA run adapts a *pretrained* VLM: its vision tower already sees, its language model
already reads and writes, and the adapters only teach the task. A randomly initialised tiny
model cannot play that part (its frozen random weights leave LoRA to learn everything through a
4-bit random base; the Fine-tune-CoT student then loops and babbles). So the default profile's
base is pretrained here, once, and cached like any model folder:

1. **Its vocabulary** is Qwen's, cut to the benchmark (:func:`mmkp_helpers.vocab.cut_tokenizer`
   over :func:`tokenizer_corpus`): the same special tokens and chat template, the same token
   strings on every benchmark text, any other text still encodable byte by byte.
2. **Its pretraining** is generic, full-parameter, next-token training on chat turns about
   *synthetic posts drawn with their own seed* (not the benchmark's posts):

   - ``caption``: the picture, "Describe the picture." -> a plain description
     (``a red square on the left and a blue circle on the right, on a dark blue background.``);
   - ``continue``: "Continue the post: just got a new car" -> the rest of the post's text;
   - ``repeat``: "Repeat the post: <text>" -> the text (copying, which reading a post's words
     into an answer needs);
   - ``list``: the picture, "Describe the picture, then list the colours you named." -> the
     description, then ``colours: red, blue, dark blue.`` (reading words back from one's own
     answer, which an answer after a rationale needs);
   - ``facts``: "Continue the post: a blue square on the left and a yellow circle on the right;" ->
     ``blue and yellow make green.``, the benchmark's colour mixes (two different primaries, in
     either order) as world knowledge in words, with no picture and no object: what a real VLM
     knows of paints before fine-tuning. In the default set since the sweep of 4 seeds in
     ``results/bench/cot_base_study_cpu2.jsonl`` and ``cot_stranger_study_cpu2.jsonl`` (the
     Fine-tune-CoT student's rationales well-formed on every seed only with it); before that the
     default was ``caption+continue+repeat+list``, which ``tasks=caption+continue+repeat+list`` still builds.
   - ``pick`` (not in the default set): the ``facts`` prompt answered with the two colours it names
     (``blue and yellow.``), no mix: picking words out of the prompt, the skill ``facts`` trains
     besides the mixes, alone.
   - ``postcaption`` (not in the default set): the caption task with a post's text beside the
     picture ("Describe the picture of this post.\nPost: just got a new car" -> the description), so
     that the base describes a picture whatever text comes with it, as a real VLM does.

   With the default tasks, no keyphrase, no scene name and no colour x object pair is ever a
   target, so zero-shot keyphrase scores are whatever the pretrained model makes of the prompt,
   and the benchmark's rules (scenes, which shapes' colours mix, accounts' tags) are left for
   fine-tuning (``facts`` states the mixes as text, never with a picture or an object).

A model name ``tiny-qwen2_vl`` (or ``tiny-qwen2_5_vl``) takes options after ``?``, e.g.
``tiny-qwen2_vl?tokenizer=qwen&pretrain_steps=0`` (the former default: random weights, the whole
Qwen vocabulary) or ``tiny-qwen2_vl?hidden=64&layers=2``; :data:`OPTIONS` lists them, and an
unknown option or value is an error naming the valid ones. Each set of options has its own cache
folder; the same options and seed build the same weights (deterministic on one machine).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .architecture import BUILDER_VERSION, FAMILIES, VLMSize, build_tiny_vlm, save_model_folder, versions
from .paths import cache_dir

TINY_PREFIX = "tiny-"
#: The options of a tiny model name and their defaults (the default profile's base).
OPTIONS = {
    "tokenizer": "cut",       # cut: Qwen's vocabulary cut to the benchmark; qwen: all 151,643 BPE ranks
    "hidden": 128,            # width of the language model (a multiple of 64)
    "layers": 2,              # language model layers
    "heads": 4,               # attention heads (head width = hidden / heads)
    "pretrain_steps": 1200,   # full-parameter pretraining steps; 0: random weights
    "tasks": "caption+continue+repeat+list+facts",  # pretraining tasks, joined by + (see TASKS)
}
#: The pretraining tasks (generic: none of them is the keyphrase task). ``facts`` is the world
#: knowledge a real VLM brings (which colours two paints make), which a rationale can use.
TASKS = ("caption", "continue", "repeat", "list", "facts", "postcaption", "pick")
#: The default base's tasks (the ``tasks`` option's default).
DEFAULT_TASKS = tuple(OPTIONS["tasks"].split("+"))
TOKENIZER_CHOICES = ("cut", "qwen")
#: Pretraining recipe (not options: change them here, and the cache folders rebuild).
PRETRAIN = {"batch_size": 16, "learning_rate": 2e-3, "warmup_steps": 60, "posts": 4000, "weight_decay": 0.01}
PRETRAIN_VERSION = 1
#: torch threads of the pretraining, whatever the caller set: float32 sums are grouped by the thread
#: count, so a base pretrained inside a process that had set 1 thread (a benchmark, a test) came
#: out different from the notebooks' and changed every later score.
PRETRAIN_THREADS = 2
CAPTION_PROMPT = "Describe the picture."
CONTINUE_PROMPT = "Continue the post:"
REPEAT_PROMPT = "Repeat the post:"
LIST_PROMPT = "Describe the picture, then list the colours you named."
POST_CAPTION_PROMPT = "Describe the picture of this post."


# --------------------------------------------------------------------------------------------
# Names and options
# --------------------------------------------------------------------------------------------
def parse_name(name: str) -> tuple[str, dict]:
    """``tiny-<family>[?opt=value&...]`` -> ``(family, options)`` with defaults filled in."""
    if not name.startswith(TINY_PREFIX):
        raise ValueError(f"{name!r} is not a tiny model name (tiny-<family>[?options])")
    family, _, query = name[len(TINY_PREFIX):].partition("?")
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model {name!r}; valid: {[TINY_PREFIX + f for f in FAMILIES]}")
    options = dict(OPTIONS)
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key not in OPTIONS:
            raise ValueError(f"unknown tiny model option {key!r} in {name!r}; valid options: {sorted(OPTIONS)}")
        if key == "tokenizer":
            if value not in TOKENIZER_CHOICES:
                raise ValueError(f"unknown tokenizer {value!r} in {name!r}; choose one of {TOKENIZER_CHOICES}")
            options[key] = value
        elif key == "tasks":
            unknown = [t for t in value.split("+") if t not in TASKS]
            if unknown or not value:
                raise ValueError(f"unknown pretraining task(s) {unknown} in {name!r}; choose from {TASKS}")
            options[key] = value
        else:
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"option {key} of {name!r} must be an integer, not {value!r}") from None
    return family, options


def size_of(options: dict) -> VLMSize:
    """The architecture an option set asks for (checked against the bitsandbytes CPU kernels)."""
    hidden, heads = options["hidden"], options["heads"]
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}")
    size = VLMSize(hidden_size=hidden, num_layers=options["layers"], num_heads=heads,
                   num_kv_heads=max(1, heads // 2), intermediate_size=2 * hidden, init_std=hidden ** -0.5)
    size.check()
    return size


def folder_name(family: str, options: dict) -> str:
    """The cache folder of a tiny model: ``tiny-<family>`` for the defaults, else with the
    options that differ (``tiny-qwen2_vl-tokenizer_qwen-pretrain_steps_0``)."""
    extra = [f"{k}_{v}" for k, v in options.items() if v != OPTIONS[k]]
    return "-".join([TINY_PREFIX + family, *extra])


# --------------------------------------------------------------------------------------------
# The vocabulary
# --------------------------------------------------------------------------------------------
def tokenizer_corpus() -> list[str]:
    """Every kind of text the default profile gives the tiny model: the synthetic benchmark's
    whole closed vocabulary (each word alone, with and without a leading space), posts of two
    seeds rendered with every prompt template and both answer forms (direct and CoT, both
    rationale styles, faithful and noisy), and the pretraining turns."""
    from . import prompts, synthetic
    from .synthetic import vocabulary as v
    from .teacher.oracle import STYLES, OracleTeacher
    from .vocab import QWEN2_VL_CHAT_TEMPLATE  # noqa: F401 (the template's literal text comes with the renders)

    words = [*v.TOPICS, *v.EVENTS, *v.COLOURS, *v.PRIMARIES, *v.SCENES, *v.TAGS, *v.SERIES_NAMES, *v.SHAPES,
             *v.SIDES, v.SIGNATURE, *v.SYNONYMS, *v.SYNONYMS.values(), *v.INTERJECTIONS,
             *(w for piece in v.OPENERS + v.MIDDLES + v.EVENT_PREPOSITIONS + v.TAILS for w in piece.split()),
             *(w for _, looks in [*v.SCENES.values(), v.NO_SCENE] for w in looks.split())]
    corpus = [w for word in words for w in (word, " " + word)]
    teachers = [OracleTeacher(style=s, noise=n) for s in STYLES for n in (0.0, 0.3)]
    for seed in (0, 1):  # two small benchmarks: every sentence form of posts, prompts and rationales
        sample = synthetic.generate(seed=seed, n_train=300, n_valid=50, n_test=100)
        for ex in (e for part in sample.values() for e in part):
            for name in prompts.TEMPLATES:
                corpus.append(prompts.TEMPLATES[name].user_text(ex))
            corpus.append(prompts.direct_target(ex.keyphrases))
            for teacher in teachers:
                rationale, keyphrases, _ = teacher.rationale_and_keyphrases(ex)
                corpus.append(prompts.cot_target(rationale, keyphrases))
            corpus.append(synthetic.caption(ex.meta["truth"]))
    corpus += ["system\nYou are a helpful assistant.", "user\n", "assistant\n", CAPTION_PROMPT, CONTINUE_PROMPT, REPEAT_PROMPT, LIST_PROMPT,
               POST_CAPTION_PROMPT, "Picture 1: ", "<think>", "</think>", "\n"]
    return corpus


def build_tokenizer(kind: str):
    """The tiny model's tokenizer: ``cut`` (the benchmark's cut of Qwen's) or ``qwen`` (all of it)."""
    from .vocab import build_qwen_tokenizer, cut_tokenizer

    if kind not in TOKENIZER_CHOICES:
        raise ValueError(f"unknown tokenizer {kind!r}; choose one of {TOKENIZER_CHOICES}")
    full = build_qwen_tokenizer()
    return full if kind == "qwen" else cut_tokenizer(full, tokenizer_corpus())


# --------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------
def pretraining_turns(posts: int, seed: int = 0, tasks=DEFAULT_TASKS) -> list[dict]:
    """``posts`` synthetic posts of the generator's own seed ``10_000 + seed`` (not the benchmark's
    seed), each as one turn of a task drawn in turn from ``tasks``: ``{"image": drawing or None,
    "user": ..., "answer": ...}``."""
    from . import synthetic

    rng = random.Random(f"pretrain-{seed}")
    n_fresh = posts // 4
    drawn = synthetic.generate(seed=10_000 + seed, n_train=posts - 2 * n_fresh, n_valid=n_fresh, n_test=n_fresh,
                               dup_share=0.0)
    pool = [ex for name in ("train", "valid", "test_clean") for ex in drawn[name]]
    turns = []
    for i, ex in enumerate(pool):
        task = tasks[i % len(tasks)]
        if task == "caption":
            turns.append({"image": ex.meta["drawing"], "user": CAPTION_PROMPT, "answer": synthetic.caption(ex.meta["truth"])})
        elif task == "continue":
            words = ex.text.split()
            cut = rng.randint(2, max(2, len(words) - 2))
            turns.append({"image": None, "user": f"{CONTINUE_PROMPT} {' '.join(words[:cut])}",
                          "answer": " ".join(words[cut:])})
        elif task == "repeat":
            turns.append({"image": None, "user": f"{REPEAT_PROMPT} {ex.text}", "answer": ex.text})
        elif task == "list":
            described = synthetic.caption(ex.meta["truth"])
            named = [w for w in described.rstrip(".").replace(",", "").split() if w in synthetic.COLOURS
                     or w in ("grey", "white", "black", "beige", "teal", "dark")]
            colours = list(dict.fromkeys(" ".join(named).replace("dark ", "dark_").split()))
            turns.append({"image": ex.meta["drawing"], "user": LIST_PROMPT,
                          "answer": f"{described} colours: {', '.join(c.replace('_', ' ') for c in colours)}."})
        elif task == "postcaption":  # the caption task with the post's text beside the picture
            turns.append({"image": ex.meta["drawing"], "user": f"{POST_CAPTION_PROMPT}\nPost: {ex.text}",
                          "answer": synthetic.caption(ex.meta["truth"])})
        elif task == "pick":  # the facts task's prompt, answered with the two colours it names, no mix
            a, b = rng.sample(list(synthetic.PRIMARIES), 2)
            f_a, f_b = (rng.choice(synthetic.SHAPES) for _ in "ab")
            turns.append({"image": None, "user": f"{CONTINUE_PROMPT} a {a} {f_a} on the left and a {b} {f_b} on the right;",
                          "answer": f"{a} and {b}."})
        elif task == "facts":  # in words only: a text about two shapes, continued with what their paints make
            a, b = rng.sample(list(synthetic.PRIMARIES), 2)
            f_a, f_b = (rng.choice(synthetic.SHAPES) for _ in "ab")
            turns.append({"image": None, "user": f"{CONTINUE_PROMPT} a {a} {f_a} on the left and a {b} {f_b} on the right;",
                          "answer": f"{a} and {b} make {synthetic.mix(a, b)}."})
        else:
            raise ValueError(f"unknown pretraining task {task!r}")
    rng.shuffle(turns)
    return turns


class _TurnCollator:
    """Chat batches of pretraining turns, labels on the answer only (as in fine-tuning); each
    turn's tokens and image pixels are kept after its first batch (the fine-tuning collator's
    cache, :class:`~mmkp_helpers.collate.ChatCollator`, with drawings rendered in place of files)."""

    def __init__(self, processor):
        from .collate import ChatCollator
        from .synthetic import render_image

        self.processor = processor
        self.masker = ChatCollator(processor)
        self.drawings: dict[str, dict] = {}
        self.masker.load_image = lambda key: render_image(self.drawings[key])

    def __call__(self, turns: list[dict]) -> dict:
        texts, keys = [], []
        for t in turns:
            content = ([{"type": "image"}] if t["image"] else []) + [{"type": "text", "text": t["user"]}]
            messages = [{"role": "user", "content": content},
                        {"role": "assistant", "content": [{"type": "text", "text": t["answer"]}]}]
            texts.append(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
            key = json.dumps(t["image"], sort_keys=True) if t["image"] else None
            if key is not None:
                self.drawings.setdefault(key, t["image"])
            keys.append(key)
        batch = self.masker._batch(texts, keys)
        batch.pop("answer_mask")
        return batch


def pretrain(model, processor, steps: int, seed: int = 0, tasks=DEFAULT_TASKS, progress: bool = True, **recipe) -> dict:
    """Full-parameter next-token training of ``model`` on :func:`pretraining_turns` for ``steps``
    steps (AdamW, linear warm-up then cosine decay, float32). Returns the loss curve and time."""
    from .progress import tqdm

    r = PRETRAIN | recipe
    turns = pretraining_turns(r["posts"], seed, tuple(tasks))
    collate = _TurnCollator(processor)
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=r["learning_rate"], weight_decay=r["weight_decay"])

    def lr_at(step: int) -> float:
        if step < r["warmup_steps"]:
            return (step + 1) / r["warmup_steps"]
        done = (step - r["warmup_steps"]) / max(1, steps - r["warmup_steps"])
        return 0.5 * (1 + torch.cos(torch.tensor(done * torch.pi)).item())

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    order = random.Random(f"pretrain-order-{seed}")
    index = list(range(len(turns)))
    order.shuffle(index)
    losses, start, position = [], time.perf_counter(), 0
    bar = tqdm(total=steps, desc="pretraining the tiny base", disable=not progress, unit="step")
    for step in range(steps):
        if position + r["batch_size"] > len(index):
            order.shuffle(index)
            position = 0
        batch = collate([turns[i] for i in index[position:position + r["batch_size"]]])
        position += r["batch_size"]
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.update(1)
    bar.close()
    model.eval()
    every = max(1, steps // 20)
    return {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
            "loss_first": losses[0] if losses else None, "loss_last_50": sum(losses[-50:]) / max(1, len(losses[-50:])),
            "losses": [[i + 1, round(sum(losses[i:i + every]) / len(losses[i:i + every]), 4)]
                       for i in range(0, len(losses), every)], "recipe": dict(r), "tasks": list(tasks)}


# --------------------------------------------------------------------------------------------
# Building and caching
# --------------------------------------------------------------------------------------------
#: The package files whose code makes the base's vocabulary and pretraining data (the benchmark's
#: language, the prompts, the oracle's rationales, the tokenizer cut) and its weights.
SOURCES = ("synthetic", "teacher/oracle.py", "prompts.py", "text.py", "vocab.py", "tiny_base.py", "architecture.py")


def sources_fingerprint() -> str:
    """A SHA-256 over the contents of :data:`SOURCES` (milliseconds). Any edit there rebuilds a
    cached base, even one that leaves the data as it was: version numbers alone missed changes
    to the generator that changed the pretraining posts and the vocabulary."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in SOURCES:
        path = root / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _marker(family: str, options: dict, seed: int) -> dict:
    """What a cached tiny base was built from: a folder whose record differs is rebuilt (the
    synthetic benchmark's version stands for its language, which the vocabulary and the
    pretraining posts come from; ``sources`` catches what a version number was not bumped for)."""
    from .synthetic import VERSION as BENCHMARK_VERSION

    return {"family": family, "seed": seed, "options": options, "size": asdict(size_of(options)),
            "builder": BUILDER_VERSION, "benchmark": BENCHMARK_VERSION,
            "pretrain": {"version": PRETRAIN_VERSION, **PRETRAIN, "threads": PRETRAIN_THREADS},
            "sources": sources_fingerprint()}


def build_tiny_base(path: str | Path, family: str = "qwen2_vl", options: dict | None = None, seed: int = 0,
                    progress: bool = True) -> Path:
    """Build the tiny base of ``options`` (default :data:`OPTIONS`) into ``path``: the tokenizer,
    the architecture with random weights (``seed``), then ``pretrain_steps`` of pretraining;
    ``mmkp_tiny.json`` records how (and the pretraining's loss curve)."""
    options = dict(OPTIONS) | dict(options or {})
    marker = _marker(family, options, seed)
    model, processor = build_tiny_vlm(path, family=family, seed=seed, size=size_of(options),
                                      tokenizer=build_tokenizer(options["tokenizer"]), save=False)
    if options["pretrain_steps"] > 0:
        threads = torch.get_num_threads()
        torch.set_num_threads(PRETRAIN_THREADS)
        try:
            marker["pretraining"] = pretrain(model, processor, options["pretrain_steps"], seed=seed,
                                             tasks=options["tasks"].split("+"), progress=progress)
        finally:
            torch.set_num_threads(threads)
    save_model_folder(model, processor, path, family)
    marker["vocab_size"] = model.config.text_config.vocab_size if hasattr(model.config, "text_config") else None
    marker["versions"] = versions()
    (Path(path) / "mmkp_tiny.json").write_text(json.dumps(marker, indent=2))
    return Path(path)


def ensure_tiny_base(name: str, seed: int = 0, progress: bool = True) -> Path:
    """The cache folder of tiny model ``name`` (``.cache/models/<folder_name>``), built on first
    use and rebuilt when its record does not match (options, seed, builder or recipe changed)."""
    family, options = parse_name(name)
    path = cache_dir("models") / folder_name(family, options)
    record = path / "mmkp_tiny.json"
    made = json.loads(record.read_text()) if record.exists() else {}
    wanted = _marker(family, options, seed)
    if any(made.get(k) != v for k, v in wanted.items()) or not (path / "config.json").exists():
        what = "pretraining" if options["pretrain_steps"] else "building"
        print(f"{what} tiny model {name} (seed {seed}) in {path.name} ...", flush=True)
        build_tiny_base(path, family, options, seed, progress=progress)
    return path
