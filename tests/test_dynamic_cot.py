"""Dynamic CoT policies: each variant switches exactly the expected examples at the expected steps
on a constructed loss ledger; in a real (tiny) training run the logged CoT share is what trained,
and a resumed run ends with the forms of an uninterrupted one."""
from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from mmkp_helpers.collate import TargetForms, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.dynamic_cot import DynamicCoTPolicy, PolicySettings, _quantile
from mmkp_helpers.training import LossLedger, SFTSettings, train_sft


def _records(n=6, without_rationale=(5,)):
    kinds = ["present", "tag", "text+image", "image", "present", "tag"]
    examples = [Example(f"e{i}", f"post {i}", [f"kp{i}"], meta={"kinds": {f"kp{i}": kinds[i % len(kinds)]}})
                for i in range(n)]
    rationales = {ex.id: f"because {i}" for i, ex in enumerate(examples) if i not in without_rationale}
    return make_records(examples, rationales)


def _ledger(entries):
    """entries: (step, id, form, loss)."""
    ledger = LossLedger()
    for step, i, form, loss in entries:
        ledger.record(step, [i], [form], [loss])
    return ledger


def test_per_example_switches_the_hard_examples_with_a_rationale():
    recs = _records()
    forms = TargetForms()
    ledger = _ledger([(95, "e0", "direct", 3.0), (96, "e1", "direct", 0.5), (97, "e2", "direct", 2.0),
                      (98, "e3", "direct", 1.4), (99, "e5", "direct", 9.0),   # e5 has no rationale
                      (10, "e4", "direct", 9.0)])                             # outside the window
    policy = DynamicCoTPolicy(recs, forms, ledger, PolicySettings(gamma=1.5, warmup_steps=100, interval=50, window=50))
    d = policy.decide(100)
    assert policy.cot_ids() == ["e0", "e2"] and d.to_cot == 2 and d.to_direct == 0
    assert d.cot_share == pytest.approx(2 / 6) and d.gamma == 1.5
    assert d.by_kind["kind:present"] == pytest.approx(1 / 2) and d.by_kind["kind:text+image"] == 1.0
    # the mean of several entries in the window decides: e1 averages (0.5 + 3.0) / 2 > 1.5
    ledger.record(120, ["e1"], ["direct"], [3.0])
    ledger.record(121, ["e0"], ["cot"], [0.9])
    assert policy.decide(150).to_cot == 1 and "e1" in policy.cot_ids()
    # without switch_back an example stays on CoT; with it, a CoT loss below gamma sends it back
    assert "e0" in policy.cot_ids()
    back = DynamicCoTPolicy(recs, TargetForms(), ledger, PolicySettings(gamma=1.5, switch_back=True, window=200))
    back.forms.update({"e0": "cot"})
    d = back.decide(150)
    assert back.forms["e0"] == "direct" and d.to_direct == 1


def test_quantile_takes_gamma_from_the_current_losses():
    recs = _records()
    ledger = _ledger([(99, f"e{i}", "direct", float(i)) for i in range(6)])
    policy = DynamicCoTPolicy(recs, TargetForms(), ledger, PolicySettings(variant="quantile", quantile=0.5))
    d = policy.decide(100)
    assert d.gamma == pytest.approx(2.5) and policy.cot_ids() == ["e3", "e4"]  # e5 above, but no rationale
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.75) == pytest.approx(3.25)


def test_global_switches_a_share_once_the_mean_loss_falls_below_gamma():
    recs = _records()
    high = _ledger([(99, f"e{i}", "direct", 3.0) for i in range(6)])
    policy = DynamicCoTPolicy(recs, TargetForms(), high, PolicySettings(variant="global", gamma=2.0, mix_share=0.6))
    assert policy.decide(100).to_cot == 0
    for i in range(6):
        high.record(140, [f"e{i}"], ["direct"], [0.1])
    policy.settings.window = 10
    d = policy.decide(150)
    assert d.to_cot == 3 and d.mean_direct_loss == pytest.approx(0.1)  # round(0.6 * 5 eligible)
    assert set(policy.cot_ids()) <= {"e0", "e1", "e2", "e3", "e4"}
    assert policy.decide(200).to_cot == 0  # once


def test_random_control_is_a_seeded_share_of_the_eligible():
    recs = _records(n=6, without_rationale=())
    a = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="random", share=0.5, seed=3))
    b = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(variant="random", share=0.5, seed=3))
    a.decide(100), b.decide(100)
    assert a.cot_ids() == b.cot_ids() and len(a.cot_ids()) == 3
    assert a.decide(150).to_cot == 0


def test_decisions_happen_at_warmup_and_every_interval():
    recs = _records()
    policy = DynamicCoTPolicy(recs, TargetForms(), LossLedger(), PolicySettings(warmup_steps=4, interval=3))

    class State:
        global_step = 0

    for step in range(1, 12):
        State.global_step = step
        policy.on_step_end(None, State, None)
    assert [d.step for d in policy.log] == [4, 7, 10]
    with pytest.raises(ValueError, match="unknown Dynamic CoT variant"):
        PolicySettings(variant="nope").check()
    with pytest.raises(ValueError, match="unknown Dynamic CoT settings"):
        PolicySettings.from_dict({"gama": 1})


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
                           meta={"kinds": {"harbour": "present", "garden": "present", "blue": "image", "red": "image"}}))
    return out


def _train(tiny_model_dir, examples, out, callbacks_extra=(), resume=False, seed=0):
    from mmkp_helpers.modeling import load_vlm

    torch.manual_seed(seed)
    model, processor = load_vlm(str(tiny_model_dir), lora={"r": 8, "alpha": 16, "dropout": 0.0}, verbose=False)
    records = make_records(examples, {ex.id: f"the text says {ex.keyphrases[0]}" for ex in examples})
    forms, ledger = TargetForms(), LossLedger()
    policy = DynamicCoTPolicy(records, forms, ledger, PolicySettings(variant="quantile", quantile=0.5,
                                                                     warmup_steps=3, interval=3, window=3))
    settings = SFTSettings(learning_rate=3e-3, max_steps=9, batch_size=4, logging_steps=1, save_steps=3, warmup=0,
                           lr_scheduler="constant", seed=0, progress=False)
    result = train_sft(model, processor, records, forms=forms, ledger=ledger, settings=settings, output_dir=out,
                       callbacks=[policy, *callbacks_extra], resume=resume)
    return result, policy, forms, ledger


@pytest.mark.slow
def test_policy_in_training_and_resume(tiny_model_dir, examples, tmp_path):
    class StopAt6(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= 6:
                control.should_training_stop = True
            return control

    full, policy, forms, ledger = _train(tiny_model_dir, examples, tmp_path / "full")
    assert [d.step for d in policy.log] == [3, 6, 9]
    first = policy.log[0]
    assert 0 < first.cot_share < 1 and first.to_cot == round(first.cot_share * 8)
    # what trained between the first and the second decision is exactly what the first one switched
    trained_cot = {i for s, i, f, _ in ledger.history if 3 <= s < 6 and f == "cot"}
    trained_direct = {i for s, i, f, _ in ledger.history if 3 <= s < 6 and f == "direct"}
    assert trained_cot == set(first.switched_to_cot) and not trained_cot & trained_direct
    assert {i for s, i, f, _ in ledger.history if s < 3 and f == "cot"} == set()
    assert full.form_counts["cot"] == round(policy.log[-1].cot_share * 8) == len(policy.cot_ids())

    part, p2, _, _ = _train(tiny_model_dir, examples, tmp_path / "part", callbacks_extra=[StopAt6()])
    assert part.steps == 6
    resumed, p3, forms3, _ = _train(tiny_model_dir, examples, tmp_path / "part", resume=True, seed=123)
    assert resumed.steps == 9 and resumed.resumed_from.endswith("checkpoint-6")
    assert forms3.to_dict()["forms"] == forms.to_dict()["forms"]
    assert [d.step for d in p3.log] == [3, 6, 9] and p3.log[-1].cot_share == policy.log[-1].cot_share
