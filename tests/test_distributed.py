"""DDP with the one SFT entry point: two CPU processes (gloo) run ``tools/train_ddp.py`` ->
``train_sft`` under ``torchrun``, and one process runs the same script with the global batch.

How the comparison is made meaningful:

- **Same examples per step.** 2 ranks x 2 posts per rank against 1 process x 4 posts, same
  seed: accelerate shards each global batch of the (seeded) shuffled order across the ranks, so
  the union of what the ranks train on at a step is what the single process trains on (checked
  from the loss ledgers, for 3 steps, across an epoch boundary).
- **Same gradient.** DDP averages the ranks' gradients. The trainer divides each rank's token-loss
  sum by a token count: with the count of *all* ranks (times the number of ranks, undone by the
  averaging) the averaged gradient is the single process's exactly; with each rank's *own* count it
  is a mean of per-rank means, which differs whenever the ranks' shards hold different numbers of
  supervised tokens (the data here makes sure one step does: posts carry 0-2 extra keyphrases).
- **Two loss paths.** Under DDP the trainer's fused answer-token loss is off (``fused_parts`` does
  not see through the DDP wrapper), so the ranks take the stock ``logits_to_keep`` path while the
  single process takes the fused one: the comparison also checks that both give the same loss.
- **Observable.** Plain SGD (an update proportional to the gradient; Adam's first step is about
  ``lr * sign(grad)``, which hides small gradient differences and flips on tiny ones), no LoRA
  dropout (random per process), no clipping, constant learning rate, float32.

Measured (tiny Qwen2-VL, 2-core CPU): with global token normalisation the per-step losses of the two
runs differ by <= 1e-6 and the LoRA weights by 1e-6 of the update's size (float32 summation order
and padding to different lengths); the tolerances below are 100x that. With per-rank normalisation
(each rank divides by its own token count) the step-2 loss differed by 0.045, the step-3 loss by
0.010, and the weights by 4.8% of the update. The base model is float32,
not 4-bit: the DDP mechanics are the same, and the 4-bit CPU kernels only add time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "train_ddp.py"
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 170, 30), "yellow": (230, 220, 40)}
WORDS = ["harbour", "concert", "football", "garden"]
STEPS = 3
PER_RANK_BATCH = 2
WORLD = 2
LOSS_TOL = 1e-4      # absolute, per logged step loss (losses are about 11-13)
WEIGHT_TOL = 1e-4    # ||W_ddp - W_single|| / ||W_single - W_init||


def write_examples(folder: Path) -> Path:
    """Eight posts with solid-colour pictures; 0, 1 or 2 extra keyphrases, so shards differ in tokens."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(8):
        colour, word = list(COLOURS)[i % 4], WORDS[i // 2]
        image = folder / f"{colour}.png"
        if not image.exists():
            Image.new("RGB", (56, 56), COLOURS[colour]).save(image)
        rows.append({"id": f"ex{i}", "text": f"post {i} about the {word}",
                     "keyphrases": [word, colour, *["weekend vibes"] * (i % 3)], "image": str(image)})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_script(launcher: list[str], model_dir: Path, data: Path, out: Path,
               batch_size: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # CPU processes even where there is a GPU
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [*launcher, str(SCRIPT), "--model", str(model_dir), "--data", str(data), "--valid-data", str(data),
           "--output-dir", str(out / "run"), "--report-dir", str(out / "report"),
           "--batch-size", str(batch_size), "--max-steps", str(STEPS), "--optim", "sgd", "--learning-rate", "0.5",
           "--lr-scheduler", "constant", "--max-grad-norm", "0", "--lora-r", "8", "--lora-alpha", "16",
           "--lora-dropout", "0", "--logging-steps", "1", "--seed", "0"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def read_report(folder: Path, rank: int):
    from safetensors.torch import load_file

    return (json.loads((folder / f"rank{rank}.json").read_text()), load_file(folder / f"rank{rank}_lora.safetensors"),
            load_file(folder / f"rank{rank}_lora_init.safetensors"))


def steps_of(ledger) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for step, example_id, *_ in ledger:
        out.setdefault(int(step), set()).add(example_id)
    return out


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """One 2-process DDP run (torchrun, gloo) and one single-process run with the global batch."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_examples(tmp / "data")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                "--nproc_per_node", str(WORLD)]
    ddp = run_script(torchrun, tiny_model_dir, data, tmp / "ddp", PER_RANK_BATCH)
    single = run_script([sys.executable], tiny_model_dir, data, tmp / "single", PER_RANK_BATCH * WORLD)
    return {"data": data, "ddp": tmp / "ddp", "single": tmp / "single", "ddp_log": ddp.stdout + ddp.stderr,
            "single_log": single.stdout + single.stderr}


@pytest.mark.slow
def test_ddp_ranks_gloo_sharding_and_identical_adapters(runs):
    from safetensors.torch import load_file

    reports = [read_report(runs["ddp"] / "report", r) for r in range(WORLD)]
    (r0, w0, i0), (r1, w1, i1) = reports
    # (c) two processes of one gloo group
    for rank, (rep, _, _) in enumerate(reports):
        assert rep["rank"] == rank and rep["world_size"] == WORLD and rep["env_world_size"] == WORLD
        assert rep["backend"] == "gloo" and rep["distributed_type"] == "DistributedType.MULTI_CPU"
        assert rep["model_device"] == "cpu" and rep["steps"] == STEPS
    # (a) the same LoRA weights on both ranks, before (same seed) and after training (DDP averages
    # the gradients, so every rank takes the same step): bit for bit
    assert set(w0) == set(w1) and len(w0) > 0
    assert all(torch.equal(i0[k], i1[k]) for k in i0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(not torch.equal(w0[k], i0[k]) for k in w0)  # and they did train
    # each rank's ledger holds its own shard only; the shards are disjoint, of PER_RANK_BATCH posts
    s0, s1 = steps_of(r0["ledger"]), steps_of(r1["ledger"])
    assert set(s0) == set(s1) == set(range(STEPS))
    for step in range(STEPS):
        assert len(s0[step]) == len(s1[step]) == PER_RANK_BATCH and not s0[step] & s1[step]
    # gather_ledger gives every rank the records of all ranks
    assert r0["ledger_all_ranks"] == r1["ledger_all_ranks"]
    assert sorted(map(tuple, r0["ledger_all_ranks"])) == sorted(map(tuple, r0["ledger"] + r1["ledger"]))
    # the logged loss is the mean over ranks (the Trainer gathers it), the same on both ranks; so is
    # the evaluation at the end (deferred batches through prediction_step, sharded and gathered)
    assert r0["train_losses"] == r1["train_losses"]
    assert r0["eval_loss"] == r1["eval_loss"] and 0 < r0["eval_loss"] < 20
    # one adapter, written by the run, equal to what the ranks hold
    adapter = load_file(Path(r0["adapter_dir"]) / "adapter_model.safetensors")
    for name, value in w0.items():
        saved = adapter[name.replace(".default", "")]
        assert torch.equal(saved.float(), value), name


@pytest.mark.slow
def test_ddp_matches_single_process_with_global_batch(runs, tiny_model_dir):
    from mmkp_helpers.collate import ChatCollator, IGNORE_INDEX, make_records
    from mmkp_helpers.data import read_jsonl
    from mmkp_helpers.modeling import load_processor

    (r0, w_ddp, init), (r1, _, _) = read_report(runs["ddp"] / "report", 0), read_report(runs["ddp"] / "report", 1)
    single, w_one, init_one = read_report(runs["single"] / "report", 0)
    assert single["world_size"] == 1 and single["backend"] is None
    assert all(torch.equal(init[k], init_one[k]) for k in init)  # the same starting point
    # the same examples at every step: what the two ranks trained on together = the single process's batch
    s0, s1, s_one = steps_of(r0["ledger"]), steps_of(r1["ledger"]), steps_of(single["ledger"])
    assert {k: s0[k] | s1[k] for k in s0} == s_one
    # the data is a real test of the normalisation: at some step the ranks' shards differ in tokens
    processor = load_processor(str(tiny_model_dir))
    collator = ChatCollator(processor)
    examples = {ex.id: ex for ex in read_jsonl(runs["data"])}

    def tokens(ids) -> int:
        batch = collator(make_records([examples[i] for i in sorted(ids)]))
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    assert any(tokens(s0[k]) != tokens(s1[k]) for k in s0), "every step's shards hold equal token counts"

    # (b) the same losses and the same weights
    ddp_losses = dict(r0["train_losses"])
    one_losses = dict(single["train_losses"])
    assert set(ddp_losses) == set(one_losses) == set(range(1, STEPS + 1))
    diffs = {k: abs(ddp_losses[k] - one_losses[k]) for k in ddp_losses}
    update = torch.sqrt(sum(((w_one[k] - init[k]) ** 2).sum() for k in w_one))
    gap = torch.sqrt(sum(((w_ddp[k] - w_one[k]) ** 2).sum() for k in w_one))
    hint = ("DDP and one process with the global batch disagree: KeyphraseTrainer must normalise the loss "
            "by the supervised tokens of all ranks (gather num_items_in_batch) and scale it by the number "
            "of processes, see docs/multi_gpu.md")
    assert max(diffs.values()) < LOSS_TOL, f"{hint}; per-step loss differences {diffs}"
    assert float(gap / update) < WEIGHT_TOL, f"{hint}; relative LoRA weight difference {float(gap / update):.2e}"


# ------------------------------------------------------------------ helpers and configs (fast)
def test_rank_device_placement_and_effective_batch(monkeypatch):
    from mmkp_helpers import distributed

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert (distributed.local_rank(), distributed.global_rank(), distributed.world_size()) == (0, 0, 1)
    assert distributed.is_main_process() and not distributed.is_distributed()
    assert distributed.device_map(on_gpu=False) is None  # the CPU: load as before
    assert distributed.device_map(on_gpu=True, device="cuda:3") == {"": 3}
    monkeypatch.setenv("LOCAL_RANK", "5")
    monkeypatch.setenv("RANK", "13")
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert distributed.device_map(on_gpu=True) == {"": 5}  # rank 13 = machine 1's GPU 5
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one visible GPU per process
    assert distributed.device_map(on_gpu=True) == {"": 0}
    assert not distributed.is_main_process() and distributed.is_distributed()
    assert distributed.effective_batch_size(4, 2) == 4 * 2 * 16
    assert distributed.effective_batch_size(4, 4, n_processes=1) == 16


def test_launch_configs_parse():
    from accelerate.commands.config.config_args import ClusterConfig

    ddp = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate_ddp.yaml"))
    assert str(ddp.distributed_type).endswith("MULTI_GPU") and ddp.num_machines == 1 and ddp.mixed_precision == "no"
    multi = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate_multinode.yaml"))
    assert multi.num_machines == 2 and multi.machine_rank == 0 and multi.main_process_ip and multi.main_process_port
    assert multi.num_processes % multi.num_machines == 0
    ds = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate_deepspeed.yaml"))
    assert str(ds.distributed_type).endswith("DEEPSPEED")
    assert (ROOT / ds.deepspeed_config["deepspeed_config_file"]).is_file()
    for stage in (2, 3):
        cfg = json.loads((ROOT / "configs" / f"deepspeed_zero{stage}.json").read_text())
        assert cfg["zero_optimization"]["stage"] == stage
        # batch sizes, accumulation, clipping and precision come from train_sft's TrainingArguments
        assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"
