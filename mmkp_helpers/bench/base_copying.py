"""Does the tiny base copy, and does 4-bit quantization cost it that? Its own pretraining tasks, on
posts it never saw, in float32 and in NF4.

    python -m mmkp_helpers.bench.base_copying --out results/bench/base_copying_cpu2.json

A Fine-tune-CoT student's answer must read keyphrases back from its own rationale (an answer that
does not is *inconsistent*, :mod:`mmkp_helpers.rationale`), and its rationale reads words from the
post. Both are copying, which the tiny base learned in pretraining (:mod:`mmkp_helpers.tiny_base`,
tasks ``repeat``: "Repeat the post: <text>" -> the text, and ``list``: describe the picture, then
list the colours named). This measures the base (no adapter) on those two tasks for posts of
another pretraining seed (``--seed``; the base was pretrained on seed 0's), greedy: the share of
answers equal to the target (``exact``), loaded as the notebooks load it, in float32 and in NF4
(QLoRA's frozen base), and prints the first mismatches. For ``list`` it also counts
``follows_itself``: the colour list names exactly the colours of the model's *own* description
(right or wrong), the analogue of an answer consistent with its rationale.
"""
from __future__ import annotations

import argparse
import os
import time

from mmkp_helpers.bench import emit_json


def _colours(text: str) -> list[str]:
    from mmkp_helpers.synthetic import COLOURS

    words = text.replace(",", " ").replace(".", " ").split()
    named, i = [], 0
    while i < len(words):
        if words[i] == "dark" and i + 1 < len(words):
            named.append("dark " + words[i + 1])
            i += 2
            continue
        if words[i] in COLOURS or words[i] in ("grey", "white", "black", "beige", "teal"):
            named.append(words[i])
        i += 1
    return list(dict.fromkeys(named))


def follows_itself(generated: str) -> bool:
    """Whether a ``list`` answer's colour list (after ``colours:``) names exactly, in order, the
    colours its own description named (whether or not the description is right)."""
    description, sep, listed = generated.rpartition("colours:")
    return bool(sep) and _colours(description) == [c.strip() for c in listed.strip().rstrip(".").split(",") if c.strip()]


def measure(model_name: str = "tiny-qwen2_vl", posts: int = 400, seed: int = 7, max_new_tokens: int = 60,
            min_pixels: int = 3136, max_pixels: int = 12544, show: int = 8, max_turns: int | None = None) -> dict:
    """Per loading (``float32``, ``nf4``) and task: ``{"exact": n, "turns": n, "share": x}``, plus
    up to ``show`` mismatches (target, generation) per loading; ``max_turns``: the first that many
    repeat and list turns only (None: all of them, half the posts)."""
    import torch

    from mmkp_helpers import modeling, tiny_base
    from mmkp_helpers.synthetic import render_image

    prompts = {tiny_base.REPEAT_PROMPT: "repeat", tiny_base.LIST_PROMPT: "list"}
    turns = [t for t in tiny_base.pretraining_turns(posts, seed=seed) if t["user"].startswith(tuple(prompts))][:max_turns]
    path = modeling.resolve_model(model_name)
    out: dict = {"model_name": model_name, "posts": posts, "seed": seed, "turns": len(turns)}
    for name, quantize in (("float32", False), ("nf4", True)):
        model, processor = modeling.load_vlm(path, quantize_4bit=quantize, verbose=False, min_pixels=min_pixels,
                                             max_pixels=max_pixels)
        model.eval()
        counts: dict = {}
        mismatches = []
        t0 = time.perf_counter()
        for t in turns:
            task = next(v for k, v in prompts.items() if t["user"].startswith(k))
            content = ([{"type": "image"}] if t["image"] else []) + [{"type": "text", "text": t["user"]}]
            text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True)
            enc = processor(text=[text], images=[render_image(t["image"])] if t["image"] else None, return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            generated = processor.tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
            c = counts.setdefault(task, {"exact": 0, "turns": 0} | ({"follows_itself": 0} if task == "list" else {}))
            c["exact"] += generated == t["answer"].strip()
            if task == "list":
                c["follows_itself"] += follows_itself(generated)
            c["turns"] += 1
            if generated != t["answer"].strip() and len(mismatches) < show:
                mismatches.append({"task": task, "target": t["answer"].strip(), "generated": generated})
        for c in counts.values():
            c["share"] = round(c["exact"] / c["turns"], 4)
            if "follows_itself" in c:
                c["follows_itself_share"] = round(c["follows_itself"] / c["turns"], 4)
        out[name] = {"tasks": counts, "mismatches": mismatches, "seconds": round(time.perf_counter() - t0, 1)}
        del model
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="tiny-qwen2_vl")
    parser.add_argument("--posts", type=int, default=400, help="pretraining posts drawn (a quarter are repeat, a quarter list)")
    parser.add_argument("--seed", type=int, default=7, help="the posts' pretraining seed (the base's own is 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    result = measure(args.model_name, args.posts, args.seed)
    return emit_json(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
