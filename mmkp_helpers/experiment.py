"""The steps notebooks 04-06 and the seed sweeps share: train a run, decode it, score it, record it.

Each function is a few calls into the rooms below it (modeling, collate, training, inference,
results); they exist so that a notebook's cells read as the method, and so that a notebook, a
benchmark and a test train and score a method the same way.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from . import collate, inference, modeling, rationale, results, training
from .data import Example
from .paths import project_root

RATIONALES_FILE = "rationales.json"
#: SFT settings that do not change what a run learns (logging, validation, checkpoints, progress bars)
#: or that are not part of the recipe (the loss implementation, the prompt compared separately).
IGNORED_SETTINGS = ("progress", "fused_loss", "prompt", "logging_steps", "eval_steps", "save_steps",
                    "save_total_limit", "eval_batch_size")


def rel(path: str | os.PathLike) -> str:
    """A path as shown to readers: relative to the project root when it lies inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def train_run(model_path: str, train: Sequence[Example], valid: Sequence[Example] | None,
              settings: training.SFTSettings, lora: dict, output_dir: str | os.PathLike,
              rationales: dict[str, str] | None = None, default_form: str | None = None,
              forms: collate.TargetForms | None = None, ledger: training.LossLedger | None = None,
              callbacks: Iterable = (), seed: int = 0, verbose: bool = True, **load_kwargs):
    """A fresh base model with the seed's adapter initialisation, trained with :func:`training.train_sft`.

    ``rationales`` (id -> rationale) gives records CoT targets; ``default_form`` ("direct" or
    "cot"; default: "cot" when there are rationales) is the form of every record unless ``forms``
    (e.g. a Dynamic CoT policy's table) is given. Returns ``(model, processor, TrainResult)``."""
    modeling.setup(seed, verbose=False)
    model, processor = modeling.load_vlm(model_path, lora=lora, verbose=False, **load_kwargs)
    if forms is None:
        forms = collate.TargetForms(default_form or ("cot" if rationales else "direct"))
    records = collate.make_records(train, rationales)
    valid_records = collate.make_records(valid, rationales) if valid else None
    result = training.train_sft(model, processor, records, valid_records, settings=settings, output_dir=output_dir,
                                forms=forms, ledger=ledger, callbacks=callbacks)
    if verbose:
        first = f"{result.train_losses[0][1]:.2f} -> {result.final_loss:.2f}" if result.train_losses else "not logged"
        valid_loss = f", valid loss {result.eval_loss:.2f}" if result.eval_loss is not None else ""
        print(f"== {Path(output_dir).name}: {result.steps} steps in {result.runtime_s:.0f} s, forms "
              f"{result.form_counts}, train loss {first}{valid_loss}")
    return model, processor, result


def decode(model, processor, examples: Sequence[Example], mode: str | None, max_new_tokens: int,
           train_keyphrases: Iterable[str] | None, batch_size: int = 16, prompt_keyphrases: int = 5,
           progress: bool = True):
    """Generate with the ``direct`` prompt in ``mode`` (None: the model decides; "think"; "direct")
    and score: ``(generations, scores)``. Leaves a 4-bit CPU model ready to train again."""
    gens = inference.generate(model, processor, examples, prompt="direct", batch_size=batch_size,
                              max_new_tokens=max_new_tokens, mode=mode, prompt_keyphrases=prompt_keyphrases,
                              progress=progress)
    modeling.fix_bnb_cpu_training(model)
    return gens, inference.evaluate(gens, examples, train_keyphrases=train_keyphrases)


def think_share_by_subset(generations: Sequence[inference.Generation], examples: Sequence[Example],
                          train_keyphrases: Iterable[str] | None = None) -> dict[str, float]:
    """The share of outputs that opened ``<think>``: over all posts, and over the posts that have a
    keyphrase of each kind (``kind:<kind>``) or an unseen keyphrase of that kind
    (``unseen:<kind>``, given the training keyphrases)."""
    from .text import stem_phrase

    seen = {stem_phrase(k) for k in train_keyphrases} if train_keyphrases is not None else None
    by_id = {g.id: inference.opened_think(g) for g in generations}
    groups: dict[str, list[bool]] = {"all": [by_id[ex.id] for ex in examples]}
    for ex in examples:
        kinds = {str(k) for k in ex.kinds.values()}
        for kind in kinds:
            groups.setdefault(f"kind:{kind}", []).append(by_id[ex.id])
        if seen is not None:
            for kind in {str(ex.kinds.get(kp)) for kp in ex.keyphrases if stem_phrase(kp) not in seen and kp in ex.kinds}:
                groups.setdefault(f"unseen:{kind}", []).append(by_id[ex.id])
    return {k: sum(v) / len(v) for k, v in groups.items() if v}


def record(notebook: str, method: str, variant: str, dataset: str, split: str, generations, scores, **extra) -> dict:
    """A :func:`results.metric_record` with the generation costs and the quality of the reasoning:
    ``think_share``, ``cut_off`` (generations that hit the token limit), ``cut_in_think`` (those that
    opened ``<think>`` and hit it), ``seconds_per_post``, ``rationale_quality``
    (:func:`rationale.quality_stats` without its example ids) and ``well_formed_share`` (None when
    no generation opened ``<think>``)."""
    stats = inference.generation_stats(generations)
    quality = rationale.compact(rationale.quality_stats(generations))
    return results.metric_record(notebook, method, variant, dataset, split, len(generations), stats["gen_tokens_mean"],
                                 {k: v for k, v in scores.items() if isinstance(v, dict)},
                                 think_share=stats["think_share"], cut_off=stats["cut_off"],
                                 cut_in_think=stats["cut_in_think"], seconds_per_post=stats["seconds_per_example"],
                                 rationale_quality=quality, well_formed_share=quality["well_formed_share"], **extra)


def save_rationales(results_dir: str | os.PathLike, teacher_key: str, rationales: dict[str, str]) -> Path:
    """The kept rationales of a teacher run, for later notebooks (``<results_dir>/data/rationales.json``)."""
    from .paths import resolve

    path = resolve(results_dir) / "data" / RATIONALES_FILE
    results.write_json(path, {"teacher": teacher_key, "rationales": rationales})
    return path


def load_rationales(results_dir: str | os.PathLike) -> tuple[str, dict[str, str]] | None:
    """``(teacher key, rationales)`` written by :func:`save_rationales`, or None."""
    from .paths import resolve

    path = resolve(results_dir) / "data" / RATIONALES_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data["teacher"], data["rationales"]


def save_generations(results_dir: str | os.PathLike, notebook: str, name: str,
                     generations: Sequence[inference.Generation]) -> Path:
    """``<results_dir>/<notebook>/generations/<name>.jsonl`` (later notebooks read them back)."""
    from .paths import run_dir

    return inference.write_generations_jsonl(run_dir(results_dir, notebook) / "generations" / f"{name}.jsonl",
                                             generations)


def load_generations(results_dir: str | os.PathLike, notebook: str, name: str) -> list[inference.Generation] | None:
    from .paths import resolve

    path = resolve(results_dir) / notebook / "generations" / f"{name}.jsonl"
    return inference.read_generations_jsonl(path) if path.is_file() else None


def same_training(params: dict, **expected) -> bool:
    """Whether a notebook's recorded ``params.json`` trained with the given settings (``settings``
    compared field by field, leaving out :data:`IGNORED_SETTINGS`)."""
    for key, value in expected.items():
        if key == "settings":
            mine = {k: v for k, v in value.items() if k not in IGNORED_SETTINGS}
            theirs = params.get("settings", {})
            if any(theirs.get(k) != v for k, v in mine.items()):
                return False
        elif params.get(key) != value:
            return False
    return True
