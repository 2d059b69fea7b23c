"""Watching a training run: keyphrase F1 on a valid sample, best-checkpoint selection, reporting.

:class:`ValidF1Callback` generates keyphrases for a small valid sample at every evaluation
(:func:`mmkp_helpers.inference.generate`, greedy), scores them with
:func:`mmkp_helpers.metrics.score_examples`, and adds ``eval_f1_m`` (F1@M over all keyphrases)
to the evaluation metrics (so the ``Trainer`` can select the best checkpoint by it:
``metric_for_best_model="eval_f1_m"``, ``greater_is_better=True``,
``load_best_model_at_end=True``, which :func:`mmkp_helpers.training.train_sft` sets with
``SFTSettings(valid_f1_examples=N, select_best=True)``) and logs it (log history, TensorBoard).

:func:`report_to_list` checks ``SFTSettings.report_to``; :func:`place_tensorboard_logs` puts
TensorBoard event files under the run's ``output_dir/runs/`` (the ``Trainer`` would put them
under ``output_dir/checkpoints/runs/``).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

from transformers import TrainerCallback

from .data import Example
from .modeling import fix_bnb_cpu_training

F1_METRIC = "eval_f1_m"
REPORTERS = ("none", "tensorboard", "wandb")


class ValidF1Callback(TrainerCallback):
    """At each evaluation: keyphrase F1@M of the model on ``examples`` as ``eval_f1_m``.

    ``prompt`` / ``prompt_keyphrases`` must be those training used; ``max_new_tokens`` bounds
    each generation. ``history`` holds ``(step, f1)`` of every evaluation. :meth:`bind` gives it
    the trainer, through which the value is logged (``train_sft`` does it); unbound, it is
    added to ``state.log_history`` directly."""

    def __init__(self, processor, examples: Sequence[Example], prompt="direct", prompt_keyphrases: int = 5,
                 max_new_tokens: int = 32, batch_size: int = 8):
        if not examples:
            raise ValueError("ValidF1Callback needs at least one valid example")
        self.processor = processor
        self.examples = list(examples)
        self.prompt = prompt
        self.prompt_keyphrases = prompt_keyphrases
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.history: list[tuple[int, float]] = []
        self.trainer = None

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def score(self, model) -> float:
        """F1@M (all keyphrases) of greedy generations on the sample."""
        from .inference import evaluate, generate

        generations = generate(model, self.processor, self.examples, prompt=self.prompt,
                               prompt_keyphrases=self.prompt_keyphrases, max_new_tokens=self.max_new_tokens,
                               batch_size=self.batch_size, progress=False)
        return float(evaluate(generations, self.examples)["all"]["F1@M"])

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        f1 = self.score(model)
        # generate() leaves the model as it found it; training resumes in train mode, and on the
        # CPU 4-bit layers must leave the bf16 path an eval forward switched on
        model.train()
        fix_bnb_cpu_training(model)
        self.history.append((int(state.global_step), f1))
        if metrics is not None:  # the dict the Trainer then selects the best checkpoint from
            metrics[F1_METRIC] = f1
        if self.trainer is not None:
            self.trainer.log({F1_METRIC: f1})
        else:
            state.log_history.append({F1_METRIC: f1, "step": int(state.global_step)})
        return control


def report_to_list(report_to: str | Sequence[str] | None) -> list[str]:
    """``SFTSettings.report_to`` as the ``Trainer``'s list: ``"none"`` -> ``[]``,
    ``"tensorboard"``, ``"wandb"`` (or a list of them). ``wandb`` must be installed (it is not a
    dependency of this project); tensorboard is."""
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [n for n in names if n != "none"]
    unknown = sorted(set(names) - set(REPORTERS))
    if unknown:
        raise ValueError(f"unknown report_to {unknown}; choose from {list(REPORTERS)}")
    if "wandb" in names and importlib.util.find_spec("wandb") is None:
        raise ValueError("report_to='wandb' needs the wandb package, which is not installed (it is not a "
                         "dependency of this project): pip install wandb, then wandb login; or use "
                         "report_to='tensorboard'")
    if "tensorboard" in names and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("report_to='tensorboard' needs the tensorboard package: pip install tensorboard")
    return names


def place_tensorboard_logs(trainer, output_dir: str | os.PathLike) -> str | None:
    """Point the trainer's TensorBoard callback at ``output_dir/runs/<date>_<host>`` (unless
    ``TENSORBOARD_LOGGING_DIR`` says otherwise); returns that folder, or None without one."""
    from transformers.integrations import TensorBoardCallback
    from transformers.integrations.integration_utils import default_logdir

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            if not os.getenv("TENSORBOARD_LOGGING_DIR"):
                callback.logging_dir = str(Path(output_dir) / default_logdir())
            return callback.logging_dir
    return None
