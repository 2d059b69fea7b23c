"""The seed-sweep summary that the README's original-vs-clean figures come from."""
import json

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
