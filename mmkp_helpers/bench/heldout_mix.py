"""A mix fine-tuning never shows: can a rationale use what the base knows where a direct answer cannot?

    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --methods sft fine_tune_cot --free-only \
        --set '{"model_name": "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts", "heldout_mixes": ["green"]}' \
        --tag facts_green --out results/bench/heldout_mix_probe_cpu2.jsonl
    python -m mmkp_helpers.bench.cot_seeds --seeds 0 1 2 3 --methods fine_tune_cot --free-only \
        --set '{"model_name": "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts", "heldout_mixes": ["green"], "reread_share": 0.5}' \
        --tag facts_green_rr50 --out results/bench/heldout_mix_probe_cpu2.jsonl
    (likewise --tag facts_green_unordered with "rationale_style": "unordered" added, and
     facts_green_unordered_rr50 with both, appended to the same file)
    python -m mmkp_helpers.bench.heldout_mix --tags facts_green facts_green_unordered facts_green_unordered_rr50 \
        facts_green_rr50 --mixes green --base "tiny-qwen2_vl?tasks=caption+continue+repeat+list+facts" \
        --out results/bench/heldout_mix_probe_posts_cpu2.json
    python -m mmkp_helpers.bench.heldout_mix --tags default unordered unordered_rr50 --methods fine_tune_cot \
        --readings --out results/bench/composition_readings_cpu2.json

The design of the two-hop studies (Balesni et al. 2024; Allen-Zhu and Li, "Physics of language
models 3.2"): a fact the base learned in pretraining, used in one forward pass, fails where the
same fact written out in a chain of thought succeeds. Here the base is pretrained with the
``facts`` task (:mod:`mmkp_helpers.tiny_base`: "a blue square on the left and a yellow circle on
the right;" -> "blue and yellow make green.", in words, no picture), and the composition posts of
one mix (``heldout_mixes``, green: blue + yellow) are left out of fine-tuning. On the test posts
that need that mix, a direct answer must go from the picture to the colour through a fact it
never used with a picture; a rationale can read the two shapes, write "blue and yellow make" and
let the base finish the fact.

This module reads the sweep's generations (``--work``, ``--tags``) and counts, per method and
seed, on the clean test split's composition posts of the held-out mixes: ``colour_named`` (the
answer holds the post's colour keyphrase), ``reads_both`` (the rationale names both shapes'
primaries, left and right, as the picture has them, or, in the ``unordered`` style, as a set), ``rule_right`` (a rule step "X and Y make Z"
whose Z is the mix of its own X and Y), and the colour keyphrases answered most often; and the
same ``colour_named`` on the other composition posts. ``--readings`` adds how Fine-tune-CoT's
rationales read the two shapes of every composition post whose primaries differ
(:func:`readings`; ``--tags default`` reads the sweep's). With ``--base`` it also records what the
pretrained base writes after the facts prompt and after a rationale's reading (greedy), and with
``--base-captions`` how bases describe the composition posts' pictures with their pretraining
caption prompt (:func:`base_captions`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mmkp_helpers.reading import AS_SET, RULE

#: the two shapes read by side in whole sentences (not the compact "left X, right Y" that
#: :data:`mmkp_helpers.reading.SIDED` also accepts); the set reading and the rule step are reading's
READING = re.compile(r"a (\w+) \w+ on the left and a (\w+) \w+ on the right")


def count_posts(generations: list[dict], examples: dict, mixes: set[str]) -> dict:
    """The counts (module docstring) of one run's generations (dicts of a generations JSONL)."""
    from mmkp_helpers.synthetic import PRIMARIES, mix

    out = {"posts": 0, "colour_named": 0, "reads_both": 0, "rule_right": 0, "other_posts": 0, "other_colour_named": 0}
    answered: Counter = Counter()
    for g in generations:
        truth = examples[g["id"]].meta["truth"]
        if truth["needs"] != "composition":
            continue
        colour_kp = f"{truth['colour']} {truth['topic']}"
        named = colour_kp in g["prediction"]
        if truth["colour"] not in mixes:
            out["other_posts"] += 1
            out["other_colour_named"] += named
            continue
        out["posts"] += 1
        out["colour_named"] += named
        reading, as_set = READING.search(g["raw"]), AS_SET.search(g["raw"])
        out["reads_both"] += ((bool(reading) and list(reading.groups()) == list(truth["primaries"]))
                              or (bool(as_set) and sorted(as_set.groups()) == sorted(truth["primaries"])))
        rule = RULE.search(g["raw"])
        out["rule_right"] += (bool(rule) and rule.group(1) in PRIMARIES and rule.group(2) in PRIMARIES
                              and mix(rule.group(1), rule.group(2)) == rule.group(3))
        answered.update(k for k in g["prediction"] if k.endswith(" " + truth["topic"]) and " " in k)
    out["answered"] = dict(answered.most_common(4))
    return out


def readings(generations: list[dict], examples: dict) -> dict:
    """How the rationales read the two shapes of the composition posts whose primaries differ:
    ``right`` (both colours, each on its side; or the set, in the ``unordered`` style),
    ``swapped`` (the two colours on the wrong sides), ``one_colour_twice`` (one of the two written
    for both shapes), ``other`` and ``no_reading``; and ``by_pair``: (left, right) -> [right, posts]."""
    out = dict.fromkeys(("posts", "right", "swapped", "one_colour_twice", "other", "no_reading"), 0)
    by_pair: dict[str, list[int]] = {}
    for g in generations:
        truth = examples[g["id"]].meta["truth"]
        if truth["needs"] != "composition" or len(set(truth["primaries"])) < 2:
            continue
        left, right = truth["primaries"]
        sided, as_set = READING.search(g["raw"]), AS_SET.search(g["raw"])
        pair = by_pair.setdefault(f"{left}+{right}", [0, 0])
        out["posts"] += 1
        pair[1] += 1
        if not (sided or as_set):
            out["no_reading"] += 1
            continue
        a, b = (sided or as_set).groups()
        if (a, b) == (left, right) or (not sided and {a, b} == {left, right}):
            kind = "right"
        elif (a, b) == (right, left):
            kind = "swapped"
        elif a == b and a in (left, right):
            kind = "one_colour_twice"
        else:
            kind = "other"
        out[kind] += 1
        pair[0] += kind == "right"
    out["by_pair"] = by_pair
    return out


def base_continuations(model_name: str) -> dict[str, str]:
    """What the base writes (greedy, 6 tokens) after the facts prompt and after a rationale's
    reading, for each ordered pair of two primaries."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmkp_helpers import modeling
    from mmkp_helpers.synthetic import PRIMARIES
    from mmkp_helpers.tiny_base import CAPTION_PROMPT, CONTINUE_PROMPT

    model, processor = modeling.load_vlm(modeling.resolve_model(model_name), verbose=False)
    tok = processor.tokenizer
    out = {}
    for a in PRIMARIES:
        for b in PRIMARIES:
            if a == b:
                continue
            reading = f"a {a} square on the left and a {b} circle on the right;"
            for name, user, start in (("facts_prompt", f"{CONTINUE_PROMPT} {reading}", ""),
                                      ("in_answer", CAPTION_PROMPT, f"{reading} {a} and {b} make")):
                messages = [{"role": "user", "content": [{"type": "text", "text": user}]}]
                text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + start
                enc = processor(text=[text], return_tensors="pt")
                with torch.no_grad():
                    ids = model.generate(**enc, max_new_tokens=6, do_sample=False)
                out[f"{name} {a}+{b}"] = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def base_captions(model_name: str, examples: list, max_new_tokens: int = 24) -> dict:
    """How the base (no adapter, float32, greedy) describes the composition posts' pictures when
    asked with its pretraining caption prompt: the counts of :func:`readings` over all of them
    (``posts``, ``right``, ``swapped``, ``one_colour_twice``, ``other``, ``no_reading``), and
    ``same_colour`` / ``same_colour_right`` for the pictures whose two shapes share a primary."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmkp_helpers import modeling
    from mmkp_helpers.collate import load_image
    from mmkp_helpers.tiny_base import CAPTION_PROMPT

    model, processor = modeling.load_vlm(modeling.resolve_model(model_name), verbose=False)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_PROMPT}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    out = dict.fromkeys(("posts", "right", "swapped", "one_colour_twice", "other", "no_reading",
                         "same_colour", "same_colour_right"), 0)
    for ex in examples:
        truth = ex.meta["truth"]
        if truth["needs"] != "composition":
            continue
        enc = processor(text=[prompt], images=[load_image(ex.image)], return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        text = processor.tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        left, right = truth["primaries"]
        sided = READING.search(text)
        if left == right:
            out["same_colour"] += 1
            out["same_colour_right"] += bool(sided) and sided.groups() == (left, right)
            continue
        out["posts"] += 1
        if not sided:
            out["no_reading"] += 1
            continue
        a, b = sided.groups()
        kind = ("right" if (a, b) == (left, right) else "swapped" if (a, b) == (right, left)
                else "one_colour_twice" if a == b and a in (left, right) else "other")
        out[kind] += 1
    return out


def sweep_generations(work, tags, methods, seeds):
    """``(method, tag, seed, generations)`` for each run of ``bench.cot_seeds`` under ``work`` that
    has free-decoding generations (dicts of its ``generations-free.jsonl``; a Dynamic CoT run's
    ``generations-auto.jsonl``, its own decision); missing runs are skipped."""
    for tag in tags:
        for method in methods:
            for seed in seeds:
                folder = Path(work) / f"{method}-{tag}-{seed}"
                path = next((f for f in (folder / "generations-free.jsonl", folder / "generations-auto.jsonl")
                             if f.is_file()), folder / "generations-free.jsonl")
                if path.is_file():
                    yield method, tag, seed, [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep_reader(doc: str, methods: list[str], argv: list[str] | None = None):
    """The command line of a bench that reads a sweep's generations (``--tags --seeds --methods
    --work --results-dir --out``): ``(args, examples)``, the clean test split's posts by id."""
    from mmkp_helpers import data, overlap

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--tags", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=methods)
    parser.add_argument("--work", default=".cache/cot_seeds")
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    splits = overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False)["clean"]
    return args, {ex.id: ex for ex in data.read_jsonl(splits["test"])}


def emit(report: dict, out: str = "") -> int:
    """Print ``report`` as JSON and, given ``out``, write it there; 0 (a CLI's exit status)."""
    text = json.dumps(report, indent=1)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", nargs="+", required=True)
    parser.add_argument("--mixes", nargs="+", default=[], help="the held-out mixes' colours")
    parser.add_argument("--readings", action="store_true", help="also how Fine-tune-CoT's rationales read the "
                                                                "two shapes of every composition post")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=["sft", "fine_tune_cot"])
    parser.add_argument("--work", default=".cache/cot_seeds")
    parser.add_argument("--results-dir", default="results/tiny")
    parser.add_argument("--base", default="", help="a base model name whose continuations to record")
    parser.add_argument("--base-captions", nargs="+", default=[], help="base model names whose captions of the "
                                                                       "composition posts' pictures to count")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    from mmkp_helpers import data, overlap

    splits = overlap.prepare_splits("synthetic", args.results_dir, seed=0, verbose=False)["clean"]
    examples = {ex.id: ex for ex in data.read_jsonl(splits["test"])}
    report = {"bench": "heldout_mix", "mixes": args.mixes, "runs": {}}
    for method, tag, seed, gens in sweep_generations(args.work, args.tags, args.methods, args.seeds):
        if args.mixes:
            report["runs"][f"{method} {tag} {seed}"] = count_posts(gens, examples, set(args.mixes))
        if args.readings and method != "sft":
            report.setdefault("readings", {})[f"{method} {tag} {seed}"] = readings(gens, examples)
    if args.base:
        report["base"] = {"model_name": args.base, "continuations": base_continuations(args.base)}
    for name in args.base_captions:
        report.setdefault("base_captions", {})[name] = base_captions(name, list(examples.values()))
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
