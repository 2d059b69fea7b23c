"""Does the pretrained tiny base tell a circle from a square? Its captions of the test pictures.

    python -m mmkp_helpers.bench.base_shapes --out results/bench/base_shapes_cpu2.json

The Fine-tune-CoT student names a shape in every image post's rationale, but the shape it names
does not follow the picture (:func:`mmkp_helpers.bench.cot_seeds.per_post`'s ``first_shape``). No
keyphrase depends on a shape, so fine-tuning never asks for one; the base's ``caption`` task does
("a green circle in the centre, on a teal background."). This captions the clean test split's
image and composition posts with the base alone (no adapter, float32, greedy, the notebooks'
``min_pixels``/``max_pixels``) and counts, per kind of post and place (0: the centre or the left,
1: the right), the shape the picture has against the shape the caption names there, as
``{"<needs> <place> <true>": {"<named>": posts}}``; plus ``colour_right``, the captions whose first
shape's colour is the picture's, and ``exact``, captions equal to the drawing's own
(:func:`mmkp_helpers.synthetic.caption`).
"""
from __future__ import annotations

import argparse
from collections import Counter

from mmkp_helpers.bench import emit_json


def confusion(captions: dict[str, str], examples) -> dict:
    """``captions``: post id -> what the base said; ``examples``: the posts (with ``meta["truth"]``).
    The counts described in the module docstring (pure: no model)."""
    from mmkp_helpers.synthetic import caption
    from mmkp_helpers.teacher.oracle import SHAPE_READ

    counts: dict[str, Counter] = {}
    exact = colour_right = posts = 0
    for ex in examples:
        said, truth = captions[ex.id], ex.meta["truth"]
        true = truth.get("shapes") or []
        named = SHAPE_READ.findall(said.lower())
        posts += 1
        exact += said == caption(truth)
        painted = truth["colour"] if ex.meta["needs"] == "image" else (truth.get("primaries") or [None])[0]
        colour_right += bool(named) and named[0][0] == painted
        for place, (_, shape, _) in enumerate(named[:len(true)]):
            counts.setdefault(f"{ex.meta['needs']} {place} {true[place]}", Counter())[shape] += 1
    return {"posts": posts, "exact": exact, "colour_right": colour_right,
            "shapes": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}}


def measure(model_name: str = "tiny-qwen2_vl", results_dir: str = "results/tiny", min_pixels: int = 3136,
            max_pixels: int = 12544, max_new_tokens: int = 30) -> dict:
    import torch
    from PIL import Image

    from mmkp_helpers import data, modeling, overlap, tiny_base

    path = modeling.resolve_model(model_name, seed=0)
    model, processor = modeling.load_vlm(path, verbose=False, min_pixels=min_pixels, max_pixels=max_pixels)
    test = data.read_jsonl(overlap.prepare_splits("synthetic", results_dir, seed=0, verbose=False)["clean"]["test"])
    posts = [ex for ex in test if ex.meta.get("needs") in ("image", "composition")]
    prompt = processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": tiny_base.CAPTION_PROMPT}]}], add_generation_prompt=True)
    captions = {}
    for ex in posts:
        enc = processor(text=[prompt], images=[Image.open(ex.image).convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = out[0, enc["input_ids"].shape[1]:]
        captions[ex.id] = processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    return {"bench": "base_shapes", "model": model_name, "min_pixels": min_pixels, "max_pixels": max_pixels,
            **confusion(captions, posts), "first_captions": [captions[ex.id] for ex in posts[:4]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen2_vl")
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    return emit_json(measure(args.model, args.results_dir), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
