"""Smoke run of notebook 00 with `mmkp-run --profile tiny`; assertions read what it recorded
(recommenders style). The fixture `tiny_run` (conftest) runs each notebook once per session."""
import pytest

from mmkp_helpers import claims, results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def test_00_vlm_primer(tiny_run):
    out = tiny_run("00")
    folder = out / "00_vlm_primer"
    m = results.read_json(folder / "measurements.json")
    assert (out / "00_vlm_primer.ipynb").exists()
    for name in ("image_tokens", "memory", "memory_real_architectures"):
        assert (folder / f"{name}.png").stat().st_size > 1000, name
    assert m["image_tokens_demo"] > 0 and m["image_tokens_by_side"]["28"] == 4 and m["image_tokens_by_side"]["896"] == 16
    assert m["lora_tensors_changed"] == m["lora_tensors"] > 0
    assert m["vision_tensors_changed"] == 0 and m["base_weight_unchanged"] is True
    assert m["train_losses"][-1] < m["train_losses"][0]
    # LoRA r64 on every language Linear of a 2-layer, 128-wide model with an 896-row vocabulary: a
    # larger share than on a real VLM (Qwen2-VL-2B with r16: under 1%), still a minority
    assert 0 < m["trainable_share"] < 0.15
    assert m["param_bytes_quantized_lora"] < m["param_bytes_full"]
    # the real architectures, computed from their configs (the published parameter counts)
    arch = m["architecture_memory"]
    assert arch["qwen2_vl-2b"]["parameters"]["total"] == 2_208_985_600
    assert arch["qwen2_vl-7b"]["parameters"]["total"] == 8_291_375_616
    for name, a in arch.items():
        gib = a["memory_gib"]
        assert gib["qlora"] < gib["bf16"] < gib["lora"], name
        for regime, parts in a["by_part_gib"].items():
            assert abs(sum(parts.values()) - gib[regime]) < 1e-6, (name, regime)
    # the computed QLoRA memory of the tiny model matches what the loaded model holds (buffers aside)
    assert abs(m["tiny_qlora_computed_bytes"] - m["param_bytes_quantized_lora"]) < 0.01 * m["param_bytes_quantized_lora"]
    assert m["full_precision"] == "float32 on the CPU" and "nats" in m["train_loss_unit"]
    # the Summary's numbers are computed claims that the record reproduces
    assert m["summary_claims"] and claims.check(m["summary_claims"], [], m) == []
    # the tiny base: Qwen's vocabulary cut to the benchmark, pretrained (its loss fell), and it
    # describes fresh pictures (six of them; the section's table shows each)
    base = m["base"]
    assert base is not None and base["vocab_size"] % 64 == 0 and base["vocab_size"] < 151_936 // 10
    assert base["loss_last_50"] < 0.5 * base["loss_first"]
    assert base["caption_exact_share"] >= 0.5
    assert (folder / "base_pretraining.png").stat().st_size > 1000
    params = results.read_json(folder / "params.json")
    assert params["profile"] == "tiny" and params["model_name"] == "tiny-qwen2_vl"
    # the executed notebook carries the same record as a display bundle
    bundles = results.read_notebook_records(out / "00_vlm_primer.ipynb")
    assert bundles and bundles[-1]["measurements"]["image_tokens_demo"] == m["image_tokens_demo"]

