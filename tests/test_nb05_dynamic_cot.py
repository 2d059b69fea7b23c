"""Notebook 05 (Dynamic CoT) on the tiny profile after notebook 04: the variants train with their
policies, the CoT share they log is the one they trained with, the trained models choose when to
reason, and the findings are computed from the records."""
import math

import pytest

from conftest import read_run
from mmkp_helpers import results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def test_05_dynamic_cot(tiny_run):
    tiny_run("04")  # its rationales, records and generations are reused
    out = tiny_run("05")
    folder, records, m = read_run(out, "05_dynamic_cot", ("warmup_losses", "policy_over_training", "pareto"))
    assert m["baselines_reused_from_04"] is True
    params = results.read_json(folder / "params.json")
    default = params["default_variant"]
    rec = {r["variant"]: r for r in records}
    assert set(rec) == {*params["variants"], f"{default}:forced_direct", f"{default}:forced_think"}
    for variant in params["variants"]:
        r = rec[variant]
        assert r["method"] == "dynamic_cot" and r["split"] == "clean" and r["n"] == 150
        policy = m["policies"][variant]
        log = policy["log"]
        assert log and all(d["step"] >= params["policy"]["warmup_steps"] for d in log)
        assert r["cot_share_final"] == pytest.approx(log[-1]["cot_share"])
        assert 0 <= r["think_share"] <= 1 and math.isfinite(r["metrics"]["all"]["F1@M"])
        assert {"all", "kind:text+image"} <= set(r["think_share_by_subset"])
    # the random control trained with the CoT share the default variant ended with
    assert rec["random"]["cot_share_final"] == pytest.approx(rec[default]["cot_share_final"], abs=1 / 600 + 1e-9)
    # forced decodings: never / always reasoning
    assert rec[f"{default}:forced_direct"]["think_share"] == 0
    assert rec[f"{default}:forced_think"]["think_share"] == 1.0
    # a model trained on a mix reasons on some posts, not on all, and costs fewer tokens than
    # always reasoning (notebook 04's Fine-tune-CoT on the same test posts)
    cot = next(r for r in results.read_json(out / "04_fine_tune_cot" / "metrics.json") if r["variant"] == "free")
    d = rec[default]
    assert 0 < rec[default]["cot_share_final"] < 1
    # the seed sweep (results/bench/cot_seeds_cpu2.jsonl) measured the default variant at 0.22 to 0.50
    # of Fine-tune-CoT's tokens on each of 4 seeds; its F1@M did not reach the better baseline's on
    # average (the README gives the figures), so no F1 ordering is asserted here
    assert d["gen_tokens_mean"] <= 0.5 * cot["gen_tokens_mean"]
    f = m["findings"]
    assert f["tokens_ratio_to_fine_tune_cot"] == pytest.approx(d["gen_tokens_mean"] / cot["gen_tokens_mean"])
    assert f["sweep"]["seeds"], "the committed seed sweep of the default variant"
