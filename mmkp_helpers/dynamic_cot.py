"""Dynamic CoT: which training examples get chain-of-thought targets, decided from the SFT loss as training goes.

Ma et al. (EMNLP 2025) inject CoT data "adaptively during training", governed by a threshold gamma
on the SFT loss, so that the trained model reasons only when it needs to. The exact rule is not
public; this module implements it as a :class:`DynamicCoTPolicy` with named variants, each a
documented reconstruction. The policy is a transformers ``TrainerCallback`` plugged into the one
SFT entry point (:func:`mmkp_helpers.training.train_sft`): it reads the per-example losses that
training computes anyway (the :class:`~mmkp_helpers.training.LossLedger`, filled from the forward
pass itself; no extra pass) and writes each example's target form into the shared
:class:`~mmkp_helpers.collate.TargetForms`, which the collator reads when it builds the next batch.

Variants (every one starts with ``warmup_steps`` of direct targets for everybody, then decides
every ``interval`` steps; an example without a kept rationale always stays direct):

``per_example`` (the default; *hard-sample injection*)
    An example whose recent direct-form loss (the mean of its ledger entries in the direct form
    over the last ``window`` steps) is above ``gamma`` switches to its CoT target: the examples
    the model still gets wrong are taught to reason. Assumes the paper's gamma is a per-sample
    loss threshold, the reading closest to "the model reasons only when it needs to". With
    ``switch_back=True`` an example on CoT returns to direct once its CoT-form loss (over the
    whole rationale + answer) falls below ``gamma`` (its reasoning is learned); by default a
    switched example stays on CoT.
``quantile``
    The same rule with a dynamic gamma: the ``quantile``-quantile of the latest direct-form
    losses of all examples at the moment of deciding, so a fixed share ``1 - quantile`` of the
    hardest examples reasons whatever the loss scale (a reconstruction for settings where a fixed
    gamma would need tuning per model).
``global``
    A switch on the running mean SFT loss: once the mean direct-form loss over the last
    ``window`` steps falls below ``gamma``, a seeded random share ``mix_share`` of the examples
    moves to CoT targets (the reading "CoT data is injected once SFT has converged enough").
``random``
    The control: from the end of the warm-up, a seeded random share ``share`` of the examples
    trains on CoT targets, by default the share the chosen dynamic variant ended with, so that a
    comparison isolates *which* examples reason from *how many*.

The policy logs at every decision: the step, gamma, the share of examples on CoT, how many
switched each way, and per kind of example (``kind:<kind>`` = the examples that have a keyphrase
of that kind, e.g. ``kind:tag`` the recurring accounts' posts) the share on CoT. Resuming a run
continues with the forms it had: ``train_sft`` saves the forms beside each checkpoint, and the
policy's own log and state go there too (:meth:`DynamicCoTPolicy.save` / ``load``).
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from transformers import TrainerCallback

from .collate import TargetForms, TrainRecord

VARIANTS = ("per_example", "quantile", "global", "random")
POLICY_FILENAME = "dynamic_cot_policy.json"


@dataclass
class PolicySettings:
    """The knobs of :class:`DynamicCoTPolicy` (see the module docstring for what each variant reads)."""
    variant: str = "per_example"
    gamma: float = 1.0            # loss threshold (per_example, global; the start value logged for quantile)
    warmup_steps: int = 100       # direct targets for everybody until this step
    interval: int = 50            # steps between two decisions
    window: int = 50              # steps of ledger history a decision looks at
    switch_back: bool = False     # per_example/quantile: CoT -> direct once the CoT loss < gamma
    quantile: float = 0.8         # quantile: gamma = this quantile of the current direct losses
    mix_share: float = 0.5        # global: share of examples moved to CoT once the mean loss < gamma
    share: float = 0.2            # random: share of examples on CoT
    seed: int = 0

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Dynamic CoT variant {self.variant!r}; choose one of {VARIANTS}")
        if self.interval < 1 or self.window < 1 or self.warmup_steps < 0:
            raise ValueError("interval and window must be >= 1, warmup_steps >= 0")
        for name in ("quantile", "mix_share", "share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")

    @classmethod
    def from_dict(cls, values: dict) -> "PolicySettings":
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown Dynamic CoT settings {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


@dataclass
class Decision:
    """One decision of the policy (what :attr:`DynamicCoTPolicy.log` holds)."""
    step: int
    gamma: float | None
    cot_share: float
    to_cot: int
    to_direct: int
    by_kind: dict[str, float] = field(default_factory=dict)
    mean_direct_loss: float | None = None
    switched_to_cot: list[str] = field(default_factory=list)
    switched_to_direct: list[str] = field(default_factory=list)


def example_kinds(record: TrainRecord) -> list[str]:
    """The kinds of keyphrase an example has (``meta["kinds"]`` values), e.g. ``["present", "tag"]``."""
    return sorted({str(k) for k in record.example.kinds.values()})


class DynamicCoTPolicy(TrainerCallback):
    """Decides each example's target form from the loss ledger (see the module docstring).

    ``records``: the training records (those without a CoT target always stay direct);
    ``forms``: the :class:`TargetForms` the collator reads (pass the same object to ``train_sft``);
    ``ledger``: the :class:`~mmkp_helpers.training.LossLedger` (pass the same object to ``train_sft``).
    :meth:`decide` can be called directly (tests do, on a constructed ledger)."""

    def __init__(self, records: Sequence[TrainRecord], forms: TargetForms, ledger, settings: PolicySettings | dict | None = None):
        settings = settings or PolicySettings()
        self.settings = PolicySettings.from_dict(settings) if isinstance(settings, dict) else settings
        self.settings.check()
        self.forms = forms
        self.ledger = ledger
        self.ids = [r.id for r in records]
        self.eligible = {r.id for r in records if r.cot is not None}
        self.kinds = {r.id: example_kinds(r) for r in records}
        self.log: list[Decision] = []
        self.switched_once: set[str] = set()  # global/random: the one-time switch happened
        for i in self.ids:
            forms[i] = "direct"
        forms.set_default("direct")

    # ------------------------------------------------------------------ the callback
    def on_step_end(self, args, state, control, **kwargs):
        step = int(state.global_step)
        s = self.settings
        if step >= s.warmup_steps and (step - s.warmup_steps) % s.interval == 0:
            self.decide(step)
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self.save(folder / POLICY_FILENAME)
        return control

    def load_checkpoint(self, folder: str | os.PathLike) -> None:
        """Called by ``train_sft(..., resume=True)`` with the checkpoint it resumes from."""
        if (Path(folder) / POLICY_FILENAME).exists():
            self.load(Path(folder) / POLICY_FILENAME)

    # ------------------------------------------------------------------ the rule
    def _recent(self, step: int, form: str) -> dict[str, float]:
        """Each example's mean loss in ``form`` over the ledger records of the last ``window`` steps."""
        sums: dict[str, list[float]] = {}
        for s, example_id, f, loss in self.ledger.since(step - self.settings.window):
            if f == form and s <= step:
                sums.setdefault(example_id, []).append(loss)
        return {i: sum(v) / len(v) for i, v in sums.items()}

    def _random_pick(self, share: float, salt: str) -> set[str]:
        pool = sorted(self.eligible)
        rng = random.Random(f"{self.settings.seed}-{salt}")
        return set(rng.sample(pool, int(round(share * len(pool))))) if pool else set()

    def decide(self, step: int) -> Decision:
        """Apply the variant's rule at ``step``; returns (and logs) the decision."""
        s = self.settings
        direct = self._recent(step, "direct")
        mean_direct = sum(direct.values()) / len(direct) if direct else None
        changes: dict[str, str] = {}
        gamma: float | None = s.gamma
        if s.variant in ("per_example", "quantile"):
            if s.variant == "quantile":
                losses = sorted(direct.values())
                gamma = _quantile(losses, s.quantile) if losses else None
            if gamma is not None:
                for i, loss in direct.items():
                    if i in self.eligible and self.forms[i] == "direct" and loss > gamma:
                        changes[i] = "cot"
                if s.switch_back:
                    for i, loss in self._recent(step, "cot").items():
                        if self.forms[i] == "cot" and loss < gamma:
                            changes[i] = "direct"
        elif s.variant == "global":
            if "global" not in self.switched_once and mean_direct is not None and mean_direct < s.gamma:
                changes = dict.fromkeys(self._random_pick(s.mix_share, "global"), "cot")
                self.switched_once.add("global")
        else:  # random
            gamma = None
            if "random" not in self.switched_once:
                changes = dict.fromkeys(self._random_pick(s.share, "random"), "cot")
                self.switched_once.add("random")
        before = {i: self.forms[i] for i in changes}
        if changes:
            self.forms.update(changes)
        to_cot = sorted(i for i, f in changes.items() if f == "cot" and before[i] != "cot")
        to_direct = sorted(i for i, f in changes.items() if f == "direct" and before[i] != "direct")
        decision = Decision(step=step, gamma=None if gamma is None else float(gamma), cot_share=self.cot_share(),
                            to_cot=len(to_cot), to_direct=len(to_direct), by_kind=self.share_by_kind(),
                            mean_direct_loss=mean_direct, switched_to_cot=to_cot, switched_to_direct=to_direct)
        self.log.append(decision)
        return decision

    # ------------------------------------------------------------------ reporting and state
    def cot_ids(self) -> list[str]:
        return [i for i in self.ids if self.forms[i] == "cot"]

    def cot_share(self) -> float:
        return len(self.cot_ids()) / len(self.ids) if self.ids else 0.0

    def share_by_kind(self) -> dict[str, float]:
        """Per kind, the share of the examples having a keyphrase of that kind that are on CoT."""
        out: dict[str, list[int]] = {}
        for i in self.ids:
            on = int(self.forms[i] == "cot")
            for kind in self.kinds[i]:
                out.setdefault(f"kind:{kind}", [0, 0])
                out[f"kind:{kind}"][0] += on
                out[f"kind:{kind}"][1] += 1
        return {k: v[0] / v[1] for k, v in sorted(out.items())}

    def log_records(self) -> list[dict]:
        return [asdict(d) for d in self.log]

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "log": self.log_records(), "switched_once": sorted(self.switched_once)}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Restore the log and the one-time switches of a checkpoint (the forms come back with
        ``train_sft``'s own checkpoint state)."""
        data = json.loads(Path(path).read_text())
        self.log = [Decision(**d) for d in data.get("log", [])]
        self.switched_once = set(data.get("switched_once", []))


def _quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default), of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
