"""The seed-sweep summary that the README's original-vs-clean figures come from."""
import json
from pathlib import Path

import pytest

from mmkp_helpers.bench import sft_seeds
from mmkp_helpers.bench.sft_seeds import summarize


def _row(seed, split, step, f1m, **extra):
    return json.dumps({"setting": "N", "seed": seed, "split": split, "prompt": "direct", "step": step,
                       "F1@M": {"all": f1m}} | extra)


def test_summarize_pairs_runs_by_seed_and_step(tmp_path):
    lines = [_row(0, "original", 100, 0.5), _row(0, "clean", 100, 0.4), _row(1, "original", 100, 0.2),
             _row(1, "clean", 100, 0.6), _row(2, "original", 100, 0.9),  # no clean run: not paired
             _row(0, "original", 100, 0.5, final=True)]  # the final copy of a point is not counted twice
    path = tmp_path / "sweep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = summarize(path)
    assert list(out) == ["N@100"]
    row = out["N@100"]
    assert row["seeds"] == 2 and row["original_higher"] == 1
    assert row["gap_mean"] == round((0.1 - 0.4) / 2, 3) and row["gap_min"] == -0.4 and row["gap_max"] == 0.1
    assert row["original_mean"] == 0.35 and row["clean_mean"] == 0.5


def _kinds(account, other):
    """Per-kind statistics as composition.kind_stats writes them (P@M = R@M = the score)."""
    return {name: {"posts": n, "P@M": s, "R@M": s} for name, (n, s) in (("account", account), ("other", other))}


def test_summarize_holds_the_test_composition_fixed(tmp_path):
    # Seed 0: each kind scores the same on both splits; the clean test set only holds more account
    # posts, so the raw gap is composition alone and the controlled one is zero. Seed 1: account
    # posts score 0.3 higher on the original split (memorised tags), a real difference.
    lines = [
        _row(0, "original", 400, 0.5, kinds=_kinds((36, 0.4), (114, 0.9))),
        _row(0, "clean", 400, 0.5, kinds=_kinds((78, 0.4), (72, 0.9))),
        _row(1, "original", 400, 0.5, kinds=_kinds((36, 0.7), (114, 0.9))),
        _row(1, "clean", 400, 0.5, kinds=_kinds((78, 0.4), (72, 0.9))),
        _row(2, "original", 400, 0.5), _row(2, "clean", 400, 0.4),  # an old row without kinds
    ]
    path = tmp_path / "sweep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    row = summarize(path)["N@400"]
    assert row["seeds"] == 3 and row["composition_seeds"] == 2
    raw0 = (36 * 0.4 + 114 * 0.9) / 150 - (78 * 0.4 + 72 * 0.9) / 150
    raw1 = (36 * 0.7 + 114 * 0.9) / 150 - (78 * 0.4 + 72 * 0.9) / 150
    controlled1 = 114 / 300 * 0.3  # pooled share of account posts x their gain
    assert row["per_seed"][0] == {
        "raw": round(raw0, 4), "controlled": 0.0}
    assert row["per_seed"][1] == {"raw": round(raw1, 4), "controlled": round(controlled1, 4)}
    assert row["raw_mean"] == round((round(raw0, 4) + round(raw1, 4)) / 2, 3)
    assert row["controlled_min"] == 0.0 and row["controlled_max"] == round(controlled1, 3)
    assert row["controlled_positive"] == 1 and row["raw_positive"] == 2



ROOT = Path(__file__).resolve().parents[1]
COSINE_SWEEP = ROOT / "results" / "bench" / "sft_composition_4seeds_cosine_cpu2.jsonl"


@pytest.mark.skipif(not COSINE_SWEEP.is_file(), reason="the committed sweep")
def test_the_overlap_effect_held_on_every_seed_with_the_former_recipe():
    """docs/measured_figures.md: with notebook 03's former recipe (400 steps, the base without the
    facts task, no stranger posts) the original split scores above the clean one after 400 steps on
    4 of 4 seeds, raw and with the test composition held fixed."""
    s = summarize(COSINE_SWEEP)["V3@400"]
    assert s["seeds"] == 4 and s["raw_positive"] == 4 and s["controlled_positive"] == 4
    assert s["controlled_mean"] > s["raw_mean"] > 0


STEPS800_SWEEP = ROOT / "results" / "bench" / "sft_composition_4seeds_steps800_cpu2.jsonl"


@pytest.mark.skipif(not STEPS800_SWEEP.is_file(), reason="the committed sweep")
def test_the_overlap_effect_holds_on_every_seed_with_the_notebooks_recipe():
    """docs/measured_figures.md: with notebook 03's recipe (800 steps, stranger posts) the original
    split scores above the clean one on 4 of 4 seeds, raw and with the test composition held fixed;
    seed 0 is notebook 03's run (its two F1@M, rounded as the sweep rounds them), and the setting is
    the notebook's parameters."""
    from mmkp_helpers import experiment

    s = summarize(STEPS800_SWEEP)["V4@800"]
    assert s["seeds"] == 4 and s["raw_positive"] == 4 and s["controlled_positive"] == 4
    assert s["raw_mean"] > 0 and s["controlled_mean"] > 0
    rows = [json.loads(line) for line in STEPS800_SWEEP.read_text().splitlines() if line.strip()]
    setting = {"learning_rate": 1e-3, "lora_alpha": 256, "lr_scheduler": "cosine", "max_steps": 800, "stranger_share": 1.0}
    p3 = experiment.notebook_parameters("03_sft_qlora")
    assert all(p3[k] == v for k, v in setting.items())
    assert all(p3[k] == sft_seeds.DEFAULT[k] for k in ("warmup", "batch_size", "lora_r", "lora_dropout", "quantize_4bit"))
    seed0 = {r["split"]: r["F1@M"]["all"] for r in rows if r["seed"] == 0 and r["step"] == 800 and not r.get("final")}
    records = json.loads((ROOT / "results" / "tiny" / "03_sft_qlora" / "metrics.json").read_text())
    notebook = {"clean" if r["variant"] == "text+image" else "original": r["metrics"]["all"]["F1@M"]
                for r in records if r["variant"] in ("text+image", "original")}
    assert seed0 == {k: round(v, 4) for k, v in notebook.items()}
