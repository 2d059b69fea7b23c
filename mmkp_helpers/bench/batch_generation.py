"""Batched vs one-by-one generation speed, per example.

    python -m mmkp_helpers.bench.batch_generation [--model tiny-qwen2_vl] [--n 32]
        [--batch-sizes 1 8] [--max-new-tokens 16] [--repeats 3] [--quantize-4bit]
        [--require-speedup 3] [--min-pixels P --max-pixels P] [--text-words W] [--out FILE.json]

Generates for ``--n`` posts, each with an image (solid colours of a few sizes, so prompts have
different lengths and batches need left padding), with :func:`mmkp_helpers.inference.generate`
at each batch size. ``min_new_tokens = max_new_tokens`` makes every row generate the same number
of tokens, so the batch sizes do the same work. After a warm-up batch of each size, the sizes
run in turn ``--repeats`` times (interleaved, so machine noise hits all); the fastest run counts.
Prints JSON: seconds per example and generated tokens per second for each batch size, and the
speed-up of the largest batch over the smallest (per example).
With ``--require-speedup X`` the exit status is 1 when that speed-up is below X.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_examples(folder: Path, n: int, text_words: int = 0):
    """``n`` posts with images of four sizes and texts of varied length (``text_words`` > 0: about
    that many words each, as a real post)."""
    from PIL import Image

    from mmkp_helpers.data import Example

    sizes = [(56, 56), (84, 56), (112, 84), (112, 112)]
    out = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.new("RGB", sizes[i % 4], ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(path)
        words = text_words + (i % 5) - 2 if text_words else 2 * (1 + i % 5)
        text = " ".join((["post", "text", "about", "the", "game", "tonight"] * words)[:max(1, words)])
        out.append(Example(f"b{i}", text, ["kp"], image=str(path)))
    return out


def run(model_name: str = "tiny-qwen2_vl", n: int = 32, batch_sizes=(1, 8), max_new_tokens: int = 16,
        repeats: int = 3, quantize_4bit: bool = False, min_pixels: int | None = None,
        max_pixels: int | None = None, text_words: int = 0) -> dict:
    import torch

    from mmkp_helpers.inference import generate
    from mmkp_helpers.modeling import device_info, load_vlm, resolve_model

    path = resolve_model(model_name)
    model, processor = load_vlm(path, quantize_4bit=quantize_4bit, min_pixels=min_pixels, max_pixels=max_pixels,
                                verbose=False)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        examples = make_examples(Path(tmp), n, text_words)
        common = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, progress=False)
        for bs in batch_sizes:  # warm-up: one batch of each size
            generate(model, processor, examples[:bs], batch_size=bs, **common)
        times: dict[int, list[float]] = {bs: [] for bs in batch_sizes}
        for _ in range(repeats):  # interleaved, so that a busy moment of the machine hits every size
            for bs in batch_sizes:
                tic = time.perf_counter()
                gens = generate(model, processor, examples, batch_size=bs, **common)
                times[bs].append(time.perf_counter() - tic)
                assert all(g.n_tokens == max_new_tokens for g in gens), "rows generated unequal lengths"
        for bs in batch_sizes:
            best = min(times[bs])
            results[str(bs)] = {"seconds_per_example": best / n, "total_s": best,
                                "generated_tokens_per_s": n * max_new_tokens / best,
                                "runs_s": [round(t, 4) for t in times[bs]]}
    small, large = str(min(batch_sizes)), str(max(batch_sizes))
    speedup = results[small]["seconds_per_example"] / results[large]["seconds_per_example"]
    return {"benchmark": "batch_generation", "model": model_name, "quantize_4bit": quantize_4bit,
            "n_examples": n, "max_new_tokens": max_new_tokens, "repeats": repeats,
            "min_pixels": min_pixels, "max_pixels": max_pixels, "text_words": text_words,
            "peak_memory_gib": (torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else None,
            "device": device_info(), "torch_threads": torch.get_num_threads(),
            "batch_sizes": results, "speedup": {f"batch{large}_vs_batch{small}": speedup}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-qwen2_vl", help="tiny-<family>, a hub id or a local folder")
    parser.add_argument("--n", type=int, default=32, help="number of examples")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantize-4bit", action="store_true")
    parser.add_argument("--min-pixels", type=int, default=None, help="the processor's min_pixels (image tokens x 784)")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--text-words", type=int, default=0, help="words per post text (0: a few)")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    parser.add_argument("--require-speedup", type=float, default=None,
                        help="exit 1 when the largest batch is not this many times faster per example")
    args = parser.parse_args(argv)
    report = run(args.model, args.n, tuple(sorted(set(args.batch_sizes))), args.max_new_tokens, args.repeats,
                 args.quantize_4bit, args.min_pixels, args.max_pixels, args.text_words)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.require_speedup is not None:
        got = next(iter(report["speedup"].values()))
        if got < args.require_speedup:
            print(f"speed-up {got:.2f} is below the required {args.require_speedup}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
