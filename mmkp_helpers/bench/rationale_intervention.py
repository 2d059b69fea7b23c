"""Does the answer follow the rationale? An intervention on the Fine-tune-CoT student's own reading.

    python -m mmkp_helpers.bench.rationale_intervention --seeds 0 1 2 3 --tag default \
        --out results/bench/rationale_intervention_cpu2.json
    python -m mmkp_helpers.bench.rationale_intervention --seeds 0 1 2 3 --tag rr50 \
        --out results/bench/rationale_intervention_cpu2.json

(``rr50``: the sweep's Fine-tune-CoT trained with evidence counterfactuals for half the posts,
``bench.cot_seeds --methods fine_tune_cot --free-only --set '{"reread_share": 0.5}' --tag rr50``.)

A well-formed rationale (:mod:`mmkp_helpers.rationale`) says the answer *agrees* with what the
rationale concluded; it cannot say that the rationale *made* the answer: a student that reads the
colour off the picture directly can write a reading, a rule and a conclusion beside it and still
agree. This bench asks the causal question (the "adding mistakes" test of Lanham et al. 2023,
"Measuring faithfulness in chain-of-thought reasoning"). On the clean test split's posts with
shapes (image and composition posts), the assistant turn is prefilled with the oracle teacher's
rationale up to the end of its reading of the picture, and the student continues it:

- ``true``: the true reading (:meth:`~mmkp_helpers.teacher.oracle.OracleTeacher.opening`);
- ``changed``: the same opening with the picture read differently (another colour for an image
  post's shape; for a composition post another pair of primaries whose mix is another colour,
  :meth:`~mmkp_helpers.teacher.oracle.OracleTeacher.reread`, drawn from a hash of the post's id).

Counted per kind of post (``needs``) and for the held-out colour x object pairs (``heldout``):
``concludes_reading`` (the rationale the student finishes concludes the colour keyphrase the
written reading implies), ``answer_reading`` (the answer after ``</think>`` holds it) and
``answer_picture`` (the answer holds the post's true colour keyphrase). Under ``changed``, a
student that uses its rationale answers the reading; one that ignores it answers the picture.
The adapters are the sweep's (``bench.cot_seeds``, ``--work`` and ``--tag``), so the figures
belong to the runs behind notebook 04's verdict; nothing is trained here.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from mmkp_helpers.bench import adapter_probe_parser, save_tag_runs

CONDITIONS = ("true", "changed")
COUNTS = ("posts", "concludes_reading", "answer_reading", "answer_picture")


def colour_keyphrase(example) -> str:
    """The post's colour + object keyphrase (``"purple car"``), from its ground truth."""
    truth = example.meta["truth"]
    return f"{truth['colour']} {truth['topic']}"


def interventions(examples, teacher, seed: int = 0) -> dict[str, dict[str, tuple[str, str]]]:
    """``{condition: {id: (prefill, colour keyphrase the written reading implies)}}`` for the
    posts with shapes (the others are left out: there is nothing to read)."""
    from mmkp_helpers.prompts import THINK_OPEN

    out: dict[str, dict[str, tuple[str, str]]] = {c: {} for c in CONDITIONS}
    for ex in examples:
        changed = teacher.reread(ex, seed)
        if changed is None:
            continue
        _, keyphrases, context = changed
        implied = next(k for k in keyphrases if k.endswith(" " + ex.meta["truth"]["topic"]) and " " in k)
        out["true"][ex.id] = (THINK_OPEN + teacher.opening(ex), colour_keyphrase(ex))
        out["changed"][ex.id] = (THINK_OPEN + context, implied)
    return out


def text_interventions(examples, teacher, seed: int = 0) -> dict[str, tuple[str, str]]:
    """``{id: (prefill, topic the written reading implies)}`` for the text posts (a text post has no
    picture to reread, so its reading of the *text* is changed): the oracle's rationale up to the
    end of its reading of the text ("the text names a hat and a trip"; compact: "text: hat"), with
    the post's topic replaced by another topic that its text does not hold (drawn from a hash of
    ``seed`` and the id). The text still names the true topic: a student that reasons from what it
    wrote answers the written topic, one that copies the text answers the true one."""
    import hashlib
    from dataclasses import replace

    from mmkp_helpers.prompts import THINK_OPEN
    from mmkp_helpers.synthetic import TOPICS, keyphrases_of
    from mmkp_helpers.teacher.oracle import OracleTeacher

    writer = OracleTeacher(style=teacher.style)
    compact = teacher.style == "compact"
    out = {}
    for ex in examples:
        truth = dict(ex.meta.get("truth") or {})
        if truth.get("needs") != "text" or not truth.get("topic"):
            continue
        words = set(re.findall(r"[a-z]+", ex.text.lower()))
        others = [t for t in TOPICS if t != truth["topic"] and t not in words]
        digest = hashlib.sha256(f"text-reread:{seed}:{ex.id}".encode()).digest()
        topic = others[int.from_bytes(digest[:8], "big") % len(others)]
        truth["topic"] = topic
        keyphrases, kinds, cues = keyphrases_of(truth)
        changed = replace(ex, keyphrases=keyphrases, meta=dict(ex.meta, truth=truth, kinds=kinds, cues=cues))
        rationale, _, _ = writer.rationale_and_keyphrases(changed)
        start = rationale.find("text: " if compact else "the text names ")
        if start < 0:
            raise AssertionError(f"{ex.id}: no reading of the text in its rationale {rationale!r}")
        end = start + len("text: ") + len(topic) if compact else rationale.index(": ", start)
        out[ex.id] = (THINK_OPEN + rationale[:end], topic)
    return out


def hits(example, generation, implied: str) -> dict[str, bool]:
    """One post's flags: ``concludes_reading``, ``answer_reading`` and ``answer_picture`` (see the
    module docstring) of the student's continuation ``generation`` of a prefill whose reading
    implies the colour keyphrase ``implied``."""
    from mmkp_helpers.rationale import conclusions

    concluded = conclusions(generation.reasoning or "") or []
    answer = [k.lower() for k in generation.keyphrases]
    return {"concludes_reading": implied in concluded, "answer_reading": implied in answer,
            "answer_picture": colour_keyphrase(example) in answer}


def follows(examples, generations, planned: dict[str, tuple[str, str]]) -> dict[str, bool]:
    """Per post of ``planned`` (one condition of :func:`interventions`, or :func:`text_interventions`):
    does the answer of the student's continuation hold the keyphrase its written reading implies?"""
    by_id = {g.id: g for g in generations}
    return {ex.id: planned[ex.id][1] in [k.lower() for k in by_id[ex.id].keyphrases]
            for ex in examples if ex.id in planned}


def changed_reading(model, processor, examples, teacher, max_new_tokens: int, prompt_keyphrases: int,
                    batch_size: int = 64) -> tuple[dict[str, bool], list]:
    """The ``changed`` condition on a loaded student, for one run (notebook 04's own model):
    ``({id: answer follows the changed reading}, continuations)`` for the posts of ``examples``
    with something to read: the picture of a post with shapes (:func:`interventions`), the text
    of a text post (:func:`text_interventions`). ``teacher``: the oracle, in the style the student
    was trained on."""
    from mmkp_helpers import inference

    plan = interventions(examples, teacher)["changed"] | text_interventions(examples, teacher)
    shaped = [ex for ex in examples if ex.id in plan]
    gens = inference.generate(model, processor, shaped, "direct", batch_size=batch_size, max_new_tokens=max_new_tokens,
                              prompt_keyphrases=prompt_keyphrases, progress=False,
                              prefills={i: text for i, (text, _) in plan.items()})
    return follows(shaped, gens, plan), gens


def tally(examples, generations, planned: dict[str, tuple[str, str]]) -> dict[str, dict[str, int]]:
    """The counts (:data:`COUNTS`) per group of posts: ``all``, ``needs:<kind>``, ``heldout``."""
    by_id = {g.id: g for g in generations}
    groups: dict[str, dict[str, int]] = {}
    for ex in examples:
        if ex.id not in planned:
            continue
        flags = {"posts": True, **hits(ex, by_id[ex.id], planned[ex.id][1])}
        names = ["all", f"needs:{ex.meta['needs']}"] + (["heldout"] if ex.meta.get("heldout") else [])
        for name in names:
            group = groups.setdefault(name, dict.fromkeys(COUNTS, 0))
            for k, v in flags.items():
                group[k] += int(v)
    return groups


def run_seed(seed: int, work: str, tag: str, results_dir: str, max_new_tokens: int | None = None,
             batch_size: int = 64, style: str | None = None, model_name: str | None = None) -> dict:
    """Both conditions on one seed's Fine-tune-CoT adapter: counts and three raw generations each."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmkp_helpers import data, experiment, inference, modeling, overlap, training
    from mmkp_helpers.teacher.oracle import OracleTeacher

    adapter = Path(work) / f"fine_tune_cot-{tag}-{seed}" / "adapter"
    if not adapter.exists():
        raise FileNotFoundError(f"{adapter} is missing: run python -m mmkp_helpers.bench.cot_seeds --seeds {seed} "
                                f"--methods fine_tune_cot --tag {tag} --work {work} first")
    p = experiment.notebook_parameters("04_fine_tune_cot")
    splits = overlap.prepare_splits("synthetic", results_dir, seed=0, verbose=False)["clean"]
    test = data.read_jsonl(splits["test"])
    style = style or p["rationale_style"]  # the style the adapter was trained on (the notebooks': verbose)
    model_name = model_name or p["model_name"]  # the base the adapter was trained on
    teacher = OracleTeacher(style=style)
    plan = interventions(test, teacher)
    shaped = [ex for ex in test if ex.id in plan["true"]]
    model, processor = training.load_adapter(str(adapter), base=modeling.resolve_model(model_name),
                                             quantize_4bit=p["quantize_4bit"], min_pixels=p["min_pixels"],
                                             max_pixels=p["max_pixels"])
    row = {"seed": seed, "tag": tag, "model_name": model_name, "rationale_style": style,
           "max_new_tokens": max_new_tokens or p["max_new_tokens_cot"]}
    for condition in CONDITIONS:
        prefills = {i: text for i, (text, _) in plan[condition].items()}
        gens = inference.generate(model, processor, shaped, "direct", batch_size=batch_size,
                                  max_new_tokens=row["max_new_tokens"], prompt_keyphrases=p["prompt_keyphrases"],
                                  progress=False, prefills=prefills)
        implied = {i: kp for i, (_, kp) in plan[condition].items()}
        row[condition] = tally(shaped, gens, plan[condition])
        row[f"{condition}_examples"] = [{"id": g.id, "raw": g.raw, "reading_implies": implied[g.id],
                                         "picture": colour_keyphrase(ex)}
                                        for ex, g in zip(shaped, gens) if ex.meta["needs"] == "composition"][:3]
    return row


def shares(rows: list[dict], condition: str, group: str, count: str) -> list[float]:
    """Per seed, ``count`` / posts in ``group`` under ``condition``."""
    return [r[condition][group][count] / r[condition][group]["posts"] for r in rows]


def summarize(path) -> dict:
    """A committed report as shares: ``{tag: {condition: {group: {count: {"mean", "min", "max"}}}}}``
    over the seeds (each seed's ``count`` / ``posts`` of the group), plus ``seeds`` per tag."""
    report = json.loads(Path(path).read_text())
    out = {}
    for tag, rows in report["runs"].items():
        out[tag] = {"seeds": len(rows)}
        for condition in CONDITIONS:
            groups = sorted(set.intersection(*(set(r[condition]) for r in rows)))
            out[tag][condition] = {g: {k: {"mean": sum(v) / len(v), "min": min(v), "max": max(v)}
                                       for k in COUNTS[1:] for v in [shares(rows, condition, g, k)]}
                                   for g in groups}
    return out


def main(argv: list[str] | None = None) -> int:
    def style_and_model(parser):
        parser.add_argument("--style", default=None, help="the rationale style the adapters were trained on "
                                                          "(default: the notebooks')")
        parser.add_argument("--model", default=None, help="the base model the adapters were trained on "
                                                          "(default: the notebooks')")

    args = adapter_probe_parser(__doc__.split("\n\n")[0], "the sweep's tag whose Fine-tune-CoT adapters to probe",
                                style_and_model).parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [run_seed(s, args.work, args.tag, args.results_dir, style=args.style, model_name=args.model)
            for s in args.seeds]
    if args.out:
        save_tag_runs(args.out, "rationale_intervention", args.tag, rows, args.threads)
    print(json.dumps({c: {k: [round(x, 3) for x in shares(rows, c, "needs:composition", k)]
                          for k in COUNTS[1:]} for c in CONDITIONS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
