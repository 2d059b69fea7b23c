"""One supervised fine-tuning (SFT) entry point for every method: SFT, Fine-tune-CoT, Dynamic CoT.

:func:`train_sft` runs the transformers ``Trainer`` on a LoRA/QLoRA model (from
:func:`mmkp_helpers.modeling.load_vlm`) over :class:`~mmkp_helpers.collate.TrainRecord` objects:

- targets are direct or CoT per example, as a shared :class:`~mmkp_helpers.collate.TargetForms`
  says at the moment each batch is built (Dynamic CoT changes it from a callback);
- the loss is computed here, token by token, so each example's mean token loss is known at every
  step: it goes to a :class:`LossLedger` that callbacks read (Dynamic CoT decides on it);
- checkpoints (adapter, optimizer, scheduler, RNG, forms, ledger) go to
  ``output_dir/checkpoints`` every ``save_steps``; ``resume=True`` continues from the last one
  and reaches the same final loss as an uninterrupted run;
- the final adapter is saved to ``output_dir/adapter`` (git-ignored under ``results/``), with
  ``mmkp_training.json`` (was the base 4-bit?); :func:`load_adapter` puts it back on the base it
  was trained with for evaluation (:mod:`mmkp_helpers.adapters`, re-exported here);
- ``max_length`` cuts over-long prompts (never answers), ``report_to`` sends logs to TensorBoard
  (``output_dir/runs/``) or wandb, ``valid_f1_examples`` + ``select_best`` keep the checkpoint with
  the best keyphrase F1 on a valid sample (:mod:`mmkp_helpers.valid_f1`).

Precision: bf16 on a GPU that supports it, float32 on the CPU (``use_cpu=True``). The data loader
runs in the main process (``dataloader_num_workers=0``) and only groups records; batches are
tokenized when their optimizer step begins, so form changes apply from the next step.
"""
from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .adapters import adapter_base, attach_adapter, load_adapter, write_training_record  # noqa: F401 (re-exported)
from .collate import IGNORE_INDEX, ChatCollator, TargetForms, TrainRecord
from .ledger import (LossLedger, fused_token_losses, loss_positions, per_example_loss,  # noqa: F401 (re-exported)
                     token_losses)
from .losses import fused_parts
from . import image_features
from .modeling import fix_bnb_cpu_training
from .valid_f1 import F1_METRIC, ValidF1Callback, place_tensorboard_logs, report_to_list

ADAPTER_DIRNAME = "adapter"
DECISION_LOSSES = ("plain", "balanced")
CHECKPOINTS_DIRNAME = "checkpoints"
FORMS_FILENAME = "target_forms.json"
LEDGER_FILENAME = "loss_ledger.json"


# --------------------------------------------------------------------------------------------
# Settings and result
# --------------------------------------------------------------------------------------------
@dataclass
class SFTSettings:
    """Training hyper-parameters (the LoRA ones live in :class:`mmkp_helpers.modeling.LoraSettings`,
    applied when the model is loaded).

    ``max_steps > 0`` overrides ``epochs``. ``eval_steps=None`` evaluates once, at the end
    (when valid records are given). ``warmup`` below 1 is a ratio of all steps, else a step
    count. ``bf16=None`` picks bf16 on a GPU that supports it and float32 elsewhere.
    ``select_best`` needs valid records and ``eval_steps``, with ``save_steps`` a multiple of
    ``eval_steps``; it selects by ``eval_f1_m`` when ``valid_f1_examples > 0`` (see
    :mod:`mmkp_helpers.valid_f1`), else by ``eval_loss``.

    ``decision_loss``: the first token of every answer is the mode decision (``<think>`` opens a
    rationale, ``Keyphrases:`` answers at once). ``"plain"``: it counts like any answer token.
    ``"balanced"``: its loss is weighted on its own, class-balanced: in a row trained in form f it
    weighs ``decision_weight * n / (2 * n_f)``, n and n_f the training visits so far (this batch
    included) in all forms and in form f, so both decisions carry the same total weight however
    rare one of them is (Thinkless and AdaCoT handle their mode token's loss apart likewise)."""
    learning_rate: float = 2e-4
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    eval_batch_size: int | None = None
    gradient_checkpointing: bool = False
    warmup: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    logging_steps: int = 10
    eval_steps: int | None = None
    save_steps: int = 200
    save_total_limit: int | None = 2
    seed: int = 0
    bf16: bool | None = None
    prompt: str = "direct"  # the user-turn template; generate with the same one
    prompt_keyphrases: int = 5  # "at most N keyphrases" in the prompt (generate's prompt_keyphrases)
    progress: bool = True
    fused_loss: bool = True  # answer-token loss by a fused linear cross-entropy (see mmkp_helpers.losses)
    max_length: int | None = None  # tokens per sequence; longer prompts are cut, never answers (ChatCollator)
    report_to: str | list[str] = "none"  # "tensorboard" (events in output_dir/runs/) or "wandb" (if installed)
    valid_f1_examples: int = 0  # >0: keyphrase F1@M (eval_f1_m) on that many valid examples at each evaluation
    valid_f1_max_new_tokens: int = 32  # generation budget of that F1
    select_best: bool = False  # keep and load at the end the best checkpoint (eval_f1_m, else eval_loss)
    decision_loss: str = "plain"  # the answer's first token (<think> or Keyphrases:): plain, or balanced (see below)
    decision_weight: float = 1.0  # with decision_loss="balanced": the weight of the decision tokens' loss
    answer_weight: float = 1.0  # in rows trained in CoT form, the weight of the answer line's tokens (after </think>)

    @classmethod
    def from_dict(cls, values: dict) -> "SFTSettings":
        """Settings from a (profile) dict; unknown keys are an error, not silently ignored."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SFT settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self):
        if self.decision_loss not in DECISION_LOSSES:
            raise ValueError(f"unknown decision_loss {self.decision_loss!r}; choose one of {DECISION_LOSSES}")


@dataclass
class TrainResult:
    """What a training run produced and measured.

    ``final_loss`` is the last logged training loss (mean token loss over the last
    ``logging_steps`` steps); ``mean_loss`` the Trainer's average over the steps this call ran.
    ``peak_memory_bytes`` is ``torch.cuda.max_memory_allocated`` on a GPU and the process's peak
    resident set size on the CPU (``peak_memory_kind`` says which)."""
    output_dir: str
    adapter_dir: str
    steps: int
    final_loss: float | None
    mean_loss: float | None
    eval_loss: float | None
    runtime_s: float
    tokens_per_s: float | None
    peak_memory_bytes: int
    peak_memory_kind: str
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    log_history: list[dict] = field(default_factory=list)
    resumed_from: str | None = None
    form_counts: dict[str, int] = field(default_factory=dict)
    truncated_examples: int = 0  # training examples whose prompt was cut to max_length
    overlong_examples: int = 0  # of those, still over max_length (their answer alone is too long)
    best_checkpoint: str | None = None  # with select_best: the checkpoint loaded at the end
    best_metric: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
class RecordDataset(torch.utils.data.Dataset):
    """A list of :class:`TrainRecord` as a map-style dataset (the collator does the work)."""

    def __init__(self, records: Sequence[TrainRecord]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> TrainRecord:
        return self.records[index]


RECORDS_KEY = "records"


def defer_records(records: list[TrainRecord]) -> dict:
    """The DataLoader's collate function: keep the records as they are. The trainer builds the
    tensors when the optimizer step that uses them begins (see :class:`KeyphraseTrainer`)."""
    return {RECORDS_KEY: list(records)}


class KeyphraseTrainer(Trainer):
    """A ``Trainer`` for :class:`TrainRecord` data that computes the causal-LM loss itself.

    - **Batches are built late.** The DataLoader only groups records (:func:`defer_records`);
      ``collator`` (a :class:`~mmkp_helpers.collate.ChatCollator`) turns them into tensors when
      the optimizer step that uses them begins. accelerate's DataLoader fetches one batch ahead,
      so collating inside the DataLoader would read the target forms one step early; built here,
      a form change made in a callback's ``on_step_end`` applies from the very next step.
    - **Per-example losses.** The attribution keys (``example_ids``, ``forms``) are removed
      before the forward pass; each training example's mean token loss goes to ``ledger`` and
      ``last_example_losses``. Logits are computed at the labelled positions only: with
      ``fused_loss`` (Qwen2-VL models) by :func:`mmkp_helpers.losses.linear_cross_entropy` on
      exactly the labelled (row, position) pairs, which never materialises the logits' gradient;
      otherwise by the model on the union of answer positions (``logits_to_keep``, see
      :func:`loss_positions`). Both compute the same loss.
    - **Loss scale.** The batch loss is the mean over supervised tokens; under gradient
      accumulation it is normalised by the token count of the whole accumulated batch.
    - ``tokens_seen`` counts the (unpadded) tokens trained on, for a throughput figure.
    - **Image features once per image** (``cache_image_features``, on by default): the frozen vision
      tower's output for each image is kept for the run and passed as ``mm_encoder_outputs``
      (:mod:`mmkp_helpers.image_features`; the same values, bit for bit, as encoding it again).
    """

    def __init__(self, *args, collator: ChatCollator, ledger: LossLedger | None = None, fused_loss: bool = True,
                 decision_loss: str = "plain", decision_weight: float = 1.0, answer_weight: float = 1.0,
                 cache_image_features: bool = True, **kwargs):
        kwargs["data_collator"] = defer_records
        super().__init__(*args, **kwargs)
        self._flop_parameters = None
        self._trainable = None
        self.image_features = (image_features.ImageFeatures(self.model)
                               if cache_image_features and image_features.applies(self.model) else None)
        self.fused_loss = fused_loss
        self.decision_loss = decision_loss
        self.decision_weight = float(decision_weight)
        self.answer_weight = float(answer_weight)
        self.collator = collator
        self.ledger = ledger if ledger is not None else LossLedger()
        self.tokens_seen = 0
        self.last_example_losses: tuple[list[str], list[str], torch.Tensor] | None = None

    def build_batch(self, inputs: dict, step: int | None = None) -> dict:
        """Tensors for a deferred batch (``{"records": [...]}``); other batches pass through.
        ``step``: the optimizer step the batch trains (None for evaluation batches)."""
        if RECORDS_KEY in inputs:
            return self.collator(inputs[RECORDS_KEY], step=step)
        return inputs

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The micro-batches of one optimizer step, built now, and their supervised-token count
        (always counted here, since this trainer computes its own loss)."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        batch_samples = [self.build_batch(b, step=self.state.global_step) for b in batch_samples]
        if not batch_samples:
            return batch_samples, None
        n_items = torch.tensor(sum(int((b["labels"][..., 1:] != IGNORE_INDEX).sum()) for b in batch_samples),
                               device=device)
        if self._tokens_across_processes():
            # Under DDP the count is the whole step's, over every rank (see compute_loss).
            n_items = self.accelerator.gather(n_items).sum()
        return batch_samples, n_items

    def decision_weights(self, mask: torch.Tensor, forms: Sequence[str]) -> torch.Tensor:
        """Per-position loss weights (``mask``'s shape): 1 everywhere but on each row's first
        supervised position, the mode decision, which weighs ``decision_weight * n / (2 * n_f)``
        (``SFTSettings.decision_loss="balanced"``); n, n_f: the visits in the ledger so far plus
        this batch's, in all forms and in the row's form."""
        seen = self.ledger.form_counts()
        for f in forms:
            seen[f] = seen.get(f, 0) + 1
        total = sum(seen.values())
        weights = torch.ones_like(mask)
        first = mask.argmax(dim=1)
        for row, form in enumerate(forms):
            if mask[row].any():
                weights[row, first[row]] = self.decision_weight * total / (2 * max(seen.get(form, 0), 1))
        return weights

    def answer_weights(self, answer: torch.Tensor, forms: Sequence[str]) -> torch.Tensor:
        """Per-position loss weights (``answer``'s shape, 1 where the predicted token is on the
        answer line): ``answer_weight`` on the answer line of rows trained in CoT form, 1 elsewhere
        (``SFTSettings.answer_weight``)."""
        cot = torch.tensor([f == "cot" for f in forms], device=answer.device)[:, None]
        return torch.where(answer.bool() & cot, self.answer_weight, 1.0).float()

    def _tokens_across_processes(self) -> bool:
        """Normalise by the supervised tokens of all ranks (``average_tokens_across_devices``,
        on by default): DDP averages the ranks' gradients, so each rank's loss is its token-loss
        sum / all ranks' tokens x the number of ranks, and the averaged gradient is that of the
        mean token loss over the global batch, as one process with the global batch gets."""
        return self.args.average_tokens_across_devices and self.accelerator.num_processes > 1

    def floating_point_ops(self, inputs) -> int:
        """The Trainer's estimate (6 x input tokens x non-embedding parameters), with the parameters
        counted once per run instead of at every step (a walk over every module, 2 ms a step on
        the tiny profile)."""
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._flop_parameters is None:
            self._flop_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main].numel() * self._flop_parameters

    def _clip_grad_norm(self, model):
        """The Trainer's clipping, given the trainable parameters (listed once per run) instead of
        every parameter: the frozen ones have no gradient, so the norm is the same, without a walk
        over the whole model at each step. Distributed and sharded runs keep the stock path."""
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type != DistributedType.NO:
            return super()._clip_grad_norm(model)
        if self._trainable is None:
            self._trainable = [p for p in model.parameters() if p.requires_grad]
        return self.accelerator.clip_grad_norm_(self._trainable, self.args.max_grad_norm)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: build the deferred batch, then the stock step (which calls compute_loss)."""
        if RECORDS_KEY in inputs:
            inputs = self._prepare_inputs(self.build_batch(inputs))
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if RECORDS_KEY in inputs:  # a deferred batch that did not come through the paths above
            inputs = self._prepare_inputs(self.build_batch(inputs))
        inputs = dict(inputs)
        ids = inputs.pop("example_ids", None)
        forms = inputs.pop("forms", None)
        paths = inputs.pop("image_paths", None)
        if self.image_features is not None and paths and "pixel_values" in inputs:
            inputs = self.image_features.swap(inputs, paths)
        labels = inputs.pop("labels")
        answer_mask = inputs.pop("answer_mask", None)
        parts = fused_parts(model) if self.fused_loss else None
        positions = None  # the fused path's losses cover every position; the other keeps these
        if parts is not None:
            outputs, losses, mask = fused_token_losses(parts, inputs, labels)
        else:
            positions = loss_positions(labels)
            outputs = model(**inputs, use_cache=False, logits_to_keep=positions.to(labels.device))
            losses, mask = token_losses(outputs.logits, labels, positions)
        weighted = losses
        if model.training and self.decision_loss == "balanced" and forms is not None:
            weighted = losses * self.decision_weights(mask, forms).to(losses.dtype)
        if model.training and self.answer_weight != 1.0 and forms is not None and answer_mask is not None:
            answer = answer_mask[:, 1:] if positions is None else answer_mask[:, positions.to(answer_mask.device) + 1]
            weighted = weighted * self.answer_weights(answer, forms).to(weighted.device, weighted.dtype)
        total = weighted.sum()
        if model.training and num_items_in_batch is not None:
            loss = total / torch.as_tensor(num_items_in_batch, device=total.device, dtype=total.dtype)
            if self._tokens_across_processes():
                loss = loss * self.accelerator.num_processes  # DDP divides the summed gradients by it
            self.loss_is_scaled_for_ga = True
        else:
            loss = total / mask.sum().clamp(min=1)
            self.loss_is_scaled_for_ga = False
        if model.training:
            plain = losses.detach() * mask  # the ledger keeps the plain (unweighted) token losses
            per_example = plain.sum(1) / mask.sum(1).clamp(min=1)
            if answer_mask is not None:
                answer = answer_mask[:, 1:] if positions is None else answer_mask[:, positions.to(answer_mask.device) + 1]
                answer = answer.to(plain.device).to(plain.dtype) * mask
                per_answer = (plain * answer).sum(1) / answer.sum(1).clamp(min=1)
            else:
                per_answer = per_example
            self.tokens_seen += int(inputs["attention_mask"].sum())
            if ids is not None:
                forms = forms if forms is not None else ["direct"] * len(ids)
                self.last_example_losses = (list(ids), list(forms), per_example.cpu())
                self.ledger.record(self.state.global_step, ids, forms, per_example.cpu().tolist(),
                                   per_answer.cpu().tolist())
        return (loss, outputs) if return_outputs else loss


class _StateCheckpointCallback(TrainerCallback):
    """Saves the target forms and the loss ledger next to each checkpoint (they are training
    state too: a resumed Dynamic CoT run must continue with the forms it had)."""

    def __init__(self, forms: TargetForms, ledger: LossLedger):
        self.forms = forms
        self.ledger = ledger

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and args.should_save:  # one writer per run (DDP: rank 0), as for the checkpoint
            self.forms.save(folder / FORMS_FILENAME)
            (folder / LEDGER_FILENAME).write_text(json.dumps(self.ledger.to_dict()))
        return control


def _peak_memory() -> tuple[int, str]:
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_max_rss"


def _use_bf16(settings: SFTSettings) -> bool:
    if settings.bf16 is not None:
        return bool(settings.bf16) and torch.cuda.is_available()
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def best_checkpoint_arguments(settings: SFTSettings, has_eval: bool) -> dict:
    """The ``TrainingArguments`` of ``select_best`` (empty without it); checks it can work."""
    if not settings.select_best:
        return {}
    if not has_eval or not settings.eval_steps:
        raise ValueError("select_best needs valid records and eval_steps (checkpoints are compared at evaluations)")
    if settings.save_steps % settings.eval_steps:
        raise ValueError(f"select_best needs save_steps ({settings.save_steps}) to be a multiple of "
                         f"eval_steps ({settings.eval_steps})")
    by_f1 = settings.valid_f1_examples > 0
    return {"load_best_model_at_end": True, "metric_for_best_model": F1_METRIC if by_f1 else "eval_loss",
            "greater_is_better": by_f1}


def training_arguments(settings: SFTSettings, checkpoints_dir: str | os.PathLike, has_eval: bool) -> TrainingArguments:
    """The ``TrainingArguments`` :func:`train_sft` uses (exposed so a notebook can show them)."""
    on_gpu = torch.cuda.is_available()
    eval_strategy = "steps" if has_eval and settings.eval_steps else "no"
    # newer transformers 5.x releases renamed gradient_checkpointing* to activation_checkpointing*
    prefix = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    checkpointing = {f"{prefix}_checkpointing": settings.gradient_checkpointing,
                     f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if settings.gradient_checkpointing else None}
    return TrainingArguments(
        **checkpointing,
        output_dir=str(checkpoints_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps and settings.max_steps > 0 else -1,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size or settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        warmup_steps=settings.warmup,
        lr_scheduler_type=settings.lr_scheduler,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        optim=settings.optim,
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=settings.eval_steps if eval_strategy == "steps" else None,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=_use_bf16(settings),
        use_cpu=not on_gpu,
        report_to=report_to_list(settings.report_to),
        **best_checkpoint_arguments(settings, has_eval),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=not settings.progress,
        # Multi-process runs: every rank reads its own shard of each step's records. Dispatching
        # (rank 0 reads, then splits and sends) cannot split the deferred {"records": [...]} batches
        # ("Can only concatenate tensors"); it is off for map-style datasets anyway, pinned here.
        accelerator_config={"dispatch_batches": False},
    )


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIRNAME


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint folder of a run (``None`` when there is none)."""
    folder = checkpoints_dir(output_dir)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train_sft(model, processor, train_records: Sequence[TrainRecord], valid_records: Sequence[TrainRecord] | None = None,
              settings: SFTSettings | dict | None = None, output_dir: str | os.PathLike = "results/sft",
              forms: TargetForms | None = None, callbacks: Iterable[TrainerCallback] = (), resume: bool = False,
              ledger: LossLedger | None = None, cache_image_features: bool = True) -> TrainResult:
    """Fine-tune ``model`` (a LoRA/QLoRA ``PeftModel``) on ``train_records``; save the adapter.

    - ``settings``: :class:`SFTSettings` (or a dict of its fields).
    - ``forms``: which target form each record trains with, read when each step's batches are built (default: all
      direct). Pass the same object to a callback that changes it as training goes.
    - ``callbacks``: ``TrainerCallback`` objects. One that needs per-example losses holds the
      same ``ledger`` object that is passed here (created when not given) and reads it in, e.g.,
      ``on_step_end``; one that changes forms holds ``forms``. A callback with state of its own
      saves it in ``on_save`` and gets ``load_checkpoint(folder)`` called on resume.
    - ``resume``: continue from the newest checkpoint under ``output_dir/checkpoints`` (the
      adapter, optimizer, scheduler, RNG state, forms and ledger); starts afresh when there is
      none.
    - ``cache_image_features``: encode each image once per run (see :class:`KeyphraseTrainer`).
    Returns a :class:`TrainResult`; the adapter is in ``output_dir/adapter``."""
    if settings is None:
        settings = SFTSettings()
    elif isinstance(settings, dict):
        settings = SFTSettings.from_dict(settings)
    if not train_records:
        raise ValueError("no training records")
    output_dir = Path(output_dir)
    ckpt_dir = checkpoints_dir(output_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    forms = forms if forms is not None else TargetForms()
    ledger = ledger if ledger is not None else LossLedger()
    callbacks = list(callbacks)

    # bitsandbytes on the CPU: an earlier generate/eval forward breaks the next training step
    # unless the repacked bf16 path is off (idempotent; a no-op without 4-bit layers).
    fix_bnb_cpu_training(model)

    resume_from = last_checkpoint(output_dir) if resume else None
    if resume and resume_from is None:
        print(f"resume=True but no checkpoint in {ckpt_dir}: training from the start")
    if resume_from is not None:
        if (Path(resume_from) / FORMS_FILENAME).exists():
            forms.load_state(json.loads((Path(resume_from) / FORMS_FILENAME).read_text()))
        if (Path(resume_from) / LEDGER_FILENAME).exists():
            ledger.load_state(json.loads((Path(resume_from) / LEDGER_FILENAME).read_text()))
        for callback in callbacks:  # callbacks with state of their own (e.g. a Dynamic CoT policy)
            if hasattr(callback, "load_checkpoint"):
                callback.load_checkpoint(resume_from)

    collator = ChatCollator(processor, prompt=settings.prompt, forms=forms,
                            prompt_keyphrases=settings.prompt_keyphrases, max_length=settings.max_length)
    if settings.valid_f1_examples > 0 and valid_records:
        callbacks.append(ValidF1Callback(processor, [r.example for r in valid_records[:settings.valid_f1_examples]],
                                         prompt=settings.prompt, prompt_keyphrases=settings.prompt_keyphrases,
                                         max_new_tokens=settings.valid_f1_max_new_tokens,
                                         batch_size=settings.eval_batch_size or settings.batch_size))
    args = training_arguments(settings, ckpt_dir, has_eval=bool(valid_records))
    trainer = KeyphraseTrainer(
        model=model, args=args, collator=collator, train_dataset=RecordDataset(train_records),
        eval_dataset=RecordDataset(valid_records) if valid_records else None,
        callbacks=[_StateCheckpointCallback(forms, ledger), *callbacks], ledger=ledger,
        fused_loss=settings.fused_loss, decision_loss=settings.decision_loss, decision_weight=settings.decision_weight,
        answer_weight=settings.answer_weight, cache_image_features=cache_image_features)
    for callback in callbacks:
        if hasattr(callback, "bind"):  # callbacks that log through the trainer (ValidF1Callback)
            callback.bind(trainer)
    place_tensorboard_logs(trainer, output_dir)  # events in output_dir/runs/, not under checkpoints/

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    runtime = time.perf_counter() - start

    eval_loss = None
    if valid_records:
        done = [h for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == trainer.state.global_step]
        eval_loss = float(done[-1]["eval_loss"] if done else trainer.evaluate()["eval_loss"])
        fix_bnb_cpu_training(model)  # the model may be trained further by the caller
    adapter_dir = output_dir / ADAPTER_DIRNAME
    # Trainer.save_model writes from the main process only (and gathers ZeRO-3-sharded weights);
    # the other ranks wait until the adapter is on disk before they return.
    trainer.save_model(str(adapter_dir))
    if trainer.args.should_save:  # how the base was loaded: load_adapter/merge_adapter default to it
        write_training_record(model, adapter_dir, max_length=settings.max_length)
    trainer.accelerator.wait_for_everyone()
    train_ids = {r.id for r in train_records}
    truncated = len(collator.truncated_ids & train_ids)
    overlong = len(collator.overlong_ids & train_ids)
    if truncated:
        print(f"max_length={settings.max_length}: the prompt of {truncated} of {len(train_ids)} training examples "
              f"was truncated (answers kept whole); {overlong} still exceed it")
    peak, kind = _peak_memory()

    history = list(trainer.state.log_history)
    train_losses = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
    eval_losses = [(int(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h]
    mean_loss = output.training_loss if output.training_loss is not None and math.isfinite(output.training_loss) else None
    return TrainResult(
        output_dir=str(output_dir), adapter_dir=str(adapter_dir), steps=int(trainer.state.global_step),
        final_loss=train_losses[-1][1] if train_losses else None, mean_loss=mean_loss, eval_loss=eval_loss,
        runtime_s=runtime, tokens_per_s=trainer.tokens_seen / runtime if runtime > 0 and trainer.tokens_seen else None,
        peak_memory_bytes=peak, peak_memory_kind=kind, train_losses=train_losses, eval_losses=eval_losses,
        log_history=history, resumed_from=resume_from,
        form_counts=forms.counts(r.id for r in train_records), truncated_examples=truncated,
        overlong_examples=overlong, best_checkpoint=trainer.state.best_model_checkpoint if settings.select_best else None,
        best_metric=trainer.state.best_metric if settings.select_best else None)
