"""The paper profile's run-time estimate: arithmetic on measured step and generation times."""
import pytest

from mmkp_helpers.bench import paper_estimate as pe


def test_estimate_from_measured_steps_and_generation():
    train = [{"answer": "direct", "batch": 4, "seconds_per_step": 2.0, "config": "a"},
             {"answer": "direct", "batch": 8, "seconds_per_step": 3.2, "config": "b"},   # faster per sequence
             {"answer": "cot", "batch": 4, "seconds_per_step": 4.0, "config": "c"},
             {"answer": "cot", "batch": 16, "error": "OutOfMemoryError"}]
    gens = [{"max_new_tokens": 64, "batch_sizes": {"1": {"seconds_per_example": 1.0}, "16": {"seconds_per_example": 0.1}}},
            {"max_new_tokens": 512, "batch_sizes": {"16": {"seconds_per_example": 0.5}}}]
    est = pe.estimate(train, gens)
    sequences = pe.PROFILE["epochs"] * pe.PROFILE["train_posts"]
    assert est["train"]["direct"]["config"] == "b"
    assert est["hours"]["train_direct"] == pytest.approx(sequences * 0.4 / 3600)
    assert est["hours"]["train_cot"] == pytest.approx(sequences * 1.0 / 3600)
    assert est["hours"]["test_generate_direct"] == pytest.approx(pe.PROFILE["test_posts"] * 0.1 / 3600)
    assert est["hours"]["sft_run"] == pytest.approx(est["hours"]["train_direct"] + est["hours"]["test_generate_direct"])
    assert pe.scaled(est, "H200", "L4")["sft_run"] > est["hours"]["sft_run"]


def test_from_rate():
    out = pe.from_rate(1000.0, text_tokens=100, overhead=30, image_tokens=(256,))
    sequences = pe.PROFILE["epochs"] * pe.PROFILE["train_posts"]
    assert out["256"]["tokens_per_post"] == 386
    assert out["256"]["hours"] == pytest.approx(sequences * 386 / 1000 / 3600)
