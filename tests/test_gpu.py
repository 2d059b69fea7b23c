"""True QLoRA on a CUDA GPU (skipped without one): 4-bit NF4 base with bf16 compute, LoRA trains,
generation works before and after training. Run on a GPU machine with ``pytest -m gpu``."""
import pytest
import torch

from mmkp_helpers import modeling

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_qlora_on_gpu_trains_lora_only(tiny_model_dir):
    from PIL import Image

    model, processor = modeling.load_vlm(str(tiny_model_dir), quantize_4bit=True, lora={"r": 8, "alpha": 16})
    assert model.device.type == "cuda"
    assert getattr(model.base_model.model, "is_loaded_in_4bit", False)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hashtags?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    full = processor.apply_chat_template(messages + [{"role": "assistant", "content": [{"type": "text", "text": "sun; sea"}]}])
    image = Image.new("RGB", (112, 112), (200, 60, 20))
    gen_inputs = processor(text=[prompt], images=[image], return_tensors="pt").to("cuda")
    model.eval()
    out = model.generate(**gen_inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > gen_inputs["input_ids"].shape[1]
    batch = processor(text=[full], images=[image], return_tensors="pt").to("cuda")
    labels = batch["input_ids"].clone()
    labels[:, : gen_inputs["input_ids"].shape[1]] = -100
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(6):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], t) for n, t in lora.items() if "lora_B" in n)
    assert all(torch.equal(params[n], t) for n, t in frozen.items())
    model.eval()
    model.generate(**gen_inputs, max_new_tokens=3, do_sample=False)


def test_train_sft_qlora_bf16_on_gpu(tiny_model_dir, tmp_path):
    """The project's SFT entry point on CUDA: 4-bit base, bf16, synthetic posts with images;
    then batched generation and scoring."""
    from mmkp_helpers import collate, data, inference, synthetic, training

    paths = synthetic.make_synthetic(tmp_path / "syn", seed=0, n_train=64, n_valid=16, n_test=16)
    train, test = data.read_jsonl(paths["train"]), data.read_jsonl(paths["test_clean"])
    modeling.setup(0, verbose=False)
    model, processor = modeling.load_vlm(str(tiny_model_dir), quantize_4bit=True,
                                         lora={"r": 16, "alpha": 32, "dropout": 0.0})
    settings = training.SFTSettings(learning_rate=3e-3, max_steps=24, batch_size=8, logging_steps=4,
                                    save_steps=1000, progress=False)
    result = training.train_sft(model, processor, collate.make_records(train), settings=settings,
                                output_dir=tmp_path / "run")
    assert result.peak_memory_kind.startswith("cuda") and result.peak_memory_bytes > 0
    losses = [loss for _, loss in result.train_losses]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    generations = inference.generate(model, processor, test, batch_size=8, max_new_tokens=16, progress=False)
    scores = inference.evaluate(generations, test)
    assert len(generations) == len(test) and 0.0 <= scores["all"]["F1@M"] <= 1.0
