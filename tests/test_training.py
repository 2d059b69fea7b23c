"""The SFT entry point: losses, proof that training happened (and only on LoRA), adapters, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from mmkp_helpers.collate import IGNORE_INDEX, ChatCollator, TargetForms, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.training import (KeyphraseTrainer, LossLedger, RecordDataset, SFTSettings, TrainResult,
                                   adapter_base, last_checkpoint, load_adapter, loss_positions, per_example_loss,
                                   token_losses, train_sft, training_arguments)

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 170, 30), "yellow": (230, 220, 40)}
WORDS = ["harbour", "concert", "football", "garden"]
LORA = {"r": 8, "alpha": 16, "dropout": 0.1}


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Example]:
    """Eight posts: a word in the text and a solid-colour image, each a keyphrase; varied lengths."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("train_images")
    out = []
    for i in range(8):
        colour = list(COLOURS)[i % 4]
        word = WORDS[i // 2]
        path = folder / f"{colour}.png"
        if not path.exists():
            Image.new("RGB", (56, 56), COLOURS[colour]).save(path)
        extra = ["weekend vibes"] * (i % 3)
        out.append(Example(f"ex{i}", f"post {i} about the {word}", [word, colour, *extra], image=str(path)))
    return out


@pytest.fixture(scope="module")
def rationales(examples) -> dict[str, str]:
    return {ex.id: f"the text names {ex.keyphrases[0]} and the image is {ex.keyphrases[1]}" for ex in examples}


def load(tiny_model_dir, quantize_4bit=False, lora=LORA, seed=0):
    from mmkp_helpers.modeling import load_vlm

    torch.manual_seed(seed)
    return load_vlm(str(tiny_model_dir), quantize_4bit=quantize_4bit, lora=lora, verbose=False)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def settings(**kw) -> SFTSettings:
    base = dict(learning_rate=3e-3, max_steps=10, batch_size=4, logging_steps=1, save_steps=5, warmup=0,
                lr_scheduler="constant", seed=0, progress=False)
    base.update(kw)
    return SFTSettings(**base)


# ------------------------------------------------------------------ per-example losses
def test_token_and_per_example_losses_match_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :3] = IGNORE_INDEX
    labels[1, 5:] = IGNORE_INDEX
    labels[2, :] = IGNORE_INDEX  # a row with nothing to learn
    losses, counts = per_example_loss(logits, labels)
    for row in range(2):
        keep = labels[row, 1:] != IGNORE_INDEX
        expected = F.cross_entropy(logits[row, :-1][keep], labels[row, 1:][keep])
        assert torch.allclose(losses[row], expected, atol=1e-6)
        assert counts[row] == keep.sum()
    assert losses[2] == 0 and counts[2] == 0
    # computing logits only at the needed positions gives the same token losses
    pos = loss_positions(labels)
    full, full_mask = token_losses(logits, labels)
    part, part_mask = token_losses(logits[:, pos], labels, pos)
    assert torch.allclose(full[:, pos], part) and torch.equal(full_mask[:, pos], part_mask)
    assert full_mask.sum() == part_mask.sum()


def test_trainer_loss_equals_model_loss(tiny_model_dir, examples, rationales, tmp_path):
    """The trainer's own loss (logits only on answer positions) equals the model's stock loss,
    and its per-example losses are each row's mean token loss."""
    model, processor = load(tiny_model_dir, lora=None)
    model.eval()
    forms = TargetForms(default="cot")
    collator = ChatCollator(processor, forms=forms)
    trainer = KeyphraseTrainer(model=model, args=training_arguments(settings(), tmp_path, has_eval=False),
                               collator=collator, train_dataset=RecordDataset(make_records(examples)))
    batch = collator(make_records(examples[:4], rationales))
    inputs = {k: v for k, v in batch.items() if k not in ("example_ids", "forms", "image_paths")}
    with torch.no_grad():
        ours = trainer.compute_loss(model, batch)
        stock = model(**inputs).loss
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    assert torch.allclose(ours, stock, atol=1e-5)
    model.train()
    with torch.no_grad():
        trainer.compute_loss(model, batch)
    ids, forms_used, per_ex = trainer.last_example_losses
    assert ids == [ex.id for ex in examples[:4]] and forms_used == ["cot"] * 4
    assert torch.allclose(per_ex, per_example_loss(logits, batch["labels"])[0], atol=1e-5)
    assert set(trainer.ledger.latest) == set(ids)


# ------------------------------------------------------------------ training happened
@pytest.mark.slow
@pytest.mark.parametrize("quantize_4bit", [False, True], ids=["fp32", "4bit"])
def test_sft_trains_lora_only(tiny_model_dir, examples, tmp_path, quantize_4bit):
    from mmkp_helpers.inference import generate

    model, processor = load(tiny_model_dir, quantize_4bit=quantize_4bit)
    before = snapshot(model)
    lora_names = [n for n in before if "lora_" in n]
    vision_names = [n for n in before if ".visual." in n]
    language_names = [n for n in before if "language_model" in n and "lora_" not in n]
    assert lora_names and vision_names and language_names
    if quantize_4bit:
        packed = [n for n in language_names if before[n].dtype == torch.uint8]
        assert packed, "expected packed 4-bit weights in the language model"
    # generate first: with bitsandbytes on the CPU, an eval forward used to break the next training step
    generate(model, processor, examples[:2], max_new_tokens=3, progress=False)

    records = make_records(examples)
    result = train_sft(model, processor, records, valid_records=records[:4], settings=settings(),
                       output_dir=tmp_path / "run")
    assert isinstance(result, TrainResult) and result.steps == 10
    losses = [loss for _, loss in result.train_losses]
    assert len(losses) == 10 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses  # falling
    assert result.final_loss == losses[-1]
    assert result.eval_loss is not None and torch.isfinite(torch.tensor(result.eval_loss))
    assert result.runtime_s > 0 and result.tokens_per_s > 0 and result.peak_memory_bytes > 0

    after = snapshot(model)
    for n in lora_names:
        if "lora_B" in n or "lora_A" in n:
            assert not torch.equal(before[n], after[n]), f"LoRA weight {n} did not change"
    for n in vision_names + language_names:
        assert torch.equal(before[n], after[n]), f"frozen weight {n} changed"
    # every training example's loss was attributed
    assert {h[1] for h in result_ledger(result)} == {r.id for r in records}

    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert adapter_base(adapter) == str(tiny_model_dir)
    # the adapter, loaded back onto a fresh base model, reproduces the trained model's outputs
    mine = generate(model, processor, examples[:3], max_new_tokens=6, progress=False)
    reloaded, processor2 = load_adapter(adapter, quantize_4bit=quantize_4bit)
    theirs = generate(reloaded, processor2, examples[:3], max_new_tokens=6, progress=False)
    assert [g.raw for g in mine] == [g.raw for g in theirs]


def result_ledger(result: TrainResult):
    """The loss ledger saved with the last checkpoint of a run."""
    ckpt = last_checkpoint(result.output_dir)
    return json.loads((Path(ckpt) / "loss_ledger.json").read_text())["history"]


def test_gradient_accumulation_normalises_over_tokens(tiny_model_dir, examples, tmp_path):
    """Batch 4 and batch 2 x accumulation 2 train on the same four records at step 1. One target
    is much longer than the others, so whatever the split into micro-batches, their token counts
    differ: the first logged losses agree only when the loss is the token mean over the whole
    accumulated batch (a mean of micro-batch means would differ)."""
    records = make_records(examples[:4])
    records[3].direct = "; ".join(f"long keyphrase number {i}" for i in range(12))
    first = []
    for i, (bs, acc) in enumerate([(4, 1), (2, 2)]):
        model, processor = load(tiny_model_dir, lora={**LORA, "dropout": 0.0})
        result = train_sft(model, processor, records, output_dir=tmp_path / f"r{i}",
                           settings=settings(max_steps=1, batch_size=bs, grad_accum=acc, save_steps=100))
        first.append(result.train_losses[0][1])
    assert first[0] == pytest.approx(first[1], abs=1e-5)


def test_gradient_checkpointing_gives_the_same_losses(tiny_model_dir, examples, tmp_path):
    runs = []
    for gc in (False, True):
        model, processor = load(tiny_model_dir, lora={**LORA, "dropout": 0.0})
        result = train_sft(model, processor, make_records(examples), output_dir=tmp_path / f"gc{gc}",
                           settings=settings(max_steps=2, gradient_checkpointing=gc, save_steps=100))
        base = model.get_base_model()
        on = getattr(base, "is_activation_checkpointing", None)
        on = on if on is not None else base.is_gradient_checkpointing
        assert on == gc
        runs.append([loss for _, loss in result.train_losses])
    assert runs[0] == pytest.approx(runs[1], abs=1e-5)


@pytest.mark.slow
def test_forms_switch_during_training(tiny_model_dir, examples, rationales, tmp_path):
    """A callback flips every example to CoT after step 3: later batches train CoT targets, the
    ledger records which form each loss belongs to, and the forms are saved with checkpoints."""
    forms = TargetForms(default="direct")
    ledger = LossLedger()

    class FlipAtThree(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                forms.set_default("cot")

    model, processor = load(tiny_model_dir)
    result = train_sft(model, processor, make_records(examples, rationales), forms=forms, ledger=ledger,
                       callbacks=[FlipAtThree()], output_dir=tmp_path / "flip",
                       settings=settings(max_steps=6, batch_size=4, save_steps=6))
    by_step = {}
    for step, _, form, loss, _answer_loss in ledger.history:
        by_step.setdefault(step, set()).add(form)
        assert loss > 0
    assert by_step == {0: {"direct"}, 1: {"direct"}, 2: {"direct"}, 3: {"cot"}, 4: {"cot"}, 5: {"cot"}}
    assert result.form_counts == {"direct": 0, "cot": 8}
    assert set(ledger.mean_by_form()) == {"direct", "cot"}
    saved = TargetForms.load(f"{last_checkpoint(tmp_path / 'flip')}/target_forms.json")
    assert saved.default == "cot"


# ------------------------------------------------------------------ resume
class StopAfterSave(TrainerCallback):
    """Simulates an interruption: stop right after the checkpoint of step ``at`` is written."""

    def __init__(self, at: int):
        self.at = at

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.at:
            control.should_training_stop = True
        return control


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_result(tiny_model_dir, examples, tmp_path):
    """Uninterrupted 8 steps vs 4 steps + interruption + resume to 8: the same final loss and
    the same LoRA weights (batch 3 over 8 records: the resume point is mid-epoch; dropout on,
    so the RNG state must be restored too)."""
    records = make_records(examples)
    s = settings(max_steps=8, batch_size=3, save_steps=2, lr_scheduler="cosine", warmup=2)

    model, processor = load(tiny_model_dir)
    full = train_sft(model, processor, records, settings=s, output_dir=tmp_path / "full")
    full_weights = snapshot(model)

    model, processor = load(tiny_model_dir)
    part = train_sft(model, processor, records, settings=s, output_dir=tmp_path / "part",
                     callbacks=[StopAfterSave(4)])
    assert part.steps == 4
    model, processor = load(tiny_model_dir, seed=123)  # a different fresh LoRA init: the checkpoint must win
    resumed = train_sft(model, processor, records, settings=s, output_dir=tmp_path / "part", resume=True)
    assert resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.steps == 8
    assert [x[0] for x in resumed.train_losses] == list(range(1, 9))  # history continues the first part
    assert resumed.final_loss == pytest.approx(full.final_loss, abs=1e-5)
    for (s1, l1), (s2, l2) in zip(full.train_losses, resumed.train_losses):
        assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-5)
    resumed_weights = snapshot(model)
    lora = [n for n in full_weights if "lora_" in n]
    for n in lora:
        assert torch.allclose(full_weights[n], resumed_weights[n], atol=1e-6), n


def test_resume_without_checkpoint_starts_fresh(tiny_model_dir, examples, tmp_path, capsys):
    model, processor = load(tiny_model_dir)
    result = train_sft(model, processor, make_records(examples[:4]), output_dir=tmp_path / "fresh", resume=True,
                       settings=settings(max_steps=2, save_steps=100))
    assert result.resumed_from is None and result.steps == 2
    assert "no checkpoint" in capsys.readouterr().out


def test_settings_from_dict():
    assert SFTSettings.from_dict({"learning_rate": 1e-3, "max_steps": 5}).max_steps == 5
    with pytest.raises(ValueError, match="unknown SFT settings"):
        SFTSettings.from_dict({"learing_rate": 1e-3})
    args = training_arguments(SFTSettings(), "/tmp/x", has_eval=True)
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"]
    assert args.dataloader_num_workers == 0 and args.remove_unused_columns is False
    if not torch.cuda.is_available():
        assert args.use_cpu and not args.bf16
