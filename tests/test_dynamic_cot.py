"""Dynamic CoT policies: each variant switches exactly the expected examples at the expected steps
on a constructed loss ledger (the benefit variant from both forms' answer losses); no decision at or
after the last step; the replayed control matches the CoT exposure step by step; in a real (tiny)
training run the logged CoT share is what trained, and a resumed run ends with the forms of an
uninterrupted one."""
from __future__ import annotations

import pickle

import pytest
import torch
from transformers import TrainerCallback

from mmkp_helpers.collate import BOTH, TargetForms, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.dynamic_cot import DynamicCoTPolicy, PolicySettings, ReplayForms, _quantile
from mmkp_helpers.training import LossLedger, SFTSettings, train_sft


def _records(n=6, without_rationale=(5,), needs=("text", "composition")):
    kinds = ["present", "tag", "text+image", "image", "present", "tag"]
    examples = [Example(f"e{i}", f"post {i}", [f"kp{i}"], meta={"kinds": {f"kp{i}": kinds[i % len(kinds)]},
                                                                 "needs": needs[i % len(needs)]})
                for i in range(n)]
    rationales = {ex.id: f"because {i}" for i, ex in enumerate(examples) if i not in without_rationale}
    return make_records(examples, rationales)


def _ledger(entries):
    """entries: (step, id, form, loss[, answer loss])."""
    ledger = LossLedger()
    for step, i, form, loss, *answer in entries:
        ledger.record(step, [i], [form], [loss], [answer[0] if answer else loss])
    return ledger


def _old(**kw):
    """A reading of gamma on the SFT loss, with one-epoch windows of 50 steps (epoch_steps=50)."""
    return dict(warmup_epochs=2.0, window_epochs=1.0, interval=50) | kw


def test_benefit_labels_the_posts_whose_answer_is_learned_better_with_the_rationale():
    """Two epochs of 50 steps, each post visited once per epoch in alternating forms. A visit's
    answer loss counts relative to the mean of its form in its epoch (every loss falls with
    training): e0 is harder than usual without the rationale and easier with it (CoT); e2 the
    other way round (direct); e1 and e3 differ by 0.2 either way; e4 met one form only."""
    recs = _records(n=6, without_rationale=(5,))
    forms, ledger = TargetForms(), _ledger([
        # (step, id, form, whole-target loss, answer loss)
        (10, "e0", "direct", 2.0, 2.0), (12, "e1", "cot", 1.0, 1.0), (14, "e2", "direct", 1.0, 1.0),
        (16, "e3", "cot", 1.0, 1.0), (18, "e4", "direct", 1.5, 1.5), (20, "e5", "direct", 1.5, 1.5),
        (60, "e0", "cot", 0.5, 0.2), (62, "e1", "direct", 0.5, 0.5), (64, "e2", "cot", 0.9, 0.6),
        (66, "e3", "direct", 0.9, 0.9),
    ])
    policy = DynamicCoTPolicy(recs, forms, ledger, PolicySettings(margin=0.1, warmup_epochs=2.0), epoch_steps=50)
    assert {forms[r.id] for r in recs[:5]} == {BOTH} and forms["e5"] == "direct"  # warm-up: both forms
    assert policy.warmup_steps == 100 and policy.is_decision_step(100) and not policy.is_decision_step(150)
    rel = policy.detrended_answer_losses(100)
    assert rel["direct"]["e0"] == pytest.approx(0.5) and rel["cot"]["e0"] == pytest.approx(-0.2)
    assert rel["direct"]["e3"] == pytest.approx(0.2) and rel["cot"]["e1"] == pytest.approx(0.0)
    d = policy.decide(100)
    assert policy.cot_ids() == ["e0", "e3"] and d.to_cot == 2 and d.gamma == 0.1
    assert all(forms[i] == "direct" for i in ("e1", "e2", "e4", "e5"))
    text, comp = d.answer_losses["needs:text"], d.answer_losses["needs:composition"]
    assert (text["n"], text["to_cot"], comp["n"], comp["to_cot"]) == (2, 1, 2, 1)  # e0, e2 / e1, e3
    assert text["direct"] == pytest.approx((2.0 + 1.0) / 2) and text["benefit"] == pytest.approx((0.7 - 0.7) / 2)
    # the permuted control: the same number on CoT, drawn among the posts that had both forms
    perm = DynamicCoTPolicy(recs, TargetForms(), ledger, PolicySettings(permute=True, seed=1), epoch_steps=50)
    perm.decide(100)
    assert len(perm.cot_ids()) == 2 and set(perm.cot_ids()) <= {"e0", "e1", "e2", "e3"}
    with pytest.raises(ValueError, match="permute is the control of the benefit and correct variants"):
        PolicySettings(variant="quantile", permute=True).check()
    with pytest.raises(ValueError, match="benefit needs 2 epochs"):
        PolicySettings(warmup_epochs=1.5).check()


def test_per_example_switches_the_hard_examples_with_a_rationale():
    recs = _records()
    forms = TargetForms()
    ledger = _ledger([(95, "e0", "direct", 3.0), (96, "e1", "direct", 0.5), (97, "e2", "direct", 2.0),
                      (98, "e3", "direct", 1.4), (99, "e5", "direct", 9.0),   # e5 has no rationale
                      (10, "e4", "direct", 9.0)])                             # outside the one-epoch window
    policy = DynamicCoTPolicy(recs, forms, ledger, PolicySettings(variant="per_example", gamma=1.5, **_old()),
                              epoch_steps=50)
    d = policy.decide(100)
    assert policy.cot_ids() == ["e0", "e2"] and d.to_cot == 2 and d.to_direct == 0
    assert d.cot_share == pytest.approx(2 / 6) and d.gamma == 1.5
    assert d.by_kind["kind:present"] == pytest.approx(1 / 2) and d.by_kind["kind:text+image"] == 1.0
    assert d.by_kind["needs:text"] == pytest.approx(2 / 3)
    # the mean of several entries in the window decides: e1 averages (0.5 + 3.0) / 2 > 1.5
    ledger.record(120, ["e1"], ["direct"], [3.0])
    ledger.record(121, ["e0"], ["cot"], [0.9])
    assert policy.decide(150).to_cot == 1 and "e1" in policy.cot_ids()
    # without switch_back an example stays on CoT; with it, a CoT loss below gamma sends it back
    assert "e0" in policy.cot_ids()
    back = DynamicCoTPolicy(recs, TargetForms(), ledger, PolicySettings(variant="per_example", gamma=1.5,
                                                                        switch_back=True, **_old()), epoch_steps=100)
    back.forms.update({"e0": "cot"})
    d = back.decide(150)
    assert back.forms["e0"] == "direct" and d.to_direct == 1


def test_quantile_takes_gamma_from_the_current_losses():
    recs = _records()
    ledger = _ledger([(99, f"e{i}", "direct", float(i)) for i in range(6)])
    policy = DynamicCoTPolicy(recs, TargetForms(), ledger, PolicySettings(variant="quantile", quantile=0.5, **_old()),
                              epoch_steps=50)
    d = policy.decide(100)
    assert d.gamma == pytest.approx(2.5) and policy.cot_ids() == ["e3", "e4"]  # e5 above, but no rationale
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.75) == pytest.approx(3.25)


def test_global_switches_a_share_once_the_mean_loss_falls_below_gamma():
    recs = _records()
    high = _ledger([(99, f"e{i}", "direct", 3.0) for i in range(6)])
    policy = DynamicCoTPolicy(recs, TargetForms(), high, PolicySettings(variant="global", gamma=2.0, mix_share=0.6,
                                                                        **_old()), epoch_steps=50)
    assert policy.decide(100).to_cot == 0
    for i in range(6):
        high.record(140, [f"e{i}"], ["direct"], [0.1])
    policy.epoch_steps = 10
    d = policy.decide(150)
    assert d.to_cot == 3 and d.mean_direct_loss == pytest.approx(0.1)  # round(0.6 * 5 eligible)
    assert set(policy.cot_ids()) <= {"e0", "e1", "e2", "e3", "e4"}
    assert policy.decide(200).to_cot == 0  # once


def test_random_is_a_seeded_share_of_the_eligible():
    recs = _records(n=6, without_rationale=())
    a = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="random", share=0.5, seed=3, **_old()),
                         epoch_steps=50)
    b = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="random", share=0.5, seed=3, **_old()),
                         epoch_steps=50)
    a.decide(100), b.decide(100)
    assert a.cot_ids() == b.cot_ids() and len(a.cot_ids()) == 3
    assert a.decide(150).to_cot == 0


def test_decisions_at_warmup_and_every_interval_never_at_or_after_the_last_step():
    recs = _records()
    policy = DynamicCoTPolicy(recs, TargetForms(), LossLedger(),
                              PolicySettings(variant="per_example", warmup_epochs=1.0, window_epochs=1.0, interval=3))

    class Args:
        per_device_train_batch_size, gradient_accumulation_steps, world_size = 2, 1, 1

    class State:
        global_step, max_steps = 0, 10

    policy.on_train_begin(Args, State, None)
    assert policy.epoch_steps == 3 and policy.warmup_steps == 3  # 6 examples, 2 a step
    for step in range(1, 11):
        State.global_step = step
        policy.on_step_end(Args, State, None)
    assert [d.step for d in policy.log] == [3, 6, 9]  # 9 < 10: the last step (10) decides nothing
    State.max_steps = 9
    fresh = DynamicCoTPolicy(recs, TargetForms(), LossLedger(),
                             PolicySettings(variant="per_example", warmup_epochs=1.0, interval=3))
    fresh.on_train_begin(Args, State, None)
    assert [s for s in range(1, 10) if fresh.is_decision_step(s)] == [3, 6]
    with pytest.raises(ValueError, match="unknown Dynamic CoT variant"):
        PolicySettings(variant="nope").check()
    with pytest.raises(ValueError, match="unknown Dynamic CoT settings"):
        PolicySettings.from_dict({"gama": 1})
    with pytest.raises(ValueError, match="at least one epoch"):
        PolicySettings(window_epochs=0.5).check()
    with pytest.raises(ValueError, match="epoch_steps is unknown"):
        DynamicCoTPolicy(recs, TargetForms(), LossLedger()).warmup_steps


def test_replay_matches_the_exposure_step_by_step():
    ids = [f"e{i}" for i in range(8)]
    schedule = {1: 3, 2: 0, 3: 4, 5: 2}
    forms = ReplayForms(schedule, eligible=ids[:6], seed=0)
    batches = {step: ids[(step % 2) * 4:(step % 2) * 4 + 4] + ids[:4] for step in range(1, 7)}
    planned = {step: forms.plan(batches[step], step) for step in batches}
    assert {s: p.count("cot") for s, p in planned.items()} == {1: 3, 2: 0, 3: 4, 4: 0, 5: 2, 6: 0}
    for step, plan in planned.items():  # only examples with a rationale reason
        assert all(i in ids[:6] for i, f in zip(batches[step], plan) if f == "cot")
    assert planned == {step: ReplayForms(schedule, ids[:6], 0).plan(batches[step], step) for step in batches}
    assert forms.plan(ids, None) == ["direct"] * 8 and forms.short == 0
    assert ReplayForms({1: 9}, ids[:2]).plan(ids, 1).count("cot") == 2  # fewer eligible than asked: counted
    ledger = _ledger([(1, "e0", "cot", 1.0), (1, "e1", "cot", 1.0), (1, "e2", "direct", 1.0), (4, "e3", "cot", 1.0)])
    assert ReplayForms.of(ledger, ids).schedule == {1: 2, 4: 1} == ledger.exposure()


def test_correct_labels_the_posts_a_rationale_makes_right():
    """The correct variant: both forms in the warm-up, one decision at its end; the judge's F1@M after a
    rationale against the direct one decides: e0 and e3 are better with a rationale by more than the
    margin, e1 by exactly the margin (not more), e2 worse, e4 equal; e5 has no rationale and is never
    judged; the judge's scores stay with the policy. Permuted: the same number of posts on CoT, among the judged ones. No judge: a clear error."""
    recs = _records(n=6, without_rationale=(5,))
    scores = {"e0": (1.0, 0.5), "e1": (0.6, 0.5), "e2": (0.2, 0.9), "e3": (0.8, 0.0), "e4": (0.7, 0.7)}
    asked = []

    def judge(model, ids):
        asked.append((model, list(ids)))
        return {i: scores[i] for i in ids}

    forms = TargetForms()
    policy = DynamicCoTPolicy(recs, forms, LossLedger(), PolicySettings(variant="correct", f1_margin=0.1),
                              epoch_steps=50, judge=judge)
    assert {forms[r.id] for r in recs[:5]} == {BOTH} and forms["e5"] == "direct"
    assert policy.is_decision_step(100) and not policy.is_decision_step(150) and not policy.is_decision_step(99)
    d = policy.decide(100, model="the model")
    assert asked == [("the model", ["e0", "e1", "e2", "e3", "e4"])]
    assert policy.cot_ids() == ["e0", "e3"] and d.to_cot == 2 and d.gamma == 0.1
    assert policy.judge_scores == scores  # kept, so that another margin's decision can be recomputed
    assert pickle.loads(pickle.dumps(policy)).judge_scores == scores  # ... also on a policy a worker returns
    assert {forms[i] for i in ("e1", "e2", "e4", "e5")} == {"direct"}
    assert d.judged["needs:text"] == {"n": 3, "think_f1": 0.6333, "direct_f1": 0.7, "helps": 1, "to_cot": 1}
    assert d.judged["needs:composition"]["to_cot"] == d.judged["needs:composition"]["helps"] == 1
    permuted = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="correct", f1_margin=0.1,
                                                                                  permute=True),
                                epoch_steps=50, judge=judge)
    permuted.decide(100)
    assert len(permuted.cot_ids()) == 2 and set(permuted.cot_ids()) <= set(scores)
    with pytest.raises(ValueError, match="needs a judge"):
        DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="correct"), epoch_steps=50).decide(100)
    with pytest.raises(ValueError, match="too short"):
        PolicySettings(variant="correct", warmup_epochs=1.0).check()


# ------------------------------------------------------------------ in training
@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("dyn_images")
    out = []
    for i in range(8):
        path = folder / f"{i % 2}.png"
        if not path.exists():
            Image.new("RGB", (56, 56), (200, 40, 40) if i % 2 else (40, 40, 200)).save(path)
        out.append(Example(f"ex{i}", f"post {i} about the {['harbour', 'garden'][i % 2]}",
                           [["harbour", "garden"][i % 2], ["blue", "red"][i % 2]], image=str(path),
                           meta={"kinds": {"harbour": "present", "garden": "present", "blue": "image", "red": "image"},
                                 "needs": ["text", "composition"][i % 2]}))
    return out


def _train(tiny_model_dir, examples, out, policy_settings, callbacks_extra=(), resume=False, seed=0, forms=None,
           max_steps=9, decision_loss="plain"):
    from mmkp_helpers.modeling import load_vlm

    torch.manual_seed(seed)
    model, processor = load_vlm(str(tiny_model_dir), lora={"r": 8, "alpha": 16, "dropout": 0.0}, verbose=False)
    records = make_records(examples, {ex.id: f"the text says {ex.keyphrases[0]}" for ex in examples})
    forms, ledger = forms if forms is not None else TargetForms(), LossLedger()
    callbacks = list(callbacks_extra)
    policy = None
    if policy_settings is not None:
        policy = DynamicCoTPolicy(records, forms, ledger, policy_settings)
        callbacks.insert(0, policy)
    settings = SFTSettings(learning_rate=3e-3, max_steps=max_steps, batch_size=4, logging_steps=1, save_steps=3,
                           warmup=0, lr_scheduler="constant", seed=0, progress=False, decision_loss=decision_loss)
    result = train_sft(model, processor, records, forms=forms, ledger=ledger, settings=settings, output_dir=out,
                       callbacks=callbacks, resume=resume)
    return result, policy, forms, ledger


@pytest.mark.slow
def test_policy_in_training_and_resume(tiny_model_dir, examples, tmp_path):
    class StopAt6(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= 6:
                control.should_training_stop = True
            return control

    quantile = PolicySettings(variant="quantile", quantile=0.5, warmup_epochs=1.5, window_epochs=1.0, interval=3)
    full, policy, forms, ledger = _train(tiny_model_dir, examples, tmp_path / "full", quantile)
    assert policy.epoch_steps == 2 and [d.step for d in policy.log] == [3, 6]  # none at the last step (9)
    first = policy.log[0]
    assert 0 < first.cot_share < 1 and first.to_cot == round(first.cot_share * 8)
    # what trained between the first and the second decision is exactly what the first one switched
    trained_cot = {h[1] for h in ledger.history if 3 <= h[0] < 6 and h[2] == "cot"}
    trained_direct = {h[1] for h in ledger.history if 3 <= h[0] < 6 and h[2] == "direct"}
    assert trained_cot == set(first.switched_to_cot) and not trained_cot & trained_direct
    assert {h[1] for h in ledger.history if h[0] < 3 and h[2] == "cot"} == set()
    assert full.form_counts["cot"] == round(policy.log[-1].cot_share * 8) == len(policy.cot_ids())
    assert policy.exposure()["cot_visits"] == sum(1 for h in ledger.history if h[2] == "cot")

    part, p2, _, _ = _train(tiny_model_dir, examples, tmp_path / "part", quantile, callbacks_extra=[StopAt6()])
    assert part.steps == 6
    resumed, p3, forms3, _ = _train(tiny_model_dir, examples, tmp_path / "part", quantile, resume=True, seed=123)
    assert resumed.steps == 9 and resumed.resumed_from.endswith("checkpoint-6")
    assert forms3.to_dict()["forms"] == forms.to_dict()["forms"]
    assert [d.step for d in p3.log] == [3, 6] and p3.log[-1].cot_share == policy.log[-1].cot_share


@pytest.mark.slow
def test_benefit_run_and_its_replayed_control(tiny_model_dir, examples, tmp_path):
    """A benefit run: both forms in the warm-up (each example's visits alternate), one decision at
    its end; the replayed control has exactly its CoT example-visits at every step."""
    benefit = PolicySettings(warmup_epochs=2.0, margin=0.0)
    run, policy, forms, ledger = _train(tiny_model_dir, examples, tmp_path / "benefit", benefit, max_steps=8,
                                        decision_loss="balanced")
    assert [d.step for d in policy.log] == [4]
    warm = [h for h in ledger.history if h[0] < 4]
    for ex in examples:  # two visits in the warm-up: one in each form
        assert sorted(h[2] for h in warm if h[1] == ex.id) == ["cot", "direct"]
    answer_losses = [h[4] for h in warm if h[2] == "cot"]
    whole = [h[3] for h in warm if h[2] == "cot"]
    assert answer_losses != whole  # the answer line's loss is kept apart from the rationale's
    replay = ReplayForms.of(ledger, [ex.id for ex in examples], seed=0)
    control, _, _, control_ledger = _train(tiny_model_dir, examples, tmp_path / "replay", None, forms=replay,
                                           max_steps=8, decision_loss="balanced")
    assert control_ledger.exposure() == ledger.exposure() and replay.short == 0
    assert control.steps == run.steps == 8


@pytest.mark.slow
def test_a_correct_run_decodes_with_the_model_being_trained(tiny_model_dir, examples, tmp_path):
    """experiment.dynamic_run with the correct variant: at the end of the warm-up its DecodeJudge
    decodes every post with a rationale both ways with the model being trained; training goes on
    after it in the forms it chose, and the run's policy comes back picklable (for a worker)."""
    import pickle

    from mmkp_helpers import experiment

    settings = SFTSettings(learning_rate=3e-3, max_steps=6, batch_size=4, logging_steps=1, save_steps=100, warmup=0,
                           lr_scheduler="constant", seed=0, progress=False)
    rationales = {ex.id: f"the text says {ex.keyphrases[0]}" for ex in examples}
    _, _, result, policy, ledger = experiment.dynamic_run(
        str(tiny_model_dir), examples, None, settings, {"r": 8, "alpha": 16, "dropout": 0.0}, tmp_path / "run",
        rationales, PolicySettings(variant="correct", warmup_epochs=2.0), seed=0, verbose=False, judge_budgets=(8, 4))
    assert result.steps == 6 and [d.step for d in policy.log] == [4]
    judged = policy.log[0].judged
    assert sum(v["n"] for v in judged.values()) == len(examples)
    assert all(0.0 <= v["think_f1"] <= 1.0 and 0.0 <= v["direct_f1"] <= 1.0 for v in judged.values())
    after = [h for h in ledger.history if h[0] >= 4]
    assert after and all(h[2] == policy.forms[h[1]] for h in after)  # what trained after it is what it chose
    assert pickle.loads(pickle.dumps(policy)).judge is None
