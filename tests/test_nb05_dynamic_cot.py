"""Notebook 05 (Dynamic CoT) on the tiny profile after notebook 04: the correct run decides once,
after its warm-up in both forms, from the training posts it decodes both ways; the replayed control
has exactly its CoT exposure; the model's decision is read at inference (q, a threshold chosen on
validation, auto decoding that reasons exactly where q reaches it); and the findings and Summary
are computed from the records."""
import math

import pytest

from conftest import read_run
from mmkp_helpers import results

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


def test_05_dynamic_cot(tiny_run):
    tiny_run("04")  # its rationales, records and generations are reused
    out = tiny_run("05")
    folder, records, m = read_run(out, "05_dynamic_cot", ("decision", "exposure", "pareto"))
    assert m["baselines_reused_from_04"] is True
    params = results.read_json(folder / "params.json")
    assert params["policy"]["variant"] == "correct" and params["settings"]["decision_loss"] == "balanced"
    rec = {r["variant"]: r for r in records}
    assert set(rec) == {"correct", "correct:forced_think", "correct:forced_direct", "replay_control"}
    n = rec["correct"]["n"]
    for r in records:
        assert r["method"] == "dynamic_cot" and r["split"] == "clean" and r["n"] == n
        assert math.isfinite(r["metrics"]["all"]["F1@M"]) and 0 <= r["think_share"] <= 1
    # one decision, at the end of the warm-up of two epochs, and none at the last step
    policy = m["policy"]
    log = policy["log"]
    assert len(log) == 1 and log[0]["step"] == round(2 * policy["epoch_steps"]) < params["settings"]["max_steps"]
    assert rec["correct"]["cot_share_final"] == pytest.approx(log[0]["cot_share"])
    judged = log[0]["judged"]  # every training post with a rationale decoded both ways, by kind of post
    assert set(judged) >= {"needs:text", "needs:composition"}
    assert sum(v["to_cot"] for v in judged.values()) == round(log[0]["cot_share"] * sum(v["n"] for v in judged.values()))
    # the control replayed the exposure exactly
    e = m["exposure"]
    assert e["dynamic"] == e["replay_control"] == rec["correct"]["cot_visits"] == rec["replay_control"]["cot_visits"]
    assert e["replay_short_steps"] == 0
    # the decision at inference: auto thinks where q reaches the threshold chosen on validation
    dyn = rec["correct"]
    assert dyn["decoding"] == "auto" and dyn["threshold"] == m["valid_choice"]["threshold"]
    assert {"needs:text", "needs:image", "needs:composition"} <= set(dyn["think_share_by_subset"])
    assert rec["correct:forced_think"]["think_share"] == 1.0 and rec["correct:forced_direct"]["think_share"] == 0
    curve = m["test_curve"]
    assert curve[0]["think_share"] == 1.0 and curve[-1]["think_share"] == 0.0  # every threshold, both ends
    # findings from the records
    cot = next(r for r in results.read_json(out / "04_fine_tune_cot" / "metrics.json") if r["variant"] == "free")
    f = m["findings"]
    assert f["tokens_ratio_to_fine_tune_cot"] == pytest.approx(dyn["gen_tokens_mean"] / cot["gen_tokens_mean"])
    assert f["think_share"] == dyn["think_share"]
    # a sentence that says the model chooses is only written when it reasoned on some posts and not all
    texts = " ".join(c["text"] for c in m["summary_claims"])
    assert ("chose to reason" in texts) == (0 < dyn["think_share"] < 1)
