"""The steps notebooks 04-06 and the seed sweeps share: train a run, decode it, score it, record it.

Each function is a few calls into the rooms below it (modeling, collate, training, inference,
results); they exist so that a notebook's cells read as the method, and so that a notebook, a
benchmark and a test train and score a method the same way.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from . import collate, counterfactual, inference, modeling, rationale, reading, results, training
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


#: Notebook parameters that make the training recipe (notebooks 03-05 share them; a sweep reads
#: them from a notebook's parameters cell, so it runs exactly what the notebook runs).
RECIPE_PARAMETERS = ("learning_rate", "lr_scheduler", "warmup", "epochs", "max_steps", "batch_size", "grad_accum",
                     "gradient_checkpointing", "logging_steps", "eval_steps", "save_steps", "seed",
                     "prompt_keyphrases", "max_length", "report_to", "valid_f1_examples", "select_best",
                     "lora_r", "lora_alpha", "lora_dropout", "quantize_4bit", "min_pixels", "max_pixels")


def notebook_parameters(notebook: str, profile: str | None = "tiny") -> dict:
    """The parameters a notebook runs with under ``profile``: the defaults of its ``parameters``
    cell (``notebooks/<notebook>.ipynb``, read with ``ast``: literals only, as papermill needs),
    then the profile's ``defaults`` and its per-notebook overrides that the notebook declares."""
    import ast

    import nbformat
    import yaml

    nb = nbformat.read(project_root() / "notebooks" / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    params = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
    if profile:
        spec = yaml.safe_load((project_root() / "profiles" / f"{profile}.yaml").read_text()) or {}
        overrides = dict(spec.get("defaults") or {}) | dict((spec.get("notebooks") or {}).get(notebook) or {})
        params.update({k: v for k, v in overrides.items() if k in params})
    return params


def recipe(params: dict, progress: bool = True) -> tuple[training.SFTSettings, dict, dict]:
    """``(SFTSettings, lora, load_kwargs)`` from a notebook's parameters (see
    :data:`RECIPE_PARAMETERS`): what notebooks 03-05 and the sweeps train with."""
    p = params
    settings = training.SFTSettings(
        learning_rate=p["learning_rate"], lr_scheduler=p["lr_scheduler"], warmup=p["warmup"], epochs=p["epochs"],
        max_steps=p["max_steps"], batch_size=p["batch_size"], grad_accum=p["grad_accum"],
        gradient_checkpointing=p["gradient_checkpointing"], logging_steps=p["logging_steps"],
        eval_steps=p["eval_steps"], save_steps=p["save_steps"], seed=p["seed"],
        prompt_keyphrases=p["prompt_keyphrases"], progress=progress, max_length=p["max_length"] or None,
        report_to=p["report_to"], valid_f1_examples=p["valid_f1_examples"], select_best=p["select_best"])
    lora = {"r": p["lora_r"], "alpha": p["lora_alpha"], "dropout": p["lora_dropout"]}
    load_kwargs = dict(quantize_4bit=p["quantize_4bit"], min_pixels=p["min_pixels"], max_pixels=p["max_pixels"],
                       gradient_checkpointing=p["gradient_checkpointing"])
    return settings, lora, load_kwargs


def train_run(model_path: str, train: Sequence[Example], valid: Sequence[Example] | None,
              settings: training.SFTSettings, lora: dict, output_dir: str | os.PathLike,
              rationales: dict[str, str] | None = None, default_form: str | None = None,
              forms: collate.TargetForms | None = None, ledger: training.LossLedger | None = None,
              callbacks: Iterable = (), seed: int = 0, verbose: bool = True, counterfactual_share: float = 0.0,
              reread_share: float = 0.0, reread=None, **load_kwargs):
    """A fresh base model with the seed's adapter initialisation, trained with :func:`training.train_sft`.

    ``rationales`` (id -> rationale) gives records CoT targets; ``default_form`` ("direct" or
    "cot"; default: "cot" when there are rationales) is the form of every record unless ``forms``
    (e.g. a Dynamic CoT policy's table) is given. ``counterfactual_share``: that share of the
    records with a rationale get a counterfactual copy that trains its answer only
    (:mod:`mmkp_helpers.counterfactual`); ``reread_share``: that share gets an evidence counterfactual
    written by ``reread`` (a teacher's :meth:`~mmkp_helpers.teacher.oracle.OracleTeacher.reread`,
    :func:`mmkp_helpers.counterfactual.reread_records`). Returns ``(model, processor, TrainResult)``."""
    modeling.setup(seed, verbose=False)
    model, processor = modeling.load_vlm(model_path, lora=lora, verbose=False, **load_kwargs)
    if forms is None:
        forms = collate.TargetForms(default_form or ("cot" if rationales else "direct"))
    records = collate.make_records(train, rationales)
    records += (counterfactual.counterfactual_records(records, counterfactual_share, seed=seed)
                + counterfactual.reread_records(records, reread_share, reread, seed=seed))
    valid_records = collate.make_records(valid, rationales) if valid else None
    direct_only = bool(rationales) and bool(valid_records) and all(r.cot is None for r in valid_records)
    if direct_only and settings.select_best and not settings.valid_f1_examples:
        warnings.warn("select_best picks the checkpoint by the valid loss, which a CoT run computes on the valid "
                      "posts' direct targets (they have no rationale): set valid_f1_examples to select by valid F1")
    result = training.train_sft(model, processor, records, valid_records, settings=settings, output_dir=output_dir,
                                forms=forms, ledger=ledger, callbacks=callbacks)
    if verbose:
        first = f"{result.train_losses[0][1]:.2f} -> {result.final_loss:.2f}" if result.train_losses else "not logged"
        # the teacher writes rationales for the training posts only: a CoT run's valid posts are
        # scored on their direct targets, which a student that always opens <think> finds unlikely
        label = "valid loss on direct targets" if direct_only else "valid loss"
        valid_loss = f", {label} {result.eval_loss:.2f}" if result.eval_loss is not None else ""
        print(f"== {Path(output_dir).name}: {result.steps} steps in {result.runtime_s:.0f} s, forms "
              f"{result.form_counts}, train loss {first}{valid_loss}")
    return model, processor, result


def _train_in_worker(kwargs: dict, threads: int) -> training.TrainResult:
    """One run of :func:`train_runs` in a spawned worker: its own torch threads, its log in
    ``<output_dir>/train.log`` (the notebook prints one line per run)."""
    import contextlib
    import dataclasses

    import torch

    torch.set_num_threads(threads)
    Path(kwargs["output_dir"]).mkdir(parents=True, exist_ok=True)
    kwargs = dict(kwargs, settings=dataclasses.replace(kwargs["settings"], progress=False), verbose=False)
    with open(Path(kwargs["output_dir"]) / "train.log", "w") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return train_run(**kwargs)[2]


def train_runs(runs: dict[str, dict], workers: int = 1) -> dict[str, training.TrainResult]:
    """Train independent runs (``runs[name]``: :func:`train_run`'s keyword arguments, ``output_dir``
    among them) and return ``name -> TrainResult``; each adapter is in ``<output_dir>/adapter``
    (load it with :func:`mmkp_helpers.adapters.load_adapter`).

    ``workers`` > 1 trains that many runs side by side, each in a spawned process (started clean,
    as a notebook's kernel is) with ``max(1, threads // workers)`` of this process's torch threads.
    On the tiny profile a run's numbers do not depend on its thread count (the committed sweep's
    seed-0 rows were reproduced to the last digit with one thread:
    ``results/bench/cot_seeds_seed0_threads1_cpu2.jsonl``), and three one-thread runs on two cores
    finish sooner than three two-thread runs one after another. ``workers`` 1: in this process,
    one after another (on a GPU, where runs would share the device, keep 1)."""
    import gc

    import torch

    workers = max(1, min(int(workers), len(runs)))
    if workers == 1:
        out = {}
        for name, kwargs in runs.items():
            model, _, out[name] = train_run(**kwargs)
            del model
            gc.collect()
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_in_worker, kwargs, threads) for name, kwargs in runs.items()}
        return {name: future.result() for name, future in futures.items()}


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
    """The share of outputs that opened ``<think>``: over all posts, over the posts that have a
    keyphrase of each kind (``kind:<kind>``) or an unseen keyphrase of that kind
    (``unseen:<kind>``, given the training keyphrases), and over each kind of post
    (``needs:<label>``, when the examples carry ``meta["needs"]``)."""
    from .text import stem_phrase

    seen = {stem_phrase(k) for k in train_keyphrases} if train_keyphrases is not None else None
    by_id = {g.id: inference.opened_think(g) for g in generations}
    groups: dict[str, list[bool]] = {"all": [by_id[ex.id] for ex in examples]}
    for ex in examples:
        for kind in sorted({str(k) for k in ex.kinds.values()}):  # sorted: the same key order in every process
            groups.setdefault(f"kind:{kind}", []).append(by_id[ex.id])
        if isinstance(ex.meta, dict) and ex.meta.get("needs"):
            groups.setdefault(f"needs:{ex.meta['needs']}", []).append(by_id[ex.id])
        if seen is not None:
            unseen = {str(ex.kinds.get(kp)) for kp in ex.keyphrases if stem_phrase(kp) not in seen and kp in ex.kinds}
            for kind in sorted(unseen):
                groups.setdefault(f"unseen:{kind}", []).append(by_id[ex.id])
    return {k: sum(v) / len(v) for k, v in groups.items() if v}


def record(notebook: str, method: str, variant: str, dataset: str, split: str, generations, scores,
           examples: Sequence[Example] | None = None, seen_accounts: set[str] | None = None, **extra) -> dict:
    """A :func:`results.metric_record` with the generation costs and the quality of the reasoning:
    ``think_share``, ``cut_off`` (generations that hit the token limit), ``cut_in_think`` (those that
    opened ``<think>`` and hit it), ``seconds_per_post``, ``rationale_quality``
    (:func:`rationale.quality_stats` without its example ids) and ``well_formed_share`` (None when
    no generation opened ``<think>``). With the scored ``examples`` of a synthetic split (their
    ground truth known) and at least one rationale, also ``rationale_reading``: whether the
    rationales read the picture truly and the answers follow them, per kind of post and, given
    ``seen_accounts`` (:func:`mmkp_helpers.reading.accounts` of the training posts), per account
    group (:func:`mmkp_helpers.reading.summarize`)."""
    stats = inference.generation_stats(generations)
    quality = rationale.compact(rationale.quality_stats(generations))
    if examples is not None and quality["n_cot"] and all(reading.has_truth(ex) for ex in examples):
        by_id = {ex.id: ex for ex in examples}
        extra = {"rationale_reading": reading.summarize(generations, by_id, seen_accounts)} | extra
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


def load_rationales(results_dir: str | os.PathLike, style: str | None = None) -> tuple[str, dict[str, str]] | None:
    """``(teacher key, rationales)`` written by :func:`save_rationales`, or None. With ``style`` (an
    oracle rationale style), rationales written in another style are refused with a ``ValueError``
    rather than silently reused."""
    from .paths import resolve

    path = resolve(results_dir) / "data" / RATIONALES_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    key = data["teacher"]
    if style is not None and key.startswith("oracle-") and f"style-{style}" not in key:
        written = key.split("style-", 1)[1].split("-", 1)[0] if "style-" in key else "an older"
        raise ValueError(f"{rel(path)} holds rationales in the {written!r} style ({key}), not {style!r}: run notebook "
                         f"04 with rationale_style={style!r} first, or use rationale_style={written!r}")
    return key, data["rationales"]


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


# --------------------------------------------------------------------------------------------
# Dynamic CoT: a policy run, its exposure-matched control, and auto decoding
# --------------------------------------------------------------------------------------------
class DecodeJudge:
    """The ``correct`` Dynamic CoT variant's judge: ``judge(model, ids)`` decodes those training
    posts greedily with the model being trained, forced to reason and forced to answer directly
    (the budgets of notebooks 04 and 05), and returns ``{id: (F1@M after a rationale, direct
    F1@M)}``; the model is left ready to train on."""

    def __init__(self, model_path: str, examples: Sequence[Example], max_new_tokens_cot: int = 96,
                 max_new_tokens: int = 32, batch_size: int = 64, prompt_keyphrases: int = 5,
                 min_pixels: int | None = None, max_pixels: int | None = None):
        from .architecture import load_processor

        self.examples = {ex.id: ex for ex in examples}
        self.processor = load_processor(model_path, min_pixels=min_pixels, max_pixels=max_pixels)
        self.budgets = (max_new_tokens_cot, max_new_tokens)
        self.kw = dict(prompt="direct", batch_size=batch_size, prompt_keyphrases=prompt_keyphrases, progress=False)

    def __call__(self, model, ids: Sequence[str]) -> dict[str, tuple[float, float]]:
        from .decision import post_f1

        examples = [self.examples[i] for i in ids]
        was_training = model.training
        model.eval()
        try:
            think, direct = (inference.generate(model, self.processor, examples, mode=mode, max_new_tokens=budget,
                                                **self.kw) for mode, budget in zip(("think", "direct"), self.budgets))
        finally:
            modeling.fix_bnb_cpu_training(model)
            model.train(was_training)
        return {ex.id: (post_f1(t.keyphrases, ex), post_f1(d.keyphrases, ex)) for ex, t, d in zip(examples, think, direct)}


def dynamic_run(model_path: str, train: Sequence[Example], valid: Sequence[Example] | None,
                settings: training.SFTSettings, lora: dict, output_dir: str | os.PathLike, rationales: dict[str, str],
                policy, seed: int = 0, verbose: bool = True, exposure_feed: str | os.PathLike | None = None,
                judge_budgets: tuple[int, int] = (96, 32), **load_kwargs):
    """A Dynamic CoT run: :class:`~mmkp_helpers.dynamic_cot.DynamicCoTPolicy` with ``policy``
    (settings or their dict) decides the forms as :func:`train_run` trains. Returns ``(model,
    processor, TrainResult, policy, ledger)``; the ledger holds every visit (its CoT visits are the
    run's exposure, which :func:`replay_run` replays) and is saved beside the adapter.
    ``exposure_feed``: a file the exposure is written to step by step
    (:class:`~mmkp_helpers.dynamic_cot.ExposureFeed`), for a control training beside it. The
    ``correct`` variant decodes the training posts with a :class:`DecodeJudge` (``judge_budgets``:
    the rationale's and the direct answer's token budgets)."""
    from .dynamic_cot import DynamicCoTPolicy, ExposureFeed, PolicySettings

    records = collate.make_records(train, rationales)
    forms, ledger = collate.TargetForms(seed=seed), training.LossLedger()
    variant = (PolicySettings.from_dict(policy) if isinstance(policy, dict) else policy or PolicySettings()).variant
    judge = (DecodeJudge(model_path, train, *judge_budgets, prompt_keyphrases=settings.prompt_keyphrases,
                         min_pixels=load_kwargs.get("min_pixels"), max_pixels=load_kwargs.get("max_pixels"))
             if variant == "correct" else None)
    the_policy = DynamicCoTPolicy(records, forms, ledger, policy, judge=judge)
    callbacks = [the_policy] + ([ExposureFeed(ledger, exposure_feed)] if exposure_feed else [])
    model, processor, result = train_run(model_path, train, valid, settings, lora, output_dir, rationales=rationales,
                                         forms=forms, ledger=ledger, callbacks=callbacks, seed=seed, verbose=verbose,
                                         **load_kwargs)
    (Path(output_dir) / training.LEDGER_FILENAME).write_text(json.dumps(ledger.to_dict()))
    return model, processor, result, the_policy, ledger


def replay_run(reference, model_path: str, train: Sequence[Example],
               valid: Sequence[Example] | None, settings: training.SFTSettings, lora: dict,
               output_dir: str | os.PathLike, rationales: dict[str, str], seed: int = 0, verbose: bool = True,
               **load_kwargs):
    """The exposure-matched control of a run: the same recipe and seed (so the same batches), with
    as many CoT example-visits at every step as the reference run had, on examples drawn at random
    in each batch (:class:`~mmkp_helpers.dynamic_cot.ReplayForms`). ``reference``: the reference
    run's ledger, or its visits per step (e.g. a :class:`~mmkp_helpers.dynamic_cot.LiveSchedule`
    while it trains). Returns ``(model, processor, TrainResult, forms, ledger)``."""
    from .dynamic_cot import ReplayForms

    eligible = [ex.id for ex in train if ex.id in rationales]
    forms = (ReplayForms.of(reference, eligible, seed) if isinstance(reference, training.LossLedger)
             else ReplayForms(reference, eligible, seed))
    ledger = training.LossLedger()
    model, processor, result = train_run(model_path, train, valid, settings, lora, output_dir, rationales=rationales,
                                         forms=forms, ledger=ledger, seed=seed, verbose=verbose, **load_kwargs)
    return model, processor, result, forms, ledger


def _run_in_worker(which: str, kwargs: dict, threads: int):
    """One run of :func:`dynamic_with_replay` in a spawned worker (as :func:`_train_in_worker`):
    ``(TrainResult, policy or replay forms, ledger)``, the model left behind (its adapter is saved)."""
    import contextlib
    import dataclasses

    import torch

    from .dynamic_cot import LiveSchedule

    torch.set_num_threads(threads)
    Path(kwargs["output_dir"]).mkdir(parents=True, exist_ok=True)
    kwargs = dict(kwargs, settings=dataclasses.replace(kwargs["settings"], progress=False), verbose=False)
    with open(Path(kwargs["output_dir"]) / "train.log", "w") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if which == "dynamic":
            _, _, result, policy, ledger = dynamic_run(**kwargs)
            return result, policy, ledger
        feed = kwargs.pop("exposure_feed")
        _, _, result, forms, ledger = replay_run(LiveSchedule(feed), **kwargs)
        forms.schedule = {k: v for k, v in forms.schedule.items() if v}  # what it replayed, as the ledger has it
        return result, forms, ledger


def dynamic_with_replay(model_path: str, train: Sequence[Example], valid: Sequence[Example] | None,
                        settings: training.SFTSettings, lora: dict, output_dir: str | os.PathLike,
                        control_dir: str | os.PathLike, rationales: dict[str, str], policy, seed: int = 0,
                        workers: int = 1, judge_budgets: tuple[int, int] = (96, 32), **load_kwargs):
    """A Dynamic CoT run (:func:`dynamic_run`, in ``output_dir``) and its exposure-matched replay
    control (:func:`replay_run`, in ``control_dir``). Returns ``(result, policy, ledger,
    control_result, replay_forms, control_ledger)``; the adapters are in ``<dir>/adapter`` (load
    them with :func:`mmkp_helpers.adapters.load_adapter`).

    ``workers`` 1: one after another in this process. 2: side by side in two spawned workers with
    half of this process's torch threads each: the dynamic run writes its CoT example-visits as each
    step ends (``<control_dir>/reference_exposure.txt``) and the control, one step behind, reads
    them (:class:`~mmkp_helpers.dynamic_cot.LiveSchedule`). Either way the control replays the same
    visits at the same steps, so the numbers are the same (on a GPU keep 1: the runs would share it).
    ``judge_budgets``: as :func:`dynamic_run`'s (the ``correct`` variant)."""
    import gc

    import torch

    common = dict(model_path=model_path, train=train, valid=valid, settings=settings, lora=lora,
                  rationales=rationales, seed=seed, **load_kwargs)
    if int(workers) <= 1:
        model, _, result, the_policy, ledger = dynamic_run(output_dir=output_dir, policy=policy,
                                                           judge_budgets=judge_budgets, **common)
        del model
        gc.collect()
        model, _, c_result, replay, c_ledger = replay_run(ledger, output_dir=control_dir, **common)
        del model
        gc.collect()
        return result, the_policy, ledger, c_result, replay, c_ledger
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .dynamic_cot import ExposureFeed

    feed = Path(control_dir) / "reference_exposure.txt"
    feed.parent.mkdir(parents=True, exist_ok=True)
    feed.write_text("")
    threads = max(1, torch.get_num_threads() // 2)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        reference = pool.submit(_run_in_worker, "dynamic", dict(common, output_dir=output_dir, policy=policy,
                                                                exposure_feed=feed, judge_budgets=judge_budgets),
                                threads)
        control = pool.submit(_run_in_worker, "replay", dict(common, output_dir=control_dir, exposure_feed=feed),
                              threads)
        try:
            result, the_policy, ledger = reference.result()
        except BaseException:
            ExposureFeed.close(feed, failed=True)  # the control stops instead of waiting
            raise
        c_result, replay, c_ledger = control.result()
    return result, the_policy, ledger, c_result, replay, c_ledger


def auto_decode(model, processor, valid: Sequence[Example], test: Sequence[Example], max_new_tokens_cot: int,
                max_new_tokens: int, train_keyphrases: Iterable[str] | None, batch_size: int = 16,
                prompt_keyphrases: int = 5, progress: bool = True) -> dict:
    """The model's own decision at inference (:mod:`mmkp_helpers.decision`): the threshold on q
    chosen on ``valid`` (both forced decodings of the valid posts, best F1@M, ties to fewer tokens),
    then ``auto`` decoding of ``test`` with it, and both forced decodings of ``test`` for the curve
    of F1@M against tokens over every threshold. Returns ``threshold``, ``valid_curve``,
    ``test_curve``, ``q`` (test, in order), ``q_valid``, ``generations`` (auto), ``scores``,
    ``think`` and ``direct`` (the forced test generations). Leaves a 4-bit CPU model trainable."""
    from . import decision

    seen = list(train_keyphrases) if train_keyphrases is not None else None
    kw = dict(batch_size=batch_size, prompt_keyphrases=prompt_keyphrases)
    openings = decision.opening_tokens(processor.tokenizer)
    q_valid = decision.decision_q(model, processor, valid, **kw)
    v_think, _ = decode(model, processor, valid, "think", max_new_tokens_cot, seen, progress=progress, **kw)
    v_direct, _ = decode(model, processor, valid, "direct", max_new_tokens, seen, progress=progress, **kw)
    valid_curve = decision.threshold_curve(q_valid, v_think, v_direct, valid, seen, openings)
    chosen = decision.choose_threshold(valid_curve)
    q = decision.decision_q(model, processor, test, **kw)
    gens = decision.generate_auto(model, processor, test, chosen["threshold"], max_new_tokens_cot, max_new_tokens,
                                  q=q, progress=progress, **kw)
    modeling.fix_bnb_cpu_training(model)
    t_think, _ = decode(model, processor, test, "think", max_new_tokens_cot, seen, progress=progress, **kw)
    t_direct, _ = decode(model, processor, test, "direct", max_new_tokens, seen, progress=progress, **kw)
    return {"threshold": chosen["threshold"], "valid_choice": chosen, "valid_curve": valid_curve,
            "test_curve": decision.threshold_curve(q, t_think, t_direct, test, seen, openings),
            "q": q, "q_valid": q_valid, "generations": gens,
            "scores": inference.evaluate(gens, test, train_keyphrases=seen), "think": t_think, "direct": t_direct}
