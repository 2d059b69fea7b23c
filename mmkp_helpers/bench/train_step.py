"""Where a training step of notebook 03's recipe spends its time, with and without the fused loss.

    python -m mmkp_helpers.bench.train_step                 # both loss paths, 60 steps each
    python -m mmkp_helpers.bench.train_step --steps 100 --out results/bench/train_step_cpu2.jsonl

For each loss path (``stock``: the model's logits on the union of answer positions, then
cross-entropy; ``fused``: :func:`mmkp_helpers.losses.linear_cross_entropy` on the labelled
positions) it measures, on the tiny model and the synthetic clean split with notebook 03's
settings (QLoRA, LoRA r64, 8 posts a step):

- ``train_sft`` end to end: seconds per optimizer step (after ``--warmup`` steps), steps/s;
- a breakdown of one step, timed phase by phase on the same batches: image decoding, image
  preprocessing, chat rendering, tokenization (the processor with the images), label masking,
  the forward pass of the model body, the loss head (output projection + cross-entropy),
  the backward pass, the optimizer step; ``trainer_overhead`` is what the Trainer adds;
- the torch profiler's top operators (self CPU time per step).
One JSON line per path is printed and appended to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RECIPE = {"learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup": 0.05, "batch_size": 8,
          "logging_steps": 25, "save_steps": 10 ** 6, "seed": 0, "progress": False}
LORA = {"r": 64, "alpha": 256, "dropout": 0.0}


def _load(seed: int = 0):
    from mmkp_helpers import modeling

    modeling.setup(seed, verbose=False)
    return modeling.load_vlm(modeling.resolve_model("tiny-qwen2_vl"), quantize_4bit=True, lora=LORA,
                             min_pixels=3136, max_pixels=12544, verbose=False)


def _phases(records, fused: bool, n_batches: int) -> dict:
    """Seconds per step of each phase, timed by hand on ``n_batches`` batches."""
    import torch

    from mmkp_helpers import collate, training
    from mmkp_helpers.losses import fused_parts

    from mmkp_helpers.modeling import fix_bnb_cpu_training

    model, processor = _load()
    fix_bnb_cpu_training(model)  # as train_sft does
    coll = collate.ChatCollator(processor, prompt="direct")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=RECIPE["learning_rate"])
    t = dict.fromkeys(("image_decode", "image_preprocess", "chat_render", "tokenize", "label_mask", "forward_body",
                       "loss_head", "backward", "optimizer"), 0.0)
    model.train()
    for b in range(n_batches):
        recs = records[b * 8:(b + 1) * 8]
        c0 = time.perf_counter()
        images = [collate.load_image(r.example.image) for r in recs]
        c1 = time.perf_counter()
        processor.image_processor(images=images, return_tensors="pt")
        c2 = time.perf_counter()
        texts = [coll.render(r, "direct") for r in recs]
        c3 = time.perf_counter()
        batch = dict(processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt"))
        c4 = time.perf_counter()
        labels = coll.mask_labels(batch["input_ids"], batch["attention_mask"])
        c5 = time.perf_counter()
        parts = fused_parts(model) if fused else None
        if parts is not None:
            body, head = parts
            out = body(**batch, use_cache=False)
            c6 = time.perf_counter()
            targets = labels[:, 1:]
            rows, cols = (targets != -100).nonzero(as_tuple=True)
            from mmkp_helpers.losses import linear_cross_entropy
            loss = linear_cross_entropy(out.last_hidden_state[rows, cols], head.weight, targets[rows, cols]).mean()
        else:
            pos = training.loss_positions(labels)
            # the stock path computes body and head in one call: split them with a hook on the head
            marks = {}
            head = model.get_output_embeddings()
            handle = head.register_forward_pre_hook(lambda *a: marks.update(head=time.perf_counter()))
            out = model(**batch, use_cache=False, logits_to_keep=pos)
            handle.remove()
            c6 = marks["head"]
            losses, mask = training.token_losses(out.logits, labels, pos)
            loss = losses.sum() / mask.sum()
        c7 = time.perf_counter()
        loss.backward()
        c8 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        c9 = time.perf_counter()
        for key, (a, z) in zip(t, ((c0, c1), (c1, c2), (c2, c3), (c3, c4), (c4, c5), (c5, c6), (c6, c7), (c7, c8),
                                   (c8, c9))):
            t[key] += z - a
    del model
    return {k: round(v / n_batches, 5) for k, v in t.items()}


def measure(fused: bool, steps: int, warmup: int, profile_steps: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from mmkp_helpers import collate, data, overlap, training

    splits = overlap.prepare_splits("synthetic", "results/tiny", seed=0, verbose=False)
    records = collate.make_records(data.read_jsonl(splits["clean"]["train"]))
    stamps: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps[state.global_step] = time.perf_counter()

    model, processor = _load()
    settings = training.SFTSettings(**RECIPE, max_steps=steps, fused_loss=fused)
    with tempfile.TemporaryDirectory() as work:
        res = training.train_sft(model, processor, records, None, settings=settings, output_dir=work, callbacks=[Clock()])
    per_step = (stamps[steps] - stamps[warmup]) / (steps - warmup)
    del model
    phases = _phases(records, fused, n_batches=20)

    from torch.profiler import ProfilerActivity, profile

    model, processor = _load()
    settings = training.SFTSettings(**RECIPE, max_steps=profile_steps, fused_loss=fused)
    with tempfile.TemporaryDirectory() as work, profile(activities=[ProfilerActivity.CPU]) as prof:
        training.train_sft(model, processor, records, None, settings=settings, output_dir=work)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    top = [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1000 / profile_steps, 2), "calls": e.count}
           for e in ops]
    return {"bench": "train_step", "loss_path": "fused" if fused else "stock", "steps": steps,
            "s_per_step": round(per_step, 4), "steps_per_s": round(1 / per_step, 3),
            "final_loss": res.final_loss, "losses": [[s, round(v, 4)] for s, v in res.train_losses],
            "phases_s_per_step": phases,
            "trainer_overhead_s_per_step": round(per_step - sum(phases.values()), 4),
            "top_ops": top, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--paths", nargs="+", default=["stock", "fused"], choices=["stock", "fused"])
    parser.add_argument("--out", default="results/bench/train_step_cpu2.jsonl")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    for path in args.paths:
        row = measure(path == "fused", args.steps, args.warmup, args.profile_steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    if len(rows) == 2:
        print(json.dumps({"speedup": round(rows[0]["s_per_step"] / rows[1]["s_per_step"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
