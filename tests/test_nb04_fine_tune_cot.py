"""Notebook 04 (Fine-tune-CoT): a smoke run on the tiny profile, asserting on what it recorded, and a
run against a real chat-completions server on 127.0.0.1 with a key in the environment that must
appear in no file, notebook or log line."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import read_run
from mmkp_helpers import results
from mmkp_helpers.paths import project_root

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_server import ChatServer  # noqa: E402

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

VARIANTS = {("sft", "direct"), ("fine_tune_cot", "free"), ("fine_tune_cot", "forced_think"),
            ("fine_tune_cot", "forced_direct"), ("fine_tune_cot", "noisy_teacher")}


def test_04_fine_tune_cot(tiny_run):
    tiny_run("03")  # notebook 04 reuses notebook 03's SFT adapter when the settings match
    out = tiny_run("04")
    folder, records, m = read_run(out, "04_fine_tune_cot", ("rationale_lengths", "tokens_vs_f1"))
    rec = {(r["method"], r["variant"]): r for r in records}
    assert set(rec) == VARIANTS
    assert m["sft_reused_from"] == "03_sft_qlora/runs/text_image/adapter" or m["sft_reused_from"].endswith(
        "03_sft_qlora/runs/text_image/adapter")
    n_test = rec[("sft", "direct")]["n"]
    for r in records:
        assert r["notebook"] == "04_fine_tune_cot" and r["split"] == "clean" and r["n"] == n_test >= 500
        assert {"all", "text+image", "image", "kind:present", "tag", "unseen:text+image", "unseen:tag", "needs:text",
                "needs:image", "needs:composition"} <= set(r["metrics"])
        assert r["metrics"]["unseen:text+image"]["n_targets"] >= 100  # the held-out pairs: enough to measure
        assert r["gen_tokens_mean"] > 0 and 0 <= r["think_share"] <= 1
    assert rec[("sft", "direct")]["same_as"] == "03_sft_qlora sft text+image"  # notebook 06 shows it once

    # the teacher: every rationale kept and faithful; the pilot and the first run sent every request
    # (a scratch cache), the rerun answered from the cache alone
    t = m["teacher"]
    n_train = t["run"]["examples"]  # the clean split's training posts
    assert n_train >= 600 and t["run"]["kept"] == n_train and t["run"]["failures"] == 0
    assert t["pilot"]["requests_sent"] == 5 and t["run"]["requests_sent"] == n_train - 5
    assert t["rerun"]["requests_sent"] == 0 and t["rerun"]["cache_hits"] == n_train
    # the estimate says which output length it used, and is within 20% of the run's (hypothetical) cost
    assert t["estimate"]["output_tokens_source"].startswith("measured") and t["priced"].startswith("as if paid")
    assert t["estimate_upper_bound"]["output_tokens_source"].startswith("max_tokens")
    assert t["run"]["all_cost_usd"] > 0 and abs(t["estimate_error"]) <= 0.2
    assert t["estimate"]["cost_usd"] == pytest.approx((1 + t["estimate_error"]) * t["run"]["all_cost_usd"])
    assert t["estimate_upper_bound"]["cost_usd"] > 2 * t["run"]["all_cost_usd"]
    for key in ("cache_path", "failures_path"):  # relative inside the project; a run folder elsewhere stays absolute
        path = Path(t["run"][key])
        assert not path.is_absolute() or project_root() not in path.parents, path
    assert 15 <= t["rationale_tokens"]["mean"] <= 75
    noisy = rec[("fine_tune_cot", "noisy_teacher")]
    assert 0.1 <= noisy["unfaithful_rationales"] / n_train <= 0.3  # 30% of the posts where a kind of noise applies

    # training happened in both CoT runs
    for name in ("fine_tune_cot", "fine_tune_cot_noisy"):
        run = m["runs"][name]
        losses = [loss for _, loss in run["train_losses"]]
        assert run["steps"] == 800 and all(math.isfinite(x) for x in losses) and losses[-1] < 0.8 * losses[0]
        assert run["form_counts"] == {"direct": 0, "cot": n_train}

    # decoding: the CoT model reasons when free or forced to, never when forced direct; SFT never does
    sft, free = rec[("sft", "direct")], rec[("fine_tune_cot", "free")]
    assert sft["think_share"] == 0 and free["think_share"] >= 0.95
    assert rec[("fine_tune_cot", "forced_think")]["think_share"] == 1.0
    assert rec[("fine_tune_cot", "forced_direct")]["think_share"] == 0
    # every CoT record carries the quality of its rationales; cut off means the budget, nothing else
    for key in (("fine_tune_cot", "free"), ("fine_tune_cot", "forced_think"), ("fine_tune_cot", "noisy_teacher")):
        q = rec[key]["rationale_quality"]
        assert q["n_cot"] == n_test and 0 < rec[key]["well_formed_share"] <= 1
        assert sum(q[k] for k in ("cut_off", "unclosed", "no_answer", "loop", "inconsistent", "well_formed")) == n_test
        assert q["cut_off"] == rec[key]["cut_in_think"] <= rec[key]["cut_off"]
    assert rec[("fine_tune_cot", "forced_direct")]["well_formed_share"] is None
    # ... and, on the synthetic posts, whether its rationales read the picture truly (per kind of post)
    for key in (("fine_tune_cot", "free"), ("fine_tune_cot", "forced_think"), ("fine_tune_cot", "noisy_teacher")):
        reading, q = rec[key]["rationale_reading"], rec[key]["rationale_quality"]
        assert {"all", "needs:text", "needs:image", "needs:composition"} <= set(reading)
        assert reading["all"]["posts"] == n_test == sum(reading[k]["posts"] for k in reading if k.startswith("needs:"))
        # ... and by account: the clean split leaves every post of one account in test, whose tags no
        # training post shows (a rationale about them can only guess)
        accounts = ("signed:seen", "signed:unseen", "unsigned")
        assert set(reading) - {"all"} - {k for k in reading if k.startswith("needs:")} <= set(accounts)
        assert sum(reading[k]["posts"] for k in accounts if k in reading) == n_test
        assert reading["signed:unseen"]["posts"] > 0
        assert round(reading["all"]["well_formed"] * n_test) == q["well_formed"]
        assert 0 <= reading["needs:composition"]["reads_truly"] <= reading["needs:composition"]["opened"] <= 1
        # a well-formed chain either follows from itself or not (posts with a colour); text posts have none
        comp = reading["needs:composition"]
        assert comp["coherent"] + comp["incoherent"] <= comp["well_formed"] + 1e-4
        assert reading["needs:text"]["coherent"] == reading["needs:text"]["incoherent"] == 0
    assert "rationale_reading" not in rec[("fine_tune_cot", "forced_direct")] and "rationale_reading" not in sft
    assert m["findings"]["reading"] == free["rationale_reading"]
    texts = " ".join(c["text"] for c in m["summary_claims"])
    assert "read both shapes and the mixed colour truly" in texts and "misread the picture" in texts
    assert "a colour chain that follows from itself" in texts
    assert "so the chain names it on more posts than SFT on 3 of the 4 seeds" in texts  # the committed probe
    # the committed stranger study: every seed at 95% or more, three of the four goal checks, no tag guessed
    g = m["findings"]["stranger_goal"]
    assert g["well_formed_min"] >= 0.95 and g["checks"]["all_diff_mean"] and g["unseen_higher_seeds"] == 4
    assert not g["checks"]["unseen_gain_mean"] and g["sft_unseen_headroom"] < 0.05
    assert g["tagged_unseen_account_posts"] == g["own_signature_written"] == 0
    assert m["findings"]["stranger_study"]["facts_running_steps800_lr2e-3"]["well_formed_min"] < 0.95
    assert "with stranger posts (both methods train on them) the worst seed has" in texts
    # reasoning costs tokens and time on every post
    assert free["gen_tokens_mean"] >= 2.5 * sft["gen_tokens_mean"]
    assert free["seconds_per_post"] > sft["seconds_per_post"]

    f = m["findings"]
    f1m = lambda r, s="all": r["metrics"][s]["F1@M"]
    assert f["cot_minus_sft_f1m"] == pytest.approx(f1m(free) - f1m(sft))
    assert f["token_ratio"] == pytest.approx(free["gen_tokens_mean"] / sft["gen_tokens_mean"])
    sweep = f["sweep"]
    assert sweep["seeds"] >= 4
    bundles = results.read_notebook_records(out / "04_fine_tune_cot.ipynb")
    assert bundles and bundles[-1]["metrics"] == records


def test_04_teacher_key_is_never_written(tmp_path):
    """Notebook 04 with an OpenAI-compatible teacher (a real HTTP server on 127.0.0.1) and a key in
    the environment: the key reaches the server and appears in no executed notebook, results file,
    cache file or log line."""
    key = "fake-mmkp-test-key-" + os.urandom(12).hex()
    out = tmp_path / "keyrun"
    with ChatServer() as server:
        profile = {"description": "notebook 04 against a local teacher", "env": {"HF_HUB_OFFLINE": "1"},
                   "timeout": 900, "defaults": {"model_name": "tiny-qwen2_vl", "seed": 0},
                   "notebooks": {"04_fine_tune_cot": {
                       "teacher": "openai", "teacher_model": "fake-vlm", "teacher_base_url": server.url,
                       "teacher_api_key_env": "MMKP_TEST_TEACHER_KEY", "teacher_concurrency": 8,
                       "teacher_timeout": 10.0, "price_input_per_m": 2.5, "price_output_per_m": 10.0,
                       "max_cost": 50.0, "max_steps": 6, "logging_steps": 2, "eval_steps": 6, "save_steps": 3,
                       "max_test": 8, "noisy_teacher_noise": 0.0, "reuse_sft": False}}}
        path = tmp_path / "keytest.yaml"
        path.write_text(yaml.safe_dump(profile))
        env = dict(os.environ, MMKP_TEST_TEACHER_KEY=key)
        proc = subprocess.run([sys.executable, "-m", "mmkp_helpers.runner", "--profile", str(path), "--only", "04",
                               "--out", str(out), "--no-progress"], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert server.requests >= 600 and server.auth_requests == server.requests  # the key was sent
    assert key not in proc.stdout and key not in proc.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".jsonl" and "teacher" in str(p) for p in files)  # the cache is among them
    assert any(p.name == "04_fine_tune_cot.ipynb" for p in files)
    leaked = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert not leaked, leaked
    m = json.loads((out / "04_fine_tune_cot" / "measurements.json").read_text())
    t = m["teacher"]  # a paid teacher: the pilot's answers are in the cache, the run sends the rest
    assert t["pilot"]["requests_sent"] + t["run"]["requests_sent"] == t["run"]["examples"] >= 600
    assert t["run"]["cost_usd"] > 0 and t["rerun"]["requests_sent"] == 0
    assert t["estimate"]["output_tokens_source"].startswith("measured")  # (the server counts words, not tokens)
