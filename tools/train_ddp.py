"""SFT with ``train_sft`` on one or many processes: the same code path, whatever the launcher.

One GPU (or the CPU), as the notebooks do::

    python tools/train_ddp.py --model tiny-qwen2_vl --max-steps 20

Several GPUs of one machine (DDP, one process per GPU)::

    accelerate launch --config_file configs/accelerate_ddp.yaml tools/train_ddp.py \\
        --model Qwen/Qwen2-VL-2B-Instruct --quantize-4bit --batch-size 4 --grad-accum 1

    torchrun --nproc_per_node 4 tools/train_ddp.py --model Qwen/Qwen2-VL-2B-Instruct --quantize-4bit

Several machines: ``configs/accelerate_multinode.yaml`` (see docs/multi_gpu.md). Two CPU
processes, as the test does: ``accelerate launch --cpu --num_processes 2 tools/train_ddp.py ...``.

Each process loads its own model copy onto ``cuda:LOCAL_RANK`` (:func:`mmkp_helpers.modeling.load_vlm`),
the Trainer wraps it in DDP, shards the data and averages gradients; rank 0 writes the adapter to
``<output-dir>/adapter``. The data is the synthetic benchmark's clean training split
(``overlap.prepare_splits("synthetic", results_dir)``) or any JSONL of examples (``--data``).
``--report-dir`` makes every rank write what it saw (rank, world size, backend, losses, the
examples of its shards, its LoRA weights), which is how tests/test_distributed.py checks a run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a clone without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-qwen2_vl",
                   help="hub id, local folder, or tiny-qwen2_vl / tiny-qwen2_5_vl (built on first use)")
    p.add_argument("--quantize-4bit", action=argparse.BooleanOptionalAction, default=False,
                   help="QLoRA: the frozen base in 4-bit NF4 (default off)")
    p.add_argument("--data", default="synthetic-clean",
                   help="synthetic-clean / synthetic-original (the synthetic benchmark's splits) or a JSONL file")
    p.add_argument("--valid-data", default=None, help="a JSONL of validation examples (default: none)")
    p.add_argument("--results-dir", default="results/ddp", help="where prepare_splits writes the synthetic splits")
    p.add_argument("--output-dir", default="results/ddp/sft", help="checkpoints/ and adapter/ go here")
    p.add_argument("--limit", type=int, default=0, help="train on the first N examples only (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=20, help="optimizer steps (<= 0: use --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch PER PROCESS")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--lr-scheduler", default="constant")
    p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-fused-loss", action="store_true", help="the stock logits path (needed with ZeRO-3)")
    p.add_argument("--lora-r", type=int, default=64)
    p.add_argument("--lora-alpha", type=int, default=256)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--min-pixels", type=int, default=None)
    p.add_argument("--max-pixels", type=int, default=None)
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--save-steps", type=int, default=1000)
    p.add_argument("--report-dir", default=None,
                   help="every rank writes rank<R>.json and rank<R>_lora[_init].safetensors here")
    return p.parse_args(argv)


def load_examples(args):
    from mmkp_helpers.data import read_jsonl
    from mmkp_helpers.overlap import prepare_splits

    if args.data.startswith("synthetic-"):
        variant = args.data.split("-", 1)[1]
        paths = prepare_splits("synthetic", args.results_dir, seed=args.seed, verbose=False)
        train = read_jsonl(paths[variant]["train"])
    else:
        train = read_jsonl(args.data)
    valid = read_jsonl(args.valid_data) if args.valid_data else None
    if args.limit > 0:
        train = train[: args.limit]
    return train, valid


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from accelerate import PartialState

    from mmkp_helpers import distributed
    from mmkp_helpers.collate import make_records
    from mmkp_helpers.modeling import load_vlm, resolve_model
    from mmkp_helpers.training import LossLedger, SFTSettings, train_sft

    # One process writes what every process reads (the tiny model, the synthetic splits); the
    # others wait for it. PartialState starts the process group (gloo on the CPU, nccl on GPUs);
    # the Trainer reuses it. The CPU flag must match what TrainingArguments(use_cpu=...) asks.
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        model_path = resolve_model(args.model, seed=args.seed)
        train, valid = load_examples(args)

    torch.manual_seed(args.seed)  # LoRA's random init: the same on every rank (DDP also broadcasts it)
    lora = {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout}
    model, processor = load_vlm(model_path, quantize_4bit=args.quantize_4bit, lora=lora,
                                gradient_checkpointing=args.gradient_checkpointing,
                                min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                                verbose=state.is_main_process)
    settings = SFTSettings(
        learning_rate=args.learning_rate, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, warmup=args.warmup, lr_scheduler=args.lr_scheduler, optim=args.optim,
        max_grad_norm=args.max_grad_norm, gradient_checkpointing=args.gradient_checkpointing,
        logging_steps=args.logging_steps, save_steps=args.save_steps, seed=args.seed,
        progress=state.is_main_process, fused_loss=not args.no_fused_loss)
    if state.is_main_process:
        print(f"{state.num_processes} process(es) on {state.distributed_type}: effective batch "
              f"{distributed.effective_batch_size(args.batch_size, args.grad_accum, state.num_processes)} "
              f"= {args.batch_size} per device x {args.grad_accum} accumulation x {state.num_processes} processes; "
              f"{len(train)} training examples")
    if args.report_dir:  # the LoRA weights before training (the same on every rank: same seed)
        from safetensors.torch import save_file
        Path(args.report_dir).mkdir(parents=True, exist_ok=True)
        save_file(lora_weights(model), str(Path(args.report_dir) / f"rank{state.process_index}_lora_init.safetensors"))
    ledger = LossLedger()
    result = train_sft(model, processor, make_records(train), make_records(valid) if valid else None,
                       settings=settings, output_dir=args.output_dir, ledger=ledger)

    if args.report_dir:
        write_report(Path(args.report_dir), state, model, ledger, result)
    state.wait_for_everyone()
    if state.is_main_process:
        print(f"done: {result.steps} steps, final loss {result.final_loss}, adapter in {result.adapter_dir}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def lora_weights(model) -> dict:
    return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if "lora_" in n}


def write_report(folder: Path, state, model, ledger, result) -> None:
    """What this rank saw: rank, world, backend, losses, the examples of its shards (its own
    ledger and everyone's), and its LoRA weights."""
    from safetensors.torch import save_file

    from mmkp_helpers import distributed

    folder.mkdir(parents=True, exist_ok=True)
    everyone = distributed.gather_ledger(ledger)  # a collective: every rank calls it
    rank = state.process_index
    save_file(lora_weights(model), str(folder / f"rank{rank}_lora.safetensors"))
    report = {
        "rank": rank, "local_rank": state.local_process_index, "world_size": state.num_processes,
        "env_world_size": distributed.world_size(), "backend": distributed.backend(),
        "distributed_type": str(state.distributed_type), "device": str(state.device),
        "model_device": str(next(model.parameters()).device),
        "steps": result.steps, "train_losses": result.train_losses, "mean_loss": result.mean_loss,
        "eval_loss": result.eval_loss,
        "adapter_dir": result.adapter_dir,
        "ledger": [list(h) for h in ledger.history], "ledger_all_ranks": [list(h) for h in everyone.history],
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
