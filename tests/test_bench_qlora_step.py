"""bench.qlora_step: the matrix runs end to end through train_sft (CPU smoke mode, tiny model), and its
summary checks the issue's goals on constructed records."""
import json
from dataclasses import asdict

import pytest
import torch

from mmkp_helpers import modeling
from mmkp_helpers.bench import qlora_step

FIELDS = {"config", "quant", "base_dtype", "gradient_checkpointing", "loss", "batch", "answer", "attn_implementation",
          "seq_len_mean", "labelled_tokens_mean", "image_tokens", "timed_steps", "seconds_per_step",
          "tokens_per_second", "peak_memory_bytes", "peak_memory_kind", "peak_memory_allocated_gib",
          "trainable_params", "linear_params", "model_flops_per_sequence", "achieved_tflops", "mfu", "mfu_4n",
          "losses", "losses_finite", "wall_seconds"}


def test_config_names_round_trip():
    for name in qlora_step.default_matrix(4, 16):
        assert qlora_step.Config.parse(name).name == name
    cfg = qlora_step.Config.parse("lora-nogc-full-b8-cot-eager")
    assert (cfg.quant, cfg.gc, cfg.loss, cfg.batch, cfg.answer, cfg.attn) == ("lora", False, "full", 8, "cot", "eager")
    with pytest.raises(ValueError, match="bad configuration"):
        qlora_step.Config.parse("qlora-gc-fused-4-direct")


def test_random_model_names_build_the_real_sizes_once(tmp_path, monkeypatch):
    """resolve_model("random-qwen2_vl-2b") builds through build_tiny_vlm with the 2B's sizes in bf16,
    into the cache, once (the build itself is replaced here: it writes 4.4 GB)."""
    monkeypatch.setenv("MMKP_CACHE", str(tmp_path))
    calls = []

    def fake_build(path, family, seed, size, device, dtype):
        calls.append((family, seed, size, dtype))
        path.mkdir(parents=True, exist_ok=True)
        (path / "mmkp_tiny.json").write_text(json.dumps({"seed": seed, "builder": modeling.BUILDER_VERSION,
                                                         "size": asdict(size)}))
        return path

    monkeypatch.setattr(modeling, "build_tiny_vlm", fake_build)
    path = modeling.resolve_model("random-qwen2_vl-2b")
    assert path == str(tmp_path / "models" / "random-qwen2_vl-2b")
    assert modeling.resolve_model("random-qwen2_vl-2b") == path and len(calls) == 1
    assert calls[0] == ("qwen2_vl", 0, modeling.QWEN2_VL_2B, torch.bfloat16)
    modeling.resolve_model("random-qwen2_vl-7b")
    assert calls[1][2].hidden_size == 3584 and len(calls) == 2
    with pytest.raises(ValueError, match="random-qwen2_vl-2b"):
        modeling.resolve_model("random-qwen2_vl-1b")


def _row(config, peak_gb, mfu, seconds=1.0, **extra):
    cfg = qlora_step.Config.parse(config)
    return {"config": config, "quant": cfg.quant, "loss": cfg.loss, "batch": cfg.batch, "answer": cfg.answer,
            "attn_implementation": "sdpa", "gradient_checkpointing": cfg.gc, "peak_memory_bytes": peak_gb * 1e9,
            "peak_memory_allocated_gib": peak_gb * 1e9 / 2**30, "static_memory_gib": 1.0, "seconds_per_step": seconds,
            "tokens_per_second": cfg.batch * 512 / seconds, "achieved_tflops": 100.0, "mfu": mfu, "mfu_4n": mfu,
            "seq_len_mean": 511.0, "labelled_tokens_mean": 30.0, "losses": [12.0, 11.9]} | extra


def test_summary_checks_the_goals_and_names_levers():
    rows = [_row("qlora-gc-fused-b4-direct", 3.5, 0.10), _row("lora-gc-fused-b4-direct", 8.0, 0.20, 0.8),
            _row("qlora-nogc-fused-b16-direct", 20.0, 0.16, 2.0), _row("lora-nogc-fused-b16-direct", 24.0, 0.22, 1.5),
            _row("qlora-gc-full-b4-direct", 6.0, 0.08, 1.4),
            {"config": "lora-nogc-fused-b16-cot", "error": "OutOfMemoryError: CUDA out of memory"}]
    text = qlora_step.summarize(rows)
    assert "QLoRA peak <= 4 GB at batch 4 x 511: MET, lowest 3.50 GB (qlora-gc-fused-b4-direct)" in text
    assert "gc-fused-b4-direct: MET (3.50 vs 8.00 GB, ratio 0.44)" in text
    assert "nogc-fused-b16-direct: NOT MET (20.00 vs 24.00 GB" in text
    assert "MFU >= 25% for bf16 LoRA: NOT MET, best 22.0% (lora-nogc-fused-b16-direct)" in text
    assert "MFU >= 15% for QLoRA: MET, best 16.0% (qlora-nogc-fused-b16-direct)" in text
    assert "qlora-gc-full-b4-direct -> qlora-gc-fused-b4-direct: s/step x0.71, peak x0.58" in text
    assert "lora-nogc-fused-b16-cot" in text and "ERROR OutOfMemoryError" in text


@pytest.mark.slow
def test_cpu_smoke_runs_two_configs_through_train_sft(tmp_path, capsys):
    """The CPU smoke mode: 2 configurations x 2 steps (1 warm-up + 1 timed) on the tiny model, one
    QLoRA with the fused loss and gradient checkpointing, one float32 LoRA with full logits and CoT
    answers; every record has the fields the GPU run reports."""
    out = tmp_path / "bench.jsonl"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    rows = qlora_step.main(["--device", device, "--tiny", "--configs", "qlora-gc-fused-b2-direct,lora-nogc-full-b2-cot",
                            "--warmup", "1", "--steps", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads  # restored after the run
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["config"] for r in lines] == ["qlora-gc-fused-b2-direct", "lora-nogc-full-b2-cot"] == [r["config"] for r in rows]
    for r in lines:
        assert not r.get("error"), r.get("error")
        assert FIELDS <= set(r), FIELDS - set(r)
        assert r["steps"] == 2 and r["timed_steps"] == 1 and len(r["losses"]) == 2 and r["losses_finite"]
        assert r["seconds_per_step"] > 0 and r["tokens_per_second"] > 0 and r["peak_memory_bytes"] > 0
        assert r["image_tokens"] == 16 and abs(r["seq_len_mean"] - 160) <= 20
        assert r["model_flops_per_sequence"]["total"] > r["model_flops_per_sequence"]["lm"] > 0
        assert r["trainable_params"] == r["linear_params"]["lora"] > 0
    qlora, lora = lines
    assert (qlora["base_dtype"], qlora["gradient_checkpointing"], qlora["loss"]) == (("nf4", True, "fused"))
    assert lora["base_dtype"] in ("float32", "bf16") and lora["loss"] == "full" and lora["answer"] == "cot"
    assert lora["labelled_tokens_mean"] > qlora["labelled_tokens_mean"] + 20  # CoT answers are longer
    if device == "cpu":
        assert qlora["mfu"] is None and qlora["peak_memory_kind"] == "cpu_max_rss"
    assert "goals (from the issue)" in capsys.readouterr().out
