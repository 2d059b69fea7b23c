"""How long the ``paper-qwen2vl-2b`` profile takes on a GPU, from measured step and generation times.

    python -m mmkp_helpers.bench.paper_estimate --train QLORA.jsonl --generate GEN.json [...] [--out FILE.json]
    python -m mmkp_helpers.bench.paper_estimate --prompt-lengths --from-rate 2209   # no GPU at hand

Without measurements on the GPU at hand, ``--prompt-lengths`` measures CMKP's direct-prompt
lengths (the user text with the Qwen tokenizer, over the public test posts) and ``--from-rate``
turns a measured training rate (tokens per second) into hours for the profile's epochs, with the
image at ``min_pixels`` (256 tokens) and at ``max_pixels`` (1,024): tokens per post = mean user
text + ``--overhead`` (chat template and answer) + image tokens.

The inputs are measurements on the GPU at hand (``tools/device_gpu_checks.sh`` makes them on a lent
H200): ``bench.qlora_step`` records (seconds per training step of a batch of sequences as long as
a CMKP post with its image at the profile's pixel budget; a ``direct`` and a ``cot`` answer) and
``bench.batch_generation`` reports (seconds per example at the profile's generation batch, for a
direct answer's and a reasoning answer's token limit). The model has random weights (the hub is
unreachable where it was measured), so every generation runs to its token limit: generation
times are upper bounds; a trained model stops after its answer.

What is counted (the profile's settings, :data:`PROFILE`): SFT = epochs x training posts
sequences at the direct answer's step time; Fine-tune-CoT = the same with CoT answers; the test
set generated once per method (direct: 64 new tokens; CoT: 512); the notebooks' other work
(data preparation, zero-shot on the test set, Dynamic CoT's variants) is listed separately.
The figures are for the GPU measured; another GPU is estimated by the ratio of dense bf16 peak
rates (``--scale-to NAME``: an approximation for compute-bound steps, stated as such).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The paper profile (profiles/paper-qwen2vl-2b.yaml) on CMKP's official split.
PROFILE = {"train_posts": 42_959, "test_posts": 5_372, "valid_posts": 5_370, "epochs": 3.0,
           "posts_per_optimizer_step": 16, "max_new_tokens": 64, "max_new_tokens_cot": 512}
# Dense bf16 peak TFLOPS (vendor data sheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.2,
               "A10": 125.0, "L4": 121.0, "RTX 3090": 71.0}


def _per_sequence(records: list[dict], answer: str) -> dict | None:
    rows = [r for r in records if r.get("answer") == answer and not r.get("error") and r.get("seconds_per_step")]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["seconds_per_step"] / r["batch"])
    return {"config": best["config"], "seconds_per_sequence": best["seconds_per_step"] / best["batch"],
            "seq_len_mean": best.get("seq_len_mean"), "image_tokens": best.get("image_tokens"),
            "peak_memory_allocated_gib": best.get("peak_memory_allocated_gib"), "batch": best["batch"]}


def _per_example(reports: list[dict], max_new_tokens: int) -> dict | None:
    rows = [r for r in reports if r.get("max_new_tokens") == max_new_tokens]
    if not rows:
        return None
    r = rows[0]
    bs = max(r["batch_sizes"], key=int)
    return {"batch_size": int(bs), "seconds_per_example": r["batch_sizes"][bs]["seconds_per_example"],
            "peak_memory_gib": r.get("peak_memory_gib")}


def estimate(train_records: list[dict], gen_reports: list[dict], profile: dict = PROFILE) -> dict:
    sequences = profile["epochs"] * profile["train_posts"]
    out: dict = {"profile": dict(profile), "train": {}, "generate": {}, "hours": {}}
    for answer in ("direct", "cot"):
        step = _per_sequence(train_records, answer)
        if step:
            out["train"][answer] = step
            out["hours"][f"train_{answer}"] = sequences * step["seconds_per_sequence"] / 3600
    for name, tokens in (("direct", profile["max_new_tokens"]), ("cot", profile["max_new_tokens_cot"])):
        gen = _per_example(gen_reports, tokens)
        if gen:
            out["generate"][name] = gen
            out["hours"][f"test_generate_{name}"] = profile["test_posts"] * gen["seconds_per_example"] / 3600
    h = out["hours"]
    if {"train_direct", "test_generate_direct"} <= h.keys():
        h["sft_run"] = h["train_direct"] + h["test_generate_direct"]
    if {"train_cot", "test_generate_cot"} <= h.keys():
        h["fine_tune_cot_run"] = h["train_cot"] + h["test_generate_cot"]
    return out


def prompt_lengths() -> dict:
    """CMKP's direct-prompt user text in Qwen tokens over the public test posts: mean, p99, max."""
    import statistics

    from mmkp_helpers import cmkp, data, modeling, prompts

    examples = data.load_cmkp(cmkp.cmkp_dir() / "tw_mm_s1", "test")
    tok = modeling.build_qwen_tokenizer()
    template = prompts.get_template("direct")
    lengths = sorted(len(tok(template.user_text(e, max_keyphrases=5))["input_ids"]) for e in examples)
    return {"posts": len(lengths), "mean": statistics.fmean(lengths), "p99": lengths[int(0.99 * len(lengths))],
            "max": lengths[-1]}


def from_rate(tokens_per_s: float, text_tokens: float, overhead: int = 30, image_tokens=(256, 1024),
              profile: dict = PROFILE) -> dict:
    """Hours of the profile's SFT at a measured training rate, per image budget."""
    sequences = profile["epochs"] * profile["train_posts"]
    out = {}
    for img in image_tokens:
        per_post = text_tokens + overhead + img
        out[str(img)] = {"tokens_per_post": per_post, "tokens": sequences * per_post,
                         "hours": sequences * per_post / tokens_per_s / 3600}
    return out


def scaled(est: dict, measured_on: str, target: str) -> dict:
    ratio = PEAK_TFLOPS[measured_on] / PEAK_TFLOPS[target]
    return {k: v * ratio for k, v in est["hours"].items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", nargs="+", default=[], help="bench.qlora_step JSONL files")
    parser.add_argument("--generate", nargs="+", default=[], help="bench.batch_generation JSON reports")
    parser.add_argument("--measured-on", default="H200", choices=sorted(PEAK_TFLOPS))
    parser.add_argument("--scale-to", nargs="*", default=["RTX 4090", "A10", "L4"], choices=sorted(PEAK_TFLOPS))
    parser.add_argument("--out", default=None)
    parser.add_argument("--prompt-lengths", action="store_true", help="measure CMKP's prompt lengths (no GPU needed)")
    parser.add_argument("--from-rate", type=float, default=None, help="training tokens per second measured elsewhere")
    parser.add_argument("--overhead", type=int, default=30, help="chat template + answer tokens per post")
    args = parser.parse_args(argv)
    if args.prompt_lengths or args.from_rate:
        lengths = prompt_lengths()
        report = {"prompt_lengths": lengths}
        if args.from_rate:
            report["from_rate"] = {"tokens_per_s": args.from_rate,
                                   "by_image_tokens": from_rate(args.from_rate, lengths["mean"], args.overhead)}
        print(json.dumps(report, indent=2))
        return 0
    train = [json.loads(line) for f in args.train for line in Path(f).read_text().splitlines() if line.strip()]
    gens = [json.loads(Path(f).read_text()) for f in args.generate]
    est = estimate(train, gens)
    est["measured_on"] = args.measured_on
    est["scaled_hours"] = {t: scaled(est, args.measured_on, t) for t in args.scale_to}
    text = json.dumps(est, indent=2)
    print(text)
    for k, v in est["hours"].items():
        print(f"{k:>22}: {v:6.2f} h on {args.measured_on}" + "".join(
            f" | {est['scaled_hours'][t][k]:6.1f} h {t}" for t in args.scale_to), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
