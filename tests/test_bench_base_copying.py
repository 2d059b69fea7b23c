"""The tiny base's copying, in float32 and NF4 (mmkp_helpers.bench.base_copying)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkp_helpers.bench import base_copying

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "bench" / "base_copying_cpu2.json"


def test_a_colour_list_follows_its_own_description_right_or_wrong():
    assert base_copying.follows_itself("a red square on the left and a red circle on the right, on a grey "
                                       "background. colours: red, grey.")
    assert base_copying.follows_itself("a blue circle in the centre, on a dark blue background. colours: blue, dark blue.")
    assert not base_copying.follows_itself("a red square, on a dark green background. colours: red, green.")
    assert not base_copying.follows_itself("a red square, on a grey background.")  # no list


def test_a_small_run_counts_every_turn(tiny_model_dir, monkeypatch):
    from mmkp_helpers import modeling

    monkeypatch.setattr(modeling, "resolve_model", lambda name, seed=0: str(tiny_model_dir))
    out = base_copying.measure(posts=40, seed=7, max_new_tokens=2, show=1, max_turns=6)
    assert out["turns"] == 6
    for name in ("float32", "nf4"):
        tasks = out[name]["tasks"]
        assert set(tasks) == {"repeat", "list"} and sum(t["turns"] for t in tasks.values()) == 6
        assert all(0 <= t["exact"] <= t["turns"] for t in tasks.values()) and len(out[name]["mismatches"]) <= 1


@pytest.mark.skipif(not COMMITTED.is_file(), reason="the committed measurement")
def test_what_the_committed_measurement_supports():
    """docs/measured_figures.md: NF4 costs the base at most one turn in a hundred on either task, and
    the base's colour list follows its own description at least 95% of the time, in both loadings
    (a base that copies what it wrote: the inconsistent answers come with fine-tuning)."""
    d = json.loads(COMMITTED.read_text())
    for task in ("repeat", "list"):
        assert abs(d["float32"]["tasks"][task]["exact"] - d["nf4"]["tasks"][task]["exact"]) <= 1
    assert min(d[n]["tasks"]["list"]["follows_itself_share"] for n in ("float32", "nf4")) >= 0.95
