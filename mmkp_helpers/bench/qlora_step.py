"""Training throughput, peak memory and MFU of the project's training path, over a matrix of settings.

    python -m mmkp_helpers.bench.qlora_step [--out FILE.jsonl]            # a CUDA GPU: the 2B matrix
    python -m mmkp_helpers.bench.qlora_step --device cpu --tiny           # CPU smoke run, same code path
    python -m mmkp_helpers.bench.qlora_step --summarize FILE.jsonl        # the table and goals of a run

**What is measured.** Every configuration trains through :func:`mmkp_helpers.training.train_sft`
(``KeyphraseTrainer``: deferred collation, the trainer's own loss) on :class:`TrainRecord` objects
built from the synthetic benchmark, with a model from ``modeling.load_vlm`` (``random-qwen2_vl-2b``:
Qwen2-VL-2B-Instruct's architecture with random weights, built once into ``.cache/models`` by
``modeling.resolve_model``; ``--tiny``: ``tiny-qwen2_vl``). A configuration is named
``{qlora|lora}-{gc|nogc}-{fused|answer|full}-b{N}-{direct|cot}[-eager]``:

- ``qlora``: the base in 4-bit NF4 (double quantization, bf16 compute); ``lora``: the base in bf16
  (float32 on a CPU). LoRA r ``--lora-r`` on the language model's projections either way.
- ``gc`` / ``nogc``: gradient checkpointing on or off.
- the loss: ``fused`` = ``SFTSettings(fused_loss=True)`` (fused linear cross-entropy on the labelled
  positions); ``answer`` = ``fused_loss=False`` (the model's own logits on the answer positions,
  ``logits_to_keep``); ``full`` = ``fused_loss=False`` with the logits of every position (what the
  stock causal-LM loss computes; done by widening ``training.loss_positions`` to all positions).
- ``bN``: sequences per step (no gradient accumulation).
- ``direct`` / ``cot``: the answer trained on (``TargetForms`` default), see below.
- ``-eager``: the model's attention switched to the eager implementation after loading (default:
  whatever transformers picked, recorded as ``attn_implementation``; ``sdpa`` on current versions).

**The data.** Synthetic posts (``synthetic.make_synthetic``; 112-pixel images, resized by the
processor with ``min_pixels = max_pixels = image_side**2``: at 448 px each image is 256 tokens).
Direct answers are the gold keyphrases followed by keyphrases of other posts until the answer
line (``Keyphrases: ...``) is ``--direct-tokens`` long (30: what five real keyphrases take; the
synthetic ones are a token or two each, so about 12 of them). CoT answers are
``<think>rationale</think>`` + that answer line, ``--cot-tokens`` long in all (about 150): the
rationale is ``teacher.OracleTeacher``'s (about 30-60 tokens), its words repeated in order until
the target has the length (cut at a word). Then the post's text is extended with the texts of
other posts until the whole chat (system, user turn with image, answer, ``<|im_end|>``) is about
``--seq`` tokens (a sequence already longer is left as it is; at 448 px a CoT record is about 500
tokens before filler). So direct and CoT sequences have the same length (511 measured with the
Qwen tokenizer at 448 px) and differ in how many positions are labelled (about 31 vs 151). Actual
lengths are measured and recorded.

**The numbers.** ``seconds_per_step``: mean wall time between two optimizer steps' ends (CUDA
synchronised) over ``--steps`` steps after ``--warmup`` steps; it includes the collation the
trainer does at each step (``collate_seconds_per_batch`` gives that share). ``tokens_per_second``
= batch x mean tokens per sequence / seconds_per_step. ``peak_memory_allocated_gib`` =
``torch.cuda.max_memory_allocated`` over the training (``train_sft`` resets it at its start; the
model's own memory, ``static_memory_gib``, is included); on the CPU it is the process's peak RSS.
Each configuration loads its own model and frees it afterwards (``memory_before_load_gib`` shows
what was left over).

**MFU** = model FLOPs per step / seconds per step / peak (``--peak-tflops``, default 989: the
H200/H100 SXM dense bf16 rate). With a frozen base and LoRA, a token costs 2N FLOPs forward and
2N backward (the gradient of the activations; no weight gradients are formed for frozen weights),
not the 6N of full training; so model FLOPs per sequence of T tokens, A of them labelled, with
I image tokens from P = 4I patches (the counts N come from the model's Linear layers):

    4 N_lm T            language-model projections (frozen)     + 6 N_lora T       LoRA (trained)
    4 N_head A          output projection at labelled positions (what the loss needs; ``full``
                        computes it at every position, which is not counted: waste shows as lower MFU)
    12 L d T^2          language-model attention scores, forward + backward (PaLM's convention:
                        the full T x T product, no causal halving)
    2 N_vit P + 2 N_merger I + 4 L_v d_v P^2 + conv   the frozen vision tower, forward only
                        (no gradient reaches it: it has no adapter and its input needs no gradient)

Recomputation under gradient checkpointing is not counted (that would be hardware FLOPs
utilisation). ``mfu_4n`` is the plain approximation 4 N_lm x tokens/s for comparison.

Goals checked in the summary (from the issue): QLoRA peak <= 4 GB (4e9 bytes) at batch 4 x 512
and <= half of bf16 LoRA's at the same settings; MFU >= 25 % for bf16 LoRA and >= 15 % for QLoRA at
the best batch size. Needs bitsandbytes for ``qlora``; a configuration that fails (out of memory,
say) writes a record with ``error`` and the matrix goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from transformers import TrainerCallback

from mmkp_helpers import collate, modeling, training
from mmkp_helpers.data import Example
from mmkp_helpers.prompts import cot_target, direct_target
from mmkp_helpers.bench.qlora_report import GOAL_MFU, GOAL_QLORA_PEAK_BYTES, _fmt, _gib, read_jsonl, summarize  # noqa: F401

H200_BF16_TFLOPS = 989.0  # dense bf16, SXM (the datasheet's 1,979 is with 2:4 sparsity)

PRESETS = {
    # the real architecture on a GPU: the default matrix is sized for about 5 minutes on an H200 (an
    # estimate: ~10 s to load a model, 11 steps of 0.3-2 s); --budget-s cuts it short in order
    "gpu": dict(model="random-qwen2_vl-2b", seq=512, image_side=448, direct_tokens=30, cot_tokens=150,
                batches=(4, 16), warmup=3, steps=8, lora_r=16, peak_tflops=H200_BF16_TFLOPS),
    # the tiny model on a CPU (float32; 4-bit through bitsandbytes' CPU kernels): a smoke run
    "tiny": dict(model="tiny-qwen2_vl", seq=160, image_side=112, direct_tokens=30, cot_tokens=60,
                 batches=(2, 4), warmup=1, steps=2, lora_r=8, peak_tflops=None),
}

CONFIG_RE = re.compile(r"^(qlora|lora)-(gc|nogc)-(fused|answer|full)-b(\d+)-(direct|cot)(?:-(eager|sdpa))?$")


@dataclass(frozen=True)
class Config:
    quant: str           # "qlora" | "lora"
    gc: bool
    loss: str            # "fused" | "answer" | "full"
    batch: int
    answer: str          # "direct" | "cot"
    attn: str | None = None  # None: as loaded; "eager" / "sdpa": switched after loading

    @property
    def name(self) -> str:
        return (f"{self.quant}-{'gc' if self.gc else 'nogc'}-{self.loss}-b{self.batch}-{self.answer}"
                + (f"-{self.attn}" if self.attn else ""))

    @classmethod
    def parse(cls, name: str) -> "Config":
        m = CONFIG_RE.match(name.strip())
        if not m:
            raise ValueError(f"bad configuration {name!r}: expected "
                             "{qlora|lora}-{gc|nogc}-{fused|answer|full}-b<N>-{direct|cot}[-eager|-sdpa]")
        quant, gc_, loss, batch, answer, attn = m.groups()
        return cls(quant, gc_ == "gc", loss, int(batch), answer, attn)


def default_matrix(small: int, large: int) -> list[str]:
    """The configurations run by default, most important first (a run cut short keeps those)."""
    s, b = f"b{small}", f"b{large}"
    return [
        f"qlora-gc-fused-{s}-direct",        # the goal's configuration: QLoRA peak at batch 4 x 512 ...
        f"lora-gc-fused-{s}-direct",         # ... and against bf16 LoRA's
        f"qlora-nogc-fused-{b}-direct",      # the MFU goals at the larger batch, no checkpointing
        f"lora-nogc-fused-{b}-direct",
        f"qlora-nogc-fused-{s}-direct",      # lever: gradient checkpointing
        f"qlora-gc-full-{s}-direct",         # lever: the loss (stock logits everywhere / on answer positions)
        f"qlora-gc-answer-{s}-direct",
        f"qlora-gc-fused-{s}-cot",           # CoT answers: 5x the labelled positions
        f"qlora-gc-answer-{s}-cot",
        f"lora-nogc-fused-{s}-direct",       # lever: batch size for bf16 LoRA
        f"lora-nogc-fused-{b}-cot",
        f"qlora-gc-fused-{s}-direct-eager",  # lever: attention implementation (eager vs the default sdpa)
    ]


# --------------------------------------------------------------------------------------------
# Data: TrainRecords of about the asked lengths
# --------------------------------------------------------------------------------------------
def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _longest_prefix(n_words: int, fits) -> int:
    """The largest k <= n_words with fits(k) (fits is monotone: True up to some k); 0 if none."""
    lo, hi = 0, n_words
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def padded_keyphrases(tokenizer, keyphrases: list[str], pool: list[str], direct_tokens: int, start: int = 0) -> list[str]:
    """The gold keyphrases, then keyphrases from ``pool`` (cycled from ``start``) while the direct
    target stays within ``direct_tokens`` tokens (at least the gold list)."""
    kps = list(keyphrases)
    seen = set(kps)
    for i in range(len(pool)):
        kp = pool[(start + i) % len(pool)]
        if kp in seen:
            continue
        if _n_tokens(tokenizer, direct_target(kps + [kp])) > direct_tokens:
            break
        kps.append(kp)
        seen.add(kp)
    return kps


def extended_rationale(tokenizer, rationale: str, keyphrases: list[str], cot_tokens: int) -> str:
    """``rationale``'s words repeated in order, cut so that the whole CoT target
    (``<think>...</think>`` + answer line) has at most ``cot_tokens`` tokens (at least one word)."""
    words = rationale.split()
    if not words:
        return rationale
    reps = words * max(1, math.ceil(cot_tokens / max(1, len(words))) + 1)
    k = _longest_prefix(len(reps), lambda k: _n_tokens(tokenizer, cot_target(" ".join(reps[:k]), keyphrases))
                        <= cot_tokens)
    return " ".join(reps[:max(k, 1)])


def build_records(processor, examples: list[Example], form: str, seq: int, direct_tokens: int,
                  cot_tokens: int) -> tuple[list[collate.TrainRecord], dict]:
    """One :class:`TrainRecord` per example whose ``form`` ("direct" / "cot") sequence is about
    ``seq`` tokens with the answer lengths asked (see the module docstring), and the measured
    lengths: ``{"seq_len": [...], "labelled": [...], "image_tokens": [...]}``."""
    from mmkp_helpers.teacher import OracleTeacher

    tok = processor.tokenizer
    teacher = OracleTeacher(mode="rationalize")
    pool = sorted({kp for ex in examples for kp in ex.keyphrases})
    filler_texts = [ex.text for ex in examples]
    forms = collate.TargetForms(form)
    collator = collate.ChatCollator(processor, prompt="direct", forms=forms)
    records, stats = [], {"seq_len": [], "labelled": [], "image_tokens": []}
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    for i, ex in enumerate(examples):
        kps = padded_keyphrases(tok, ex.keyphrases, pool, direct_tokens, start=i * 7)
        rationale = extended_rationale(tok, teacher.answer(ex).rationale or ex.text, kps, cot_tokens)
        record = collate.TrainRecord(ex, direct_target(kps), cot_target(rationale, kps))
        base = collator([record])["input_ids"].shape[1]
        missing = seq - base
        if missing > 1:
            filler_ids = tok(" " + " ".join(filler_texts[(i + 1 + j) % len(filler_texts)] for j in range(64)),
                             add_special_tokens=False)["input_ids"][:missing - 1]
            padded = replace(ex, text=ex.text + " " + tok.decode(filler_ids).strip())
            record = collate.TrainRecord(padded, record.direct, record.cot)
        batch = collator([record])
        records.append(record)
        stats["seq_len"].append(int(batch["input_ids"].shape[1]))
        stats["labelled"].append(int((batch["labels"][:, 1:] != collate.IGNORE_INDEX).sum()))
        stats["image_tokens"].append(int((batch["input_ids"] == image_id).sum()))
    return records, stats


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------
def linear_parameters(model) -> dict[str, int]:
    """Weights of the model's Linear layers (in x out, 4-bit ones at their logical size) by role:
    ``lm`` (language-model projections), ``head`` (output projection), ``lora`` (adapters),
    ``vit`` (vision blocks, applied per patch), ``merger`` (vision merger, per image token)."""
    out = dict.fromkeys(("lm", "head", "lora", "vit", "merger"), 0)
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        n = int(module.in_features) * int(module.out_features)
        if "lora_" in name:
            out["lora"] += n
        elif "lm_head" in name:
            out["head"] += n
        elif "visual" in name:
            out["merger" if "merger" in name else "vit"] += n
        else:
            out["lm"] += n
    return out


def model_flops_per_sequence(model, params: dict[str, int], seq_len: float, labelled: float, image_tokens: float,
                             images: int = 1) -> dict[str, float]:
    """Model FLOPs of one training sequence, by part (the formula of the module docstring)."""
    cfg = model.config
    text = getattr(cfg, "text_config", cfg)
    vision = getattr(cfg, "vision_config", None)
    layers, width = int(text.num_hidden_layers), int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or width // heads)
    merge = int(getattr(vision, "spatial_merge_size", 2) or 2) if vision is not None else 2
    patches = image_tokens * merge * merge
    per_image = patches / max(images, 1)
    flops = {
        "lm": 4.0 * params["lm"] * seq_len,
        "lora": 6.0 * params["lora"] * seq_len,
        "head": 4.0 * params["head"] * labelled,
        "lm_attention": 12.0 * layers * heads * head_dim * seq_len ** 2,
        "vision": 2.0 * params["vit"] * patches + 2.0 * params["merger"] * image_tokens,
    }
    if vision is not None and patches:
        v_width = int(getattr(vision, "embed_dim", None) or getattr(vision, "hidden_size"))
        v_depth = int(getattr(vision, "depth"))
        conv = 2.0 * (int(getattr(vision, "in_channels", 3)) * int(getattr(vision, "temporal_patch_size", 2))
                      * int(getattr(vision, "patch_size", 14)) ** 2) * v_width * patches
        flops["vision"] += conv + 4.0 * v_depth * v_width * per_image ** 2 * images
    flops["total"] = sum(flops.values())
    return flops


# --------------------------------------------------------------------------------------------
# One configuration
# --------------------------------------------------------------------------------------------
class StepTimer(TrainerCallback):
    """Wall-clock time at the end of every optimizer step (CUDA synchronised first)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.start: float | None = None
        self.ends: list[float] = []

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(self._now())

    def intervals(self) -> list[float]:
        marks = [self.start] + self.ends
        return [b - a for a, b in zip(marks, marks[1:])]


@contextlib.contextmanager
def all_positions_loss():
    """``fused_loss=False`` with the logits of every position: ``training.loss_positions`` returns
    all of them (the trainer's non-fused path then computes full logits, as the stock loss does)."""
    original = training.loss_positions

    def every_position(labels):
        return torch.arange(labels.shape[1] - 1, device=labels.device)

    training.loss_positions = every_position
    try:
        yield
    finally:
        training.loss_positions = original


def run_config(cfg: Config, model_path: str, records: list[collate.TrainRecord], stats: dict, args,
               workdir: Path) -> dict:
    """Load a fresh model for ``cfg``, train ``warmup + steps`` steps with ``train_sft``, measure."""
    cuda = args.device == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else None
    pixels = args.image_side ** 2
    t0 = time.perf_counter()
    modeling.setup(args.seed, verbose=False)
    model, processor = modeling.load_vlm(model_path, quantize_4bit=cfg.quant == "qlora",
                                         lora={"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0},
                                         gradient_checkpointing=cfg.gc, min_pixels=pixels, max_pixels=pixels,
                                         verbose=False)
    if cfg.attn:
        model.get_base_model().set_attn_implementation(cfg.attn)
    load_s = time.perf_counter() - t0
    static = torch.cuda.memory_allocated() if cuda else None
    load_peak = torch.cuda.max_memory_allocated() if cuda else None
    params = modeling.count_parameters(model)
    linears = linear_parameters(model)
    attn = getattr(model.get_base_model().config, "_attn_implementation", None)

    # the collation the trainer does at every step, timed alone (part of seconds_per_step)
    collator = collate.ChatCollator(processor, prompt="direct", forms=collate.TargetForms(cfg.answer))
    t1 = time.perf_counter()
    for k in range(2):
        collator(records[k * cfg.batch % len(records):][:cfg.batch] or records[:cfg.batch])
    collate_s = (time.perf_counter() - t1) / 2

    settings = training.SFTSettings(
        learning_rate=2e-4, max_steps=args.warmup + args.steps, batch_size=cfg.batch, gradient_checkpointing=cfg.gc,
        warmup=0, lr_scheduler="constant", logging_steps=1, save_steps=10**9, save_total_limit=None,
        seed=args.seed, progress=False, fused_loss=cfg.loss == "fused")
    timer = StepTimer(cuda)
    with all_positions_loss() if cfg.loss == "full" else contextlib.nullcontext():
        result = training.train_sft(model, processor, records, settings=settings,
                                    forms=collate.TargetForms(cfg.answer), callbacks=[timer],
                                    output_dir=workdir / cfg.name)
    reserved = torch.cuda.max_memory_reserved() if cuda else None
    intervals = timer.intervals()
    timed = intervals[args.warmup:] or intervals
    step_s = statistics.fmean(timed)
    seq_len = statistics.fmean(stats["seq_len"])
    labelled = statistics.fmean(stats["labelled"])
    image_tokens = statistics.fmean(stats["image_tokens"])
    flops = model_flops_per_sequence(model, linears, seq_len, labelled, image_tokens)
    tokens_per_s = cfg.batch * seq_len / step_s
    achieved = cfg.batch * flops["total"] / step_s
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    losses = [loss for _, loss in result.train_losses]
    record = {
        "bench": "qlora_step", "config": cfg.name, "model": args.model, "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "quant": cfg.quant, "base_dtype": ("nf4" if cfg.quant == "qlora" else "bf16") if cuda else
        ("nf4" if cfg.quant == "qlora" else "float32"),
        "gradient_checkpointing": cfg.gc, "loss": cfg.loss, "batch": cfg.batch, "answer": cfg.answer,
        "attn_implementation": attn, "lora_r": args.lora_r,
        "seq_len_mean": round(seq_len, 1), "seq_len_min": min(stats["seq_len"]), "seq_len_max": max(stats["seq_len"]),
        "labelled_tokens_mean": round(labelled, 1), "image_tokens": round(image_tokens, 1),
        "warmup_steps": args.warmup, "timed_steps": len(timed), "steps": result.steps,
        "seconds_per_step": round(step_s, 4), "seconds_per_step_median": round(statistics.median(timed), 4),
        "seconds_per_step_min": round(min(timed), 4), "tokens_per_second": round(tokens_per_s, 1),
        "collate_seconds_per_batch": round(collate_s, 4),
        "peak_memory_allocated_gib": _gib(result.peak_memory_bytes) if cuda else None,
        "peak_memory_reserved_gib": _gib(reserved),
        "peak_memory_bytes": int(result.peak_memory_bytes), "peak_memory_kind": result.peak_memory_kind,
        "static_memory_gib": _gib(static), "load_peak_memory_gib": _gib(load_peak),
        "memory_before_load_gib": _gib(before),
        "trainable_params": params["trainable"], "total_params": params["total"], "linear_params": linears,
        "model_flops_per_sequence": {k: float(f"{v:.4g}") for k, v in flops.items()},
        "achieved_tflops": round(achieved / 1e12, 3), "peak_tflops": args.peak_tflops,
        "mfu": round(achieved / peak, 4) if peak else None,
        "mfu_4n": round(4 * linears["lm"] * tokens_per_s / peak, 4) if peak else None,
        "trainer_tokens_per_second": round(result.tokens_per_s, 1) if result.tokens_per_s else None,
        "load_seconds": round(load_s, 2), "train_seconds": round(result.runtime_s, 2),
        "losses": [round(x, 4) for x in losses], "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "versions": modeling.versions(),
    }
    del model, processor, collator, result
    return record


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------
def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when there is a GPU")
    parser.add_argument("--tiny", action="store_true", help="the tiny model and tiny sizes (the CPU smoke run)")
    parser.add_argument("--model", default=None, help="model name or folder (default: the preset's)")
    parser.add_argument("--configs", default=None, help="comma-separated configuration names (default: the matrix)")
    parser.add_argument("--batches", default=None, help="small,large batch of the default matrix (default 4,16; tiny 2,4)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence, about (default 512; tiny 160)")
    parser.add_argument("--image-side", type=int, default=None, help="image side in pixels after resizing (448: 256 tokens)")
    parser.add_argument("--direct-tokens", type=int, default=None, help="tokens of a direct answer line (default 30)")
    parser.add_argument("--cot-tokens", type=int, default=None, help="tokens of a CoT target (default 150; tiny 60)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before the timing (default 3; tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 8; tiny 2)")
    parser.add_argument("--lora-r", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default 989 on a GPU, none on a CPU)")
    parser.add_argument("--records", type=int, default=None, help="training records (default 4 x the largest batch, at least 40)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default 1 with --device cpu: the tiny model's matrices gain nothing "
                             "from more, and beside another busy process OpenMP's waiting made steps 30x slower)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no configuration that would end past this many seconds from the start (judged "
                             "by the longest one so far): a run under a hard time limit ends cleanly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="append one JSON line per configuration here")
    parser.add_argument("--summarize", default=None, metavar="JSONL", help="only print the summary of a results file")
    args = parser.parse_args(argv)

    if args.summarize:
        rows = read_jsonl(args.summarize)
        print(summarize(rows))
        return rows
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("qlora_step: --device cuda but no CUDA GPU is visible")
    if args.device == "cpu" and torch.cuda.is_available():
        raise SystemExit("qlora_step: --device cpu with a visible GPU; hide it (CUDA_VISIBLE_DEVICES=) first, since "
                         "load_vlm and train_sft take the GPU whenever there is one")
    preset = PRESETS["tiny" if args.tiny else "gpu"]
    for key in ("model", "seq", "image_side", "direct_tokens", "cot_tokens", "warmup", "steps", "lora_r"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.peak_tflops is None and args.device == "cuda":
        args.peak_tflops = preset["peak_tflops"] or H200_BF16_TFLOPS
    small, large = (int(x) for x in args.batches.split(",")) if args.batches else preset["batches"]
    names = args.configs.split(",") if args.configs else default_matrix(small, large)
    configs = [Config.parse(n) for n in names if n.strip()]
    threads = torch.get_num_threads()
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    try:
        rows = run_matrix(configs, args)
    finally:
        torch.set_num_threads(threads)
    print()
    print(summarize(rows))
    return rows


def run_matrix(configs: list[Config], args) -> list[dict]:
    """Build the model (once) and the data, then run each configuration; returns the records."""
    start = time.perf_counter()
    modeling.setup(args.seed)
    t0 = time.perf_counter()
    model_path = modeling.resolve_model(args.model, seed=args.seed)
    print(f"model {args.model} -> {model_path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    processor = modeling.load_processor(model_path, min_pixels=args.image_side ** 2, max_pixels=args.image_side ** 2)
    # at least 40 posts: the generator's 8 recurring accounts need 40% of the posts to have one each
    n_records = max(args.records or 4 * max(c.batch for c in configs), 40)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qlora_step-") as tmp:
        from mmkp_helpers import data, synthetic

        t1 = time.perf_counter()
        paths = synthetic.make_synthetic(Path(tmp) / "synthetic", seed=args.seed, n_train=n_records, n_valid=0,
                                         n_test=0, dup_share=0.0)
        examples = data.read_jsonl(paths["train"])
        data_sets = {}
        for form in sorted({c.answer for c in configs}):
            records, stats = build_records(processor, examples, form, args.seq, args.direct_tokens, args.cot_tokens)
            data_sets[form] = (records, stats)
            print(f"{form}: {len(records)} records, sequence {min(stats['seq_len'])}-{max(stats['seq_len'])} tokens "
                  f"(mean {statistics.fmean(stats['seq_len']):.0f}), labelled {statistics.fmean(stats['labelled']):.0f}, "
                  f"image tokens {statistics.fmean(stats['image_tokens']):.0f}", flush=True)
        print(f"data ready in {time.perf_counter() - t1:.1f} s; {len(configs)} configurations, "
              f"{args.warmup} + {args.steps} steps each", flush=True)
        for cfg in configs:
            records, stats = data_sets[cfg.answer]
            t2 = time.perf_counter()
            longest = max((r["wall_seconds"] for r in rows), default=0.0)
            if args.budget_s and t2 - start + longest > args.budget_s:
                print(f"[{cfg.name}] skipped: {t2 - start:.0f} s spent, the longest configuration took {longest:.0f} s, "
                      f"budget {args.budget_s:.0f} s", flush=True)
                continue
            try:
                row = run_config(cfg, model_path, records, stats, args, Path(tmp) / "runs")
            except Exception as err:  # out of memory, a kernel missing on this machine, ...
                row = {"bench": "qlora_step", "config": cfg.name, "model": args.model, "device": args.device,
                       "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
            free_memory()
            row["wall_seconds"] = round(time.perf_counter() - t2, 1)
            rows.append(row)
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if row.get("error"):
                print(f"[{cfg.name}] ERROR {row['error']}", flush=True)
            else:
                print(f"[{cfg.name}] {row['seconds_per_step']:.3f} s/step, {row['tokens_per_second']:.0f} tok/s, peak "
                      f"{_fmt(row['peak_memory_allocated_gib'])} GiB, MFU {_fmt(row['mfu'], '.3f')}, "
                      f"{row['wall_seconds']:.0f} s in all", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
