"""Per-example, per-token training losses, and the ledger that keeps them for callbacks.

:func:`token_losses` / :func:`fused_token_losses` give the next-token loss at every supervised
position of a batch (the second only at the labelled (row, position) pairs, through
:func:`mmkp_helpers.losses.linear_cross_entropy`); :class:`LossLedger` records each training
example's mean loss, whole target and answer line, at every visit (Dynamic CoT reads it).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .collate import IGNORE_INDEX
from .losses import linear_cross_entropy


# --------------------------------------------------------------------------------------------
# Per-example losses
# --------------------------------------------------------------------------------------------
def token_losses(logits: torch.Tensor, labels: torch.Tensor,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy: ``(losses, mask)``, both ``(batch, positions)``.

    Without ``positions``, ``logits`` cover the whole sequence and position ``t`` scores the
    prediction of ``labels[:, t+1]`` from ``logits[:, t]`` (``length-1`` positions). With
    ``positions`` (1-D, the sequence positions the logits were computed at, see
    :func:`loss_positions`), ``logits[:, i]`` scores ``labels[:, positions[i] + 1]``.
    Targets equal to ``-100`` have loss 0 and mask 0. Computed in float32."""
    if positions is None:
        logits = logits[:, :-1, :]
        targets = labels[:, 1:]
    else:
        targets = labels[:, positions.to(labels.device) + 1]
    targets = targets.to(logits.device)
    losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    mask = (targets != IGNORE_INDEX).to(losses.dtype)
    return losses * mask, mask


def loss_positions(labels: torch.Tensor) -> torch.Tensor:
    """The sequence positions whose logits any row of the batch needs (``t`` such that
    ``labels[:, t+1]`` is supervised somewhere). Passed to the model as ``logits_to_keep``, the
    vocabulary projection runs on the answer spans only, not on the prompt and image tokens:
    with a 152k vocabulary that is most of the time and memory of a step."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)


def fused_token_losses(parts, inputs: dict, labels: torch.Tensor):
    """The trainer's loss path with :func:`mmkp_helpers.losses.linear_cross_entropy`:
    ``(outputs, losses, mask)`` with ``losses``/``mask`` shaped ``(batch, length-1)`` as
    :func:`token_losses` gives them, the logits computed only at the labelled (row, position) pairs."""
    body, head = parts
    outputs = body(**inputs, use_cache=False)
    hidden = outputs.last_hidden_state
    targets = labels[:, 1:].to(hidden.device)
    mask = targets != IGNORE_INDEX
    rows, cols = mask.nonzero(as_tuple=True)
    picked = linear_cross_entropy(hidden[rows, cols], head.weight, targets[rows, cols])
    losses = torch.zeros(targets.shape, dtype=picked.dtype, device=hidden.device).index_put((rows, cols), picked)
    return outputs, losses, mask.to(losses.dtype)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's mean token loss over its supervised tokens, and that token count.

    Returns ``(loss[batch], n_tokens[batch])``; an example without supervised tokens has loss 0."""
    losses, mask = token_losses(logits, labels)
    counts = mask.sum(dim=1)
    return losses.sum(dim=1) / counts.clamp(min=1), counts


class LossLedger:
    """Per-example training losses as training computes them.

    ``history`` holds ``(step, example_id, form, loss, answer_loss)`` for every example of every
    training batch (``step`` = optimizer steps completed when the batch ran; ``loss`` the mean
    token loss of the whole target, ``answer_loss`` that of its answer line: after ``</think>``
    in the CoT form, the whole target in the direct form); ``latest[id][form]`` the most recent
    loss of an example in a form. Dynamic CoT reads it from a callback; every entry in the CoT form
    is one CoT example-visit (:meth:`exposure`)."""

    def __init__(self):
        self.history: list[tuple[int, str, str, float, float]] = []
        self.latest: dict[str, dict[str, float]] = {}

    def record(self, step: int, ids: Sequence[str], forms: Sequence[str], losses: Sequence[float],
               answer_losses: Sequence[float] | None = None) -> None:
        answer_losses = losses if answer_losses is None else answer_losses
        for example_id, form, loss, answer in zip(ids, forms, losses, answer_losses):
            loss = float(loss)
            self.history.append((int(step), example_id, form, loss, float(answer)))
            self.latest.setdefault(example_id, {})[form] = loss

    def form_counts(self) -> dict[str, int]:
        """Training visits so far in each form."""
        out = {"direct": 0, "cot": 0}
        for h in self.history:
            out[h[2]] = out.get(h[2], 0) + 1
        return out

    def exposure(self) -> dict[int, int]:
        """CoT example-visits per step (steps without one left out)."""
        out: dict[int, int] = {}
        for h in self.history:
            if h[2] == "cot":
                out[h[0]] = out.get(h[0], 0) + 1
        return out

    def since(self, step: int) -> list[tuple[int, str, str, float]]:
        """The records of steps ``>= step``."""
        return [h for h in self.history if h[0] >= step]

    def mean_by_form(self, step_from: int = 0) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for s, _, form, loss, _ in self.history:
            if s >= step_from:
                sums.setdefault(form, []).append(loss)
        return {f: sum(v) / len(v) for f, v in sums.items()}

    def to_dict(self) -> dict:
        return {"history": [list(h) for h in self.history], "latest": self.latest}

    def load_state(self, data: dict) -> None:
        """Replace the contents in place (holders of the reference see them)."""
        self.history = [(int(h[0]), str(h[1]), str(h[2]), float(h[3]), float(h[4] if len(h) > 4 else h[3]))
                        for h in data.get("history", [])]
        self.latest = {k: dict(v) for k, v in data.get("latest", {}).items()}

    def __len__(self) -> int:
        return len(self.history)


