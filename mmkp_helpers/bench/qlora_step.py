"""QLoRA training throughput and peak memory with the real Qwen2-VL-2B-Instruct architecture.

    python -m mmkp_helpers.bench.qlora_step [--steps 20] [--batch 4] [--seq 512] [--image-side 448]

Builds a *randomly initialised* model with Qwen2-VL-2B-Instruct's public configuration (no
download), saves it, and loads it back through ``load_vlm`` in 4-bit NF4 with LoRA on the
language model and gradient checkpointing: the path a real run takes. Then it trains ``--steps``
steps on batches of ``--batch`` sequences of ``--seq`` tokens, each with one image
(``--image-side`` pixels square, 256 image tokens at 448), and prints JSON: peak GPU memory,
tokens/s, seconds/step, losses. Needs a CUDA GPU (bf16) and bitsandbytes.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from mmkp_helpers import modeling


def make_batch(processor, batch: int, seq: int, image_side: int, seed: int = 0):
    """``batch`` sequences of exactly ``seq`` tokens: the chat prompt with one random image, then
    random text tokens; labels on the text after the image (image and padding tokens are -100)."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (image_side, image_side, 3), dtype=np.uint8)) for _ in range(batch)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hashtags:"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    enc = processor(text=[prompt] * batch, images=images, return_tensors="pt")
    prompt_len = enc["input_ids"].shape[1]
    if prompt_len >= seq:
        raise ValueError(f"the prompt alone has {prompt_len} tokens; raise --seq or lower --image-side")
    filler = torch.from_numpy(rng.integers(1000, 150000, (batch, seq - prompt_len)))
    input_ids = torch.cat([enc["input_ids"], filler], dim=1)
    labels = input_ids.clone()
    labels[:, :prompt_len] = -100
    batch_inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
                    "pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
    if "mm_token_type_ids" in enc:  # newer transformers: marks image tokens for M-RoPE
        batch_inputs["mm_token_type_ids"] = torch.cat(
            [enc["mm_token_type_ids"], torch.zeros_like(filler)], dim=1)
    return batch_inputs, prompt_len


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded from the timing")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("qlora_step needs a CUDA GPU")
    modeling.setup(0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        modeling.build_tiny_vlm(folder, family="qwen2_vl", seed=0, size=modeling.QWEN2_VL_2B,
                                device="cuda", dtype=torch.bfloat16)
        torch.cuda.empty_cache()
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        model, processor = modeling.load_vlm(folder, quantize_4bit=True, lora={"r": args.lora_r, "alpha": 2 * args.lora_r},
                                             gradient_checkpointing=True, max_pixels=args.image_side ** 2)
        load_s = time.perf_counter() - t1
    params = modeling.count_parameters(model)
    batch, prompt_len = make_batch(processor, args.batch, args.seq, args.image_side)
    batch = {k: v.to("cuda") for k, v in batch.items()}
    n_image_tokens = int((batch["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model.train()
    torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for step in range(args.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.3)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    timed = times[args.warmup:] or times
    step_s = float(np.mean(timed))
    result = {
        "bench": "qlora_step", "architecture": "Qwen2-VL-2B-Instruct (random init)",
        "gpu": torch.cuda.get_device_name(0), "versions": modeling.versions(),
        "batch": args.batch, "seq_len": args.seq, "image_side": args.image_side, "image_tokens": n_image_tokens,
        "steps": args.steps, "lora_r": args.lora_r, "gradient_checkpointing": True, "quantization": "nf4+double-quant, bf16 compute",
        "trainable_params": params["trainable"], "total_params": params["total"],
        "seconds_per_step": step_s, "tokens_per_second": args.batch * args.seq / step_s,
        "peak_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_memory_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "build_seconds": build_s, "load_seconds": load_s,
        "loss_first": losses[0], "loss_last": losses[-1], "losses_finite": bool(np.isfinite(losses).all()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
