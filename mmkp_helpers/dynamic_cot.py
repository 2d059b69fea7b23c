"""Dynamic CoT: which training examples get chain-of-thought targets, decided from the training losses as training goes.

Ma et al. (EMNLP 2025) inject CoT data "adaptively during training", governed by a threshold gamma
on the SFT loss, so that the trained model reasons only when it needs to. The exact rule is not
public; this module implements it as a :class:`DynamicCoTPolicy` with named variants, each a
documented reconstruction. The policy is a transformers ``TrainerCallback`` plugged into the one
SFT entry point (:func:`mmkp_helpers.training.train_sft`): it reads the per-example losses that
training computes anyway (the :class:`~mmkp_helpers.training.LossLedger`, filled from the forward
pass itself; no extra pass) and writes each example's target form into the shared
:class:`~mmkp_helpers.collate.TargetForms`, which the collator reads when it builds the next batch.

**The variant that decides whether reasoning helps the answer's loss** (``benefit``, the default of
:class:`PolicySettings`, which needs no judge). During a warm-up
of ``warmup_epochs`` (at least 2) every example with a rationale trains in *both* forms, one per
visit, alternating (``TargetForms`` setting ``"both"``), so each has met its answer line after a
rationale and without one. The ledger keeps, per example, the loss of the answer tokens (after
``</think>`` in the CoT form, the whole direct target otherwise) in each form over the warm-up.
At the end of the warm-up an example goes to CoT when its answer is learned better with the
rationale than without: its direct answer loss minus its CoT answer loss above ``margin`` (nats per
answer token), each loss taken relative to the mean of its form in the epoch it was measured
(:meth:`DynamicCoTPolicy.detrended_answer_losses`: an example's two forms come from visits in
different epochs, and every loss falls as training goes); the others go to direct. The label then
says whether reasoning pays *for the answer*, which is what a mode choice at inference needs, and
a post's kind (what the input shows) predicts it. With ``permute=True`` the labels of that decision
are shuffled among the examples that had both forms (the same number on CoT): the control that
keeps everything but *which* examples reason.

**The variant that asks whether reasoning makes the answer right** (``correct``, notebook 05's
default). The same
warm-up in both forms; at its end the model being trained decodes every example with a rationale
twice, greedily, forced to reason and forced to answer directly (a ``judge``, e.g. the one
:func:`mmkp_helpers.experiment.dynamic_run` builds), and an example goes to CoT when its post F1@M
after a rationale is above its direct one by more than ``f1_margin``: the label is whether thinking
changes the answer's correctness (as AdaptThink and TON label or reward it), not a loss.
``permute`` shuffles these labels too.

**The readings of "gamma on the SFT loss"** (decisions every ``interval`` steps after a warm-up of
``warmup_epochs`` of direct targets; windows of ``window_epochs`` >= 1 epoch, so each example has a
loss in the window; no decision after the last optimiser step):

``per_example`` (*hard-sample injection*)
    An example whose direct-form loss over the window is above ``gamma`` switches to its CoT target.
    With ``switch_back=True`` an example on CoT returns to direct once its CoT-form loss falls below
    ``gamma``.
``quantile``
    The same rule with a dynamic gamma: the ``quantile``-quantile of the examples' direct losses at
    the decision, so a fixed share of the hardest examples reasons whatever the loss scale.
``global``
    Once the mean direct loss over the window falls below ``gamma``, a seeded random share
    ``mix_share`` of the examples moves to CoT.
``random``
    From the end of the warm-up a seeded random share ``share`` of the examples trains on CoT.

**Controls matched in exposure.** :class:`ReplayForms` is a form table for a separate run that
replays another run's CoT exposure *step by step*: at each step it puts as many of the batch's
examples in the CoT form as the reference run had CoT example-visits at that step (read from its
ledger), chosen at random, so the two runs see the same number of CoT example-visits and differ
only in which examples they were. The control can train beside its reference: an
:class:`ExposureFeed` callback writes the reference's exposure as each step ends, and a
:class:`LiveSchedule` reads it, waiting for a step that has not been written yet.

Every decision is logged: the step, the threshold, the share of examples on CoT, how many
switched each way, the share on CoT per kind of keyphrase (``kind:<kind>``) and per kind of post
(``needs:<label>``), mean losses; :meth:`DynamicCoTPolicy.exposure` gives the CoT example-visits.
``cot_share_final`` is the share of examples on CoT for the last stretch of training (no decision
is taken at the last step, so it is the share that actually trained). Resuming a run continues with
the forms it had (``train_sft`` saves them beside each checkpoint; the policy saves its own log).
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from transformers import TrainerCallback

from .collate import BOTH, TargetForms, TrainRecord

VARIANTS = ("benefit", "correct", "per_example", "quantile", "global", "random")
#: The variants that warm up in both forms and decide once, at the end of the warm-up.
BOTH_FORMS = ("benefit", "correct")
POLICY_FILENAME = "dynamic_cot_policy.json"


@dataclass
class PolicySettings:
    """The knobs of :class:`DynamicCoTPolicy` (see the module docstring for what each variant reads)."""
    variant: str = "benefit"
    margin: float = 0.1           # benefit: CoT when direct answer loss - CoT answer loss > margin (nats/token)
    permute: bool = False         # benefit, correct: shuffle the decision's labels (the permuted control)
    f1_margin: float = 0.0        # correct: CoT when the post F1@M after a rationale - the direct one > this
    gamma: float = 1.0            # loss threshold (per_example, global; logged start value for quantile)
    warmup_epochs: float = 2.0    # before the first decision (benefit: both forms; others: direct)
    interval: int = 100           # steps between two decisions (not benefit: it decides once)
    window_epochs: float = 1.0    # epochs of ledger history a decision looks at (at least 1)
    switch_back: bool = False     # per_example/quantile: CoT -> direct once the CoT loss < gamma
    quantile: float = 0.8         # quantile: gamma = this quantile of the current direct losses
    mix_share: float = 0.5        # global: share of examples moved to CoT once the mean loss < gamma
    share: float = 0.2            # random: share of examples on CoT
    seed: int = 0

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Dynamic CoT variant {self.variant!r}; choose one of {VARIANTS}")
        if self.interval < 1:
            raise ValueError("interval must be >= 1")
        if self.window_epochs < 1.0:
            raise ValueError(f"window_epochs={self.window_epochs}: a decision needs at least one epoch of losses, "
                             "so that every example has one")
        if self.warmup_epochs < (2.0 if self.variant in BOTH_FORMS else self.window_epochs):
            raise ValueError(f"warmup_epochs={self.warmup_epochs} is too short: {self.variant} needs 2 epochs (a visit in "
                             f"each form), the other variants a whole window ({self.window_epochs} epochs)")
        for name in ("quantile", "mix_share", "share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if self.permute and self.variant not in BOTH_FORMS:
            raise ValueError(f"permute is the control of the {' and '.join(BOTH_FORMS)} variants")

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
    cot_visits: int = 0                      # CoT example-visits up to this decision
    answer_losses: dict[str, dict] = field(default_factory=dict)  # benefit: per kind of post
    judged: dict[str, dict] = field(default_factory=dict)  # correct: both decodings' F1@M per kind of post
    switched_to_cot: list[str] = field(default_factory=list)
    switched_to_direct: list[str] = field(default_factory=list)


def example_groups(record: TrainRecord) -> list[str]:
    """The groups an example belongs to: ``kind:<kind>`` for each kind of keyphrase it has and
    ``needs:<label>`` for its kind of post (when the example says)."""
    groups = {f"kind:{k}" for k in record.example.kinds.values()}
    needs = (record.example.meta or {}).get("needs") if isinstance(record.example.meta, dict) else None
    if needs:
        groups.add(f"needs:{needs}")
    return sorted(groups)


def steps_per_epoch(n_records: int, args) -> int:
    """Optimizer steps per pass over ``n_records`` under ``TrainingArguments`` ``args``."""
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    return max(1, math.ceil(n_records / per_step))


class DynamicCoTPolicy(TrainerCallback):
    """Decides each example's target form from the loss ledger (see the module docstring).

    ``records``: the training records (those without a CoT target always stay direct);
    ``forms``: the :class:`TargetForms` the collator reads (pass the same object to ``train_sft``);
    ``ledger``: the :class:`~mmkp_helpers.training.LossLedger` (pass the same object to ``train_sft``).
    ``epoch_steps``: optimizer steps per epoch (set from the trainer's arguments when training
    begins; give it to call :meth:`decide` by hand, as tests do)."""

    def __init__(self, records: Sequence[TrainRecord], forms: TargetForms, ledger,
                 settings: PolicySettings | dict | None = None, epoch_steps: int | None = None, judge=None):
        settings = settings or PolicySettings()
        self.settings = PolicySettings.from_dict(settings) if isinstance(settings, dict) else settings
        self.settings.check()
        self.forms = forms
        self.ledger = ledger
        self.judge = judge  # correct: (model, ids) -> {id: (F1@M after a rationale, direct F1@M)}
        self.judge_scores: dict[str, tuple[float, float]] = {}  # correct: the judge's last scores, per id
        self.ids = [r.id for r in records]
        self.eligible = {r.id for r in records if r.cot is not None}
        self.groups = {r.id: example_groups(r) for r in records}
        self.log: list[Decision] = []
        self.switched_once: set[str] = set()  # global/random: the one-time switch happened
        self.epoch_steps = epoch_steps
        self.max_steps: int | None = None
        start = BOTH if self.settings.variant in BOTH_FORMS else "direct"
        forms.update({i: start if i in self.eligible else "direct" for i in self.ids})
        forms.set_default("direct")

    # ------------------------------------------------------------------ the schedule
    @property
    def warmup_steps(self) -> int:
        return int(round(self.settings.warmup_epochs * self._epoch()))

    @property
    def window_steps(self) -> int:
        """Steps of ledger history a decision reads: ``window_epochs``; for ``benefit`` the whole
        warm-up (its two forms come from visits in different epochs)."""
        window = int(round(self.settings.window_epochs * self._epoch()))
        return max(window, self.warmup_steps) if self.settings.variant in BOTH_FORMS else window

    def _epoch(self) -> int:
        if self.epoch_steps is None:
            raise ValueError("epoch_steps is unknown: train with train_sft, or pass epoch_steps")
        return self.epoch_steps

    def is_decision_step(self, step: int) -> bool:
        """A decision is taken at the end of the warm-up and (not benefit) every ``interval`` steps
        after it, never at or after the last optimizer step (nothing would train on it)."""
        if self.max_steps is not None and step >= self.max_steps:
            return False
        if step < self.warmup_steps:
            return False
        if self.settings.variant in BOTH_FORMS:
            return step == self.warmup_steps
        return (step - self.warmup_steps) % self.settings.interval == 0

    # ------------------------------------------------------------------ the callback
    def on_train_begin(self, args, state, control, **kwargs):
        self.epoch_steps = steps_per_epoch(len(self.ids), args)
        self.max_steps = int(state.max_steps) if state.max_steps and state.max_steps > 0 else None
        return control

    def on_step_end(self, args, state, control, **kwargs):
        step = int(state.global_step)
        if self.is_decision_step(step):
            self.decide(step, model=kwargs.get("model"))
        return control

    def __getstate__(self) -> dict:  # picklable: a run trained in a worker returns its policy, not its judge
        return {k: v for k, v in self.__dict__.items() if k != "judge"} | {"judge": None}

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self.save(folder / POLICY_FILENAME)
        return control

    def load_checkpoint(self, folder: str | os.PathLike) -> None:
        """Called by ``train_sft(..., resume=True)`` with the checkpoint it resumes from."""
        if (Path(folder) / POLICY_FILENAME).exists():
            self.load(Path(folder) / POLICY_FILENAME)

    # ------------------------------------------------------------------ the rules
    def _recent(self, step: int, form: str, answer: bool = False) -> dict[str, float]:
        """Each example's mean loss in ``form`` over the ledger records of the last window
        (``answer``: the answer line's loss rather than the whole target's)."""
        sums: dict[str, list[float]] = {}
        for h in self.ledger.since(step - self.window_steps):
            if h[2] == form and h[0] <= step:
                sums.setdefault(h[1], []).append(h[4] if answer else h[3])
        return {i: sum(v) / len(v) for i, v in sums.items()}

    def _random_pick(self, share: float, salt: str) -> set[str]:
        pool = sorted(self.eligible)
        rng = random.Random(f"{self.settings.seed}-{salt}")
        return set(rng.sample(pool, int(round(share * len(pool))))) if pool else set()

    def detrended_answer_losses(self, step: int) -> dict[str, dict[str, float]]:
        """Per form (``direct``, ``cot``), each example's answer loss over the window, each visit's
        loss taken relative to the mean answer loss of its form in the same epoch (over all
        examples). Every loss falls as training goes, and an example's two forms are visited in
        different epochs, so raw losses would compare an early visit with a late one; relative to
        its epoch's mean, a loss says how hard this example's answer is in that form."""
        epoch = self._epoch()
        entries = [h for h in self.ledger.since(step - self.window_steps) if h[0] <= step and h[2] in ("direct", "cot")]
        sums: dict[tuple[str, int], list[float]] = {}
        for h in entries:
            sums.setdefault((h[2], h[0] // epoch), []).append(h[4])
        base = {k: sum(v) / len(v) for k, v in sums.items()}
        out: dict[str, dict[str, list[float]]] = {"direct": {}, "cot": {}}
        for h in entries:
            out[h[2]].setdefault(h[1], []).append(h[4] - base[(h[2], h[0] // epoch)])
        return {f: {i: sum(v) / len(v) for i, v in by_id.items()} for f, by_id in out.items()}

    def benefit_labels(self, step: int) -> tuple[dict[str, str], dict[str, dict]]:
        """``(id -> form, answer losses by kind of post)`` of the benefit rule at ``step``
        (permuted when ``permute``); examples without a loss in both forms go to direct. The
        losses compared are :meth:`detrended_answer_losses`; the summary gives both the raw and
        the compared ones per kind of post."""
        s = self.settings
        rel = self.detrended_answer_losses(step)
        direct, cot = rel["direct"], rel["cot"]
        raw_direct, raw_cot = self._recent(step, "direct", answer=True), self._recent(step, "cot", answer=True)
        both = sorted(i for i in self.eligible if i in direct and i in cot)
        labels = self._permuted({i: ("cot" if direct[i] - cot[i] > s.margin else "direct") for i in both}, step)
        forms = {i: labels.get(i, "direct") for i in self.ids}
        summary: dict[str, dict] = {}
        for i in both:
            for g in (g for g in self.groups[i] if g.startswith("needs:")):
                row = summary.setdefault(g, {"n": 0, "direct": 0.0, "cot": 0.0, "benefit": 0.0, "to_cot": 0})
                row["n"] += 1
                row["direct"] += raw_direct[i]
                row["cot"] += raw_cot[i]
                row["benefit"] += direct[i] - cot[i]
                row["to_cot"] += labels[i] == "cot"
        for row in summary.values():
            for k in ("direct", "cot", "benefit"):
                row[k] = round(row[k] / row["n"], 4)
        return forms, summary

    def _permuted(self, labels: dict[str, str], step: int) -> dict[str, str]:
        """``labels`` as they are, or (``permute``) shuffled among the same examples."""
        if not self.settings.permute:
            return labels
        ids = sorted(labels)
        shuffled = [labels[i] for i in ids]
        random.Random(f"{self.settings.seed}-permute-{step}").shuffle(shuffled)
        return dict(zip(ids, shuffled))

    def correct_labels(self, step: int, model=None) -> tuple[dict[str, str], dict[str, dict]]:
        """``(id -> form, both decodings' mean F1@M and the posts sent to CoT by kind of post)`` of
        the correct rule at ``step``: the ``judge`` decodes every example with a rationale both ways
        with ``model``; CoT where the F1@M after a rationale beats the direct one by more than
        ``f1_margin`` (permuted when ``permute``)."""
        if self.judge is None:
            raise ValueError("the correct variant needs a judge: (model, ids) -> {id: (F1@M after a rationale, "
                             "direct F1@M)}, as experiment.dynamic_run builds")
        ids = sorted(self.eligible)
        scores = self.judge_scores = self.judge(model, ids)
        labels = self._permuted({i: "cot" if scores[i][0] - scores[i][1] > self.settings.f1_margin else "direct"
                                 for i in ids}, step)
        summary: dict[str, dict] = {}
        for i in ids:
            for g in (g for g in self.groups[i] if g.startswith("needs:")):
                row = summary.setdefault(g, {"n": 0, "think_f1": 0.0, "direct_f1": 0.0, "helps": 0, "to_cot": 0})
                row["n"] += 1
                row["think_f1"] += scores[i][0]
                row["direct_f1"] += scores[i][1]
                row["helps"] += scores[i][0] - scores[i][1] > self.settings.f1_margin
                row["to_cot"] += labels[i] == "cot"
        for row in summary.values():
            row["think_f1"], row["direct_f1"] = round(row["think_f1"] / row["n"], 4), round(row["direct_f1"] / row["n"], 4)
        return {i: labels.get(i, "direct") for i in self.ids}, summary

    def decide(self, step: int, model=None) -> Decision:
        """Apply the variant's rule at ``step`` (``model``: the model being trained, which the
        ``correct`` variant's judge decodes with); returns (and logs) the decision."""
        s = self.settings
        direct = self._recent(step, "direct")
        mean_direct = sum(direct.values()) / len(direct) if direct else None
        changes: dict[str, str] = {}
        gamma: float | None = s.gamma
        answer_losses: dict[str, dict] = {}
        judged: dict[str, dict] = {}
        if s.variant == "benefit":
            changes, answer_losses = self.benefit_labels(step)
            gamma = s.margin
        elif s.variant == "correct":
            changes, judged = self.correct_labels(step, model)
            gamma = s.f1_margin
        elif s.variant in ("per_example", "quantile"):
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
                            mean_direct_loss=mean_direct, cot_visits=sum(self.ledger.exposure().values()),
                            answer_losses=answer_losses, judged=judged, switched_to_cot=to_cot,
                            switched_to_direct=to_direct)
        self.log.append(decision)
        return decision

    # ------------------------------------------------------------------ reporting and state
    def cot_ids(self) -> list[str]:
        return [i for i in self.ids if self.forms[i] == "cot"]

    def cot_share(self) -> float:
        """The share of examples whose form is CoT now (``both`` counts as half)."""
        if not self.ids:
            return 0.0
        return sum(1.0 if self.forms[i] == "cot" else 0.5 if self.forms[i] == BOTH else 0.0 for i in self.ids) / len(self.ids)

    def share_by_kind(self) -> dict[str, float]:
        """Per group (``kind:<kind>``, ``needs:<label>``), the share of its examples on CoT."""
        out: dict[str, list[float]] = {}
        for i in self.ids:
            on = 1.0 if self.forms[i] == "cot" else 0.5 if self.forms[i] == BOTH else 0.0
            for g in self.groups[i]:
                row = out.setdefault(g, [0.0, 0])
                row[0] += on
                row[1] += 1
        return {k: v[0] / v[1] for k, v in sorted(out.items())}

    def exposure(self) -> dict:
        """CoT example-visits: in all, per step (from the ledger) and per stretch between decisions."""
        per_step = self.ledger.exposure()
        marks = [0] + [d.step for d in self.log]
        stretches = [{"from_step": a, "cot_visits": sum(v for s, v in per_step.items() if a <= s < b)}
                     for a, b in zip(marks, marks[1:] + [10 ** 9])]
        return {"cot_visits": sum(per_step.values()), "per_step": {str(k): v for k, v in sorted(per_step.items())},
                "stretches": stretches}

    def log_records(self) -> list[dict]:
        return [asdict(d) for d in self.log]

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "log": self.log_records(), "switched_once": sorted(self.switched_once),
                "epoch_steps": self.epoch_steps}

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
        self.epoch_steps = data.get("epoch_steps", self.epoch_steps)


class ReplayForms(TargetForms):
    """A form table that replays a reference run's CoT exposure step by step: at step t, of the
    batch's examples that have a CoT target, as many as the reference run had CoT example-visits
    at step t (``schedule[t]``) train in the CoT form, the others in the direct one; which ones is
    drawn at random (seeded by the step). With the same seed as the reference (the same batches)
    the two runs have exactly the same number of CoT example-visits at every step; they differ only
    in which examples those were. Evaluation batches (no step) train nothing and read the default."""

    def __init__(self, schedule: Mapping[int, int], eligible: Sequence[str], seed: int = 0):
        super().__init__("direct", seed=seed)
        self.schedule = schedule if isinstance(schedule, LiveSchedule) else {int(k): int(v) for k, v in schedule.items()}
        self.eligible = set(eligible)
        self.short = 0  # steps where the batch had fewer eligible examples than the schedule asked

    def plan(self, ids: Sequence[str], step: int | None) -> list[str]:
        if step is None:
            return ["direct"] * len(ids)
        want = self.schedule.get(int(step), 0)
        pool = [k for k, i in enumerate(ids) if i in self.eligible]
        if want > len(pool):
            self.short += 1
        chosen = set(random.Random(f"{self.seed}-replay-{step}").sample(pool, min(want, len(pool))))
        return ["cot" if k in chosen else "direct" for k in range(len(ids))]

    @classmethod
    def of(cls, ledger, eligible: Sequence[str], seed: int = 0) -> "ReplayForms":
        """The replay of the run whose ledger is ``ledger``."""
        return cls(ledger.exposure(), eligible, seed)


class ExposureFeed(TrainerCallback):
    """Writes a run's CoT example-visits per step to ``path`` as training goes (a line
    ``"<step> <visits>"`` when each optimizer step ends, steps without a CoT visit included, then
    ``"end"``), for a :class:`LiveSchedule` in a control that trains beside the run."""

    def __init__(self, ledger, path: str | os.PathLike):
        self.ledger, self.path, self._seen = ledger, Path(path), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def on_step_end(self, args, state, control, **kwargs):
        step = int(state.global_step) - 1  # the ledger's step of the batches that just trained
        new = self.ledger.history[self._seen:]
        self._seen = len(self.ledger.history)
        visits = sum(h[2] == "cot" for h in new if h[0] == step)
        with open(self.path, "a") as f:
            f.write(f"{step} {visits}\n")
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.close(self.path)
        return control

    @staticmethod
    def close(path: str | os.PathLike, failed: bool = False) -> None:
        """End the feed (``failed``: the reference run stopped with an error; the control stops too)."""
        with open(path, "a") as f:
            f.write("failed\n" if failed else "end\n")


class LiveSchedule(Mapping):
    """The reference run's CoT example-visits per step as its :class:`ExposureFeed` writes them
    (the ``schedule`` of a :class:`ReplayForms`): :meth:`get` of a step not written yet waits for it
    (polling every ``poll`` seconds, at most ``timeout``); a step the feed ended without is 0."""

    def __init__(self, path: str | os.PathLike, timeout: float = 6 * 3600, poll: float = 0.005):
        self.path, self.timeout, self.poll = Path(path), timeout, poll
        self._visits: dict[int, int] = {}
        self._offset, self._ended = 0, False

    def _read(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path) as f:
            f.seek(self._offset)
            chunk = f.read()
        done = chunk[:chunk.rfind("\n") + 1]  # whole lines only
        self._offset += len(done)
        for line in done.splitlines():
            if line == "failed":
                raise RuntimeError(f"the reference run stopped with an error ({self.path})")
            if line == "end":
                self._ended = True
            elif line:
                step, visits = map(int, line.split())
                self._visits[step] = visits

    def get(self, step: int, default: int = 0) -> int:
        import time

        deadline = time.monotonic() + self.timeout
        while step not in self._visits and not self._ended:
            self._read()
            if step in self._visits or self._ended:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no exposure for step {step} in {self.path} after {self.timeout} s")
            time.sleep(self.poll)
        return self._visits.get(step, default)

    def __getitem__(self, step: int) -> int:
        return self.get(step)

    def __iter__(self):
        return iter(dict(self._visits))

    def __len__(self) -> int:
        return len(self._visits)


def _quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default), of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
