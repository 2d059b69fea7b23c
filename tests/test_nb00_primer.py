"""Smoke run of notebook 00 with `mmkp-run --profile tiny`; assertions read what it recorded
(recommenders style). The fixture `tiny_run` (conftest) runs each notebook once per session."""
import pytest

from mmkp_helpers import results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def test_00_vlm_primer(tiny_run):
    out = tiny_run("00")
    folder = out / "00_vlm_primer"
    m = results.read_json(folder / "measurements.json")
    assert (out / "00_vlm_primer.ipynb").exists()
    assert (folder / "image_tokens.png").stat().st_size > 1000 and (folder / "memory.png").stat().st_size > 1000
    assert m["image_tokens_demo"] > 0 and m["image_tokens_by_side"]["28"] == 4 and m["image_tokens_by_side"]["896"] == 16
    assert m["lora_tensors_changed"] == m["lora_tensors"] > 0
    assert m["vision_tensors_changed"] == 0 and m["base_weight_unchanged"] is True
    assert m["train_losses"][-1] < m["train_losses"][0]
    assert 0 < m["trainable_share"] < 0.05
    assert m["param_bytes_quantized_lora"] < m["param_bytes_full"]
    params = results.read_json(folder / "params.json")
    assert params["profile"] == "tiny" and params["model_name"] == "tiny-qwen2_vl"
    # the executed notebook carries the same record as a display bundle
    bundles = results.read_notebook_records(out / "00_vlm_primer.ipynb")
    assert bundles and bundles[-1]["measurements"]["image_tokens_demo"] == m["image_tokens_demo"]
