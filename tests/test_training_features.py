"""Training features of issue 15: max_length (prompts cut, answers never), report_to, the best
checkpoint by valid keyphrase F1, merging adapters, and loading them onto the base they need."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mmkp_helpers import adapters, valid_f1
from mmkp_helpers.collate import IGNORE_INDEX, ChatCollator, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.training import SFTSettings, load_adapter, train_sft, training_arguments

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
LONG = " ".join(f"word{i}" for i in range(120))


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Example]:
    """Six posts with a solid-colour image; posts 0, 2 and 4 are long (about 250 tokens)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("feature_images")
    out = []
    for i, (colour, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 30, 220)), ("green", (30, 170, 30))] * 2):
        path = folder / f"{colour}.png"
        if not path.exists():
            Image.new("RGB", (56, 56), rgb).save(path)
        text = f"post {i} about the harbour" + (f" {LONG}" if i % 2 == 0 else "")
        out.append(Example(f"ex{i}", text, ["harbour", colour], image=str(path),
                           attributes=["boat", "sea"], ocr="open daily" if i == 4 else ""))
    return out


def load(tiny_model_dir, quantize_4bit=False, lora=LORA, seed=0):
    from mmkp_helpers.modeling import load_vlm

    torch.manual_seed(seed)
    return load_vlm(str(tiny_model_dir), quantize_4bit=quantize_4bit, lora=lora, verbose=False)


def settings(**kw) -> SFTSettings:
    base = dict(learning_rate=3e-3, max_steps=2, batch_size=3, logging_steps=1, save_steps=100, warmup=0,
                lr_scheduler="constant", seed=0, progress=False)
    base.update(kw)
    return SFTSettings(**base)


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def adapter_file(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


# ------------------------------------------------------------------ max_length
def test_truncation_cuts_prompts_never_answers(tiny_model_dir, examples):
    from mmkp_helpers.modeling import load_processor

    processor = load_processor(str(tiny_model_dir))
    records = make_records(examples)
    full = ChatCollator(processor)(records)
    full_lengths = full["attention_mask"].sum(1).tolist()
    short_len = max(full_lengths[1::2])
    assert min(full_lengths[0::2]) > short_len + 100  # the long posts are long
    limit = short_len + 20
    collator = ChatCollator(processor, max_length=limit)
    cut = collator(records)
    lengths = cut["attention_mask"].sum(1).tolist()
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for row in range(len(records)):
        # every answer token is still learned, in the same order: labels agree
        want = full["labels"][row][full["labels"][row] != IGNORE_INDEX]
        got = cut["labels"][row][cut["labels"][row] != IGNORE_INDEX]
        assert torch.equal(want, got)
        # image tokens intact
        assert (cut["input_ids"][row] == image_pad).sum() == (full["input_ids"][row] == image_pad).sum() > 0
        assert lengths[row] <= limit
        if row % 2:  # short rows untouched
            n = full_lengths[row]
            assert torch.equal(cut["input_ids"][row, :n], full["input_ids"][row, :n])
    assert collator.truncated_ids == {"ex0", "ex2", "ex4"} and not collator.overlong_ids
    text = processor.tokenizer.decode(cut["input_ids"][0][: lengths[0]])
    assert "post 0 about the harbour" in text and "word119" not in text  # the post's end was cut
    assert "Predict the keyphrases" in text and "Keyphrases: kp1" in text  # instruction, answer format kept

    # a limit below answer + minimal prompt: the answer is still kept whole, and counted
    tiny = ChatCollator(processor, max_length=30)
    batch = tiny(records)
    for row in range(len(records)):
        want = full["labels"][row][full["labels"][row] != IGNORE_INDEX]
        assert torch.equal(batch["labels"][row][batch["labels"][row] != IGNORE_INDEX], want)
    assert tiny.truncated_ids == tiny.overlong_ids == {r.id for r in records}
    with pytest.raises(ValueError):
        ChatCollator(processor, max_length=0)


@pytest.mark.slow
def test_train_counts_truncated_and_writes_tensorboard(tiny_model_dir, examples, tmp_path, capsys):
    model, processor = load(tiny_model_dir)
    lengths = ChatCollator(processor)(make_records(examples))["attention_mask"].sum(1).tolist()
    result = train_sft(model, processor, make_records(examples), output_dir=tmp_path / "run",
                       settings=settings(max_length=max(lengths[1::2]) + 20, report_to="tensorboard"))
    assert result.truncated_examples == 3 and result.overlong_examples == 0
    assert "truncated" in capsys.readouterr().out
    events = list((tmp_path / "run" / "runs").glob("*/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert not list((tmp_path / "run" / "checkpoints").glob("runs"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert len(acc.Scalars("train/loss")) == 2


def test_report_to_and_select_best_are_checked(tmp_path):
    assert valid_f1.report_to_list("none") == [] and valid_f1.report_to_list("tensorboard") == ["tensorboard"]
    args = training_arguments(settings(report_to="tensorboard"), tmp_path, has_eval=False)
    assert args.report_to == ["tensorboard"]
    with pytest.raises(ValueError, match="unknown report_to"):
        valid_f1.report_to_list("tensorbored")
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ValueError, match="pip install wandb"):
            training_arguments(settings(report_to="wandb"), tmp_path, has_eval=False)
    else:
        assert valid_f1.report_to_list("wandb") == ["wandb"]
    with pytest.raises(ValueError, match="eval_steps"):
        training_arguments(settings(select_best=True), tmp_path, has_eval=True)
    with pytest.raises(ValueError, match="multiple"):
        training_arguments(settings(select_best=True, eval_steps=2, save_steps=3), tmp_path, has_eval=True)
    args = training_arguments(settings(select_best=True, eval_steps=2, save_steps=2, valid_f1_examples=2),
                              tmp_path, has_eval=True)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_f1_m" and args.greater_is_better


# ------------------------------------------------------------------ best checkpoint by valid F1
@pytest.mark.slow
def test_best_checkpoint_is_the_best_valid_f1(tiny_model_dir, examples, tmp_path, monkeypatch):
    """Evaluations at steps 2, 4, 6. The real F1 is computed each time; the value reported is
    scripted (0.1, 0.6, 0.3) so that the best is neither the first nor the last checkpoint."""
    real_score = valid_f1.ValidF1Callback.score
    scripted = iter([0.1, 0.6, 0.3])
    real: list[float] = []

    def score(self, model):
        real.append(real_score(self, model))
        return next(scripted)

    monkeypatch.setattr(valid_f1.ValidF1Callback, "score", score)
    model, processor = load(tiny_model_dir)
    records = make_records(examples)
    result = train_sft(model, processor, records, valid_records=records[:3], output_dir=tmp_path / "best",
                       settings=settings(max_steps=6, eval_steps=2, save_steps=2, save_total_limit=None,
                                         valid_f1_examples=3, select_best=True, valid_f1_max_new_tokens=12))
    logged = [(h["step"], h["eval_f1_m"]) for h in result.log_history if "eval_f1_m" in h]
    assert logged == [(2, 0.1), (4, 0.6), (6, 0.3)]
    assert len(real) == 3 and all(0.0 <= f <= 1.0 for f in real)
    best_step = max(logged, key=lambda x: x[1])[0]
    ckpt = tmp_path / "best" / "checkpoints" / f"checkpoint-{best_step}"
    assert result.best_metric == 0.6 and Path(result.best_checkpoint) == ckpt
    # the final adapter (saved and in memory) is that checkpoint's, not the last one's
    best, last, final = (adapter_file(ckpt), adapter_file(ckpt.parent / "checkpoint-6"),
                         adapter_file(result.adapter_dir))
    assert best.keys() == final.keys()
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert any(not torch.equal(best[k], last[k]) for k in best)
    in_memory = {k.replace(".default", ""): v for k, v in lora_weights(model).items()}
    for key, value in best.items():
        assert torch.equal(in_memory[key], value), key
    # the real F1 at the best step is what that model scores now (greedy, deterministic)
    callback = valid_f1.ValidF1Callback(processor, examples[:3], max_new_tokens=12)
    assert real_score(callback, model) == pytest.approx(real[1])


# ------------------------------------------------------------------ adapters: merge, 4-bit, hub ids
def generations(model, processor, examples):
    from mmkp_helpers.inference import generate

    return [g.raw for g in generate(model, processor, examples, max_new_tokens=8, progress=False)]


@pytest.mark.slow
def test_merge_then_reload_generates_what_base_plus_adapter_does(tiny_model_dir, examples, tmp_path):
    from mmkp_helpers.modeling import load_vlm

    model, processor = load(tiny_model_dir)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a non-zero delta, as after training
            torch.nn.init.normal_(p, std=0.05)
    adapter_dir = tmp_path / "adapter"
    model.save_pretrained(adapter_dir)
    adapters.write_training_record(model, adapter_dir)
    assert adapters.training_record(adapter_dir)["quantize_4bit"] is False

    with_adapter, processor = load_adapter(adapter_dir)
    expected = generations(with_adapter, processor, examples[:3])
    base, _ = load_vlm(str(tiny_model_dir), verbose=False)
    assert expected != generations(base, processor, examples[:3])  # the adapter changes the outputs

    merged_dir = adapters.merge_adapter(adapter_dir, tmp_path / "merged")
    merged, merged_processor = load_vlm(str(merged_dir), verbose=False)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert generations(merged, merged_processor, examples[:3]) == expected
    # the merged weight is base + scale * B @ A
    key = next(n for n, _ in merged.named_parameters() if n.endswith("layers.0.self_attn.q_proj.weight"))
    lora = dict(with_adapter.named_parameters())
    stem = next(n for n in lora if n.endswith("layers.0.self_attn.q_proj.lora_A.default.weight"))[: -len(".lora_A.default.weight")]
    delta = lora[f"{stem}.lora_B.default.weight"] @ lora[f"{stem}.lora_A.default.weight"] * (LORA["alpha"] / LORA["r"])
    assert torch.allclose(dict(merged.named_parameters())[key], dict(base.named_parameters())[key] + delta, atol=1e-6)


@pytest.mark.slow
def test_4bit_adapter_reloads_on_a_4bit_base_by_default(tiny_model_dir, examples, tmp_path):
    import bitsandbytes as bnb

    from mmkp_helpers.modeling import load_vlm

    model, processor = load(tiny_model_dir, quantize_4bit=True)
    result = train_sft(model, processor, make_records(examples), output_dir=tmp_path / "q",
                       settings=settings(max_steps=2))
    record = adapters.training_record(result.adapter_dir)
    assert record["quantize_4bit"] is True and record["base"] == str(tiny_model_dir)
    trained = generations(model, processor, examples[:3])

    reloaded, processor2 = load_adapter(result.adapter_dir)  # no quantize_4bit: the record decides
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in reloaded.modules())
    assert generations(reloaded, processor2, examples[:3]) == trained
    # merged: dequantized NF4 base + delta, in float32, no 4-bit layer left
    merged_dir = adapters.merge_adapter(result.adapter_dir, tmp_path / "merged")
    assert json.loads((merged_dir / adapters.MERGE_RECORD).read_text())["from_4bit"] is True
    merged, merged_processor = load_vlm(str(merged_dir), verbose=False)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert generations(merged, merged_processor, examples[:3]) == trained


def test_hub_id_offline_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        load_adapter("mmkp-nobody/adapter-that-is-not-cached")
    with pytest.raises(FileNotFoundError, match="no adapter folder"):
        load_adapter(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        adapters.merge_adapter(tmp_path / "empty", tmp_path / "out")


def test_a_cot_run_says_its_valid_loss_is_on_direct_targets(tiny_model_dir, examples, tmp_path, capsys):
    """The teacher writes rationales for the training posts only, so a CoT run's valid loss is the
    direct targets' loss: the printout says so, and selecting the best checkpoint by it warns."""
    from mmkp_helpers import experiment

    rationales = {ex.id: f"the post names {ex.keyphrases[0]}: {ex.keyphrases[0]}" for ex in examples[1:6:2]}
    train = [ex for ex in examples if ex.id in rationales]
    common = dict(lora=LORA, seed=0, verbose=True)
    with pytest.warns(UserWarning, match="direct targets"):
        experiment.train_run(str(tiny_model_dir), train, examples[:1], settings(select_best=True, eval_steps=2,
                                                                                save_steps=2),
                             output_dir=tmp_path / "cot", rationales=rationales, **common)
    assert "valid loss on direct targets" in capsys.readouterr().out
    experiment.train_run(str(tiny_model_dir), train, examples[:1], settings(eval_steps=2), output_dir=tmp_path / "sft",
                         **common)
    out = capsys.readouterr().out
    assert "valid loss " in out and "direct targets" not in out
