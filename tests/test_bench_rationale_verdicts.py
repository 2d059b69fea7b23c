"""The sweep's student judged per generation (bench.rationale_verdicts): what it needs, how it
summarises, and what the committed run over the sweep's seeds supports."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmkp_helpers import reading
from mmkp_helpers.bench import rationale_verdicts as rv

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench" / "rationale_verdicts_cpu2.json"


def test_missing_runs_name_the_sweep_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench.cot_seeds --seeds 2 --methods sft fine_tune_cot"):
        rv.run_seed(2, str(tmp_path), "default", str(tmp_path))


def test_verdict_counts_group_the_rows_and_summarize_lists_them_per_seed(tmp_path):
    rows = [{"needs": n, "verdict": v} for n, v in [("text", "ignores a changed reading"), ("image", "not well-formed"),
                                                    ("composition", "ignores a changed reading"), ("image", "no rationale")]]
    counts = reading.verdict_counts(rows)
    assert set(counts) == {"all", "shaped", "needs:text", "needs:image", "needs:composition"}
    assert counts["shaped"]["posts"] == 3 and counts["shaped"]["ignores a changed reading"] == 1
    assert counts["needs:image"] == {"posts": 2, **dict.fromkeys(reading.VERDICTS, 0), "not well-formed": 1,
                                     "no rationale": 1}
    assert all(c["posts"] == sum(c[v] for v in reading.VERDICTS) for c in counts.values())
    other = reading.verdict_counts(rows[:2])
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"runs": {"default": [{"seed": 0, "counts": counts}, {"seed": 1, "counts": other}]}}))
    s = rv.summarize(path)["default"]
    assert s["seeds"] == 2 and "needs:composition" not in s  # only the groups every seed has
    assert s["shaped"]["posts"] == [3, 1] and s["all"]["not well-formed"] == [1, 1]


def test_what_the_committed_verdicts_support():
    """On every seed of the sweep, no Fine-tune-CoT generation on a post with a picture both reads
    the post truly and gives an answer that follows a changed reading: by these records the
    student does not reason from what it writes. Most of them misread the post, and every one
    that reads it truly ignores a changed reading. On the text posts, with the topic the text
    names changed in the prefill, the answer keeps the text's topic on all but at most one post
    of those read truly, on every seed: it copies the post, not what it wrote."""
    report = json.loads(RESULTS.read_text())
    rows = report["runs"]["default"]
    assert sorted(r["seed"] for r in rows) == [0, 1, 2, 3]
    for r in rows:
        shaped = r["counts"]["shaped"]
        assert shaped["posts"] == 328 == sum(shaped[v] for v in reading.VERDICTS)
        assert shaped["follows a changed reading"] == 0 and shaped["reads truly, nothing changed"] == 0
        assert shaped["reads the post wrongly"] > shaped["posts"] / 2 and shaped["ignores a changed reading"] > 0
        text = r["counts"]["needs:text"]
        assert text["posts"] == 212 == sum(text[v] for v in reading.VERDICTS) and text["reads truly, nothing changed"] == 0
        assert text["follows a changed reading"] <= 1 and text["ignores a changed reading"] > text["posts"] / 2
        assert set(r["examples"]) <= set(reading.VERDICTS) and "follows a changed reading" not in r["examples"]
        shown = {c["needs"] for c in r["continued"]}
        assert shown == {"text", "image", "composition"} and all(c["raw"] and c["implies"] for c in r["continued"])
    s = rv.summarize(RESULTS)["default"]
    assert s["seeds"] == 4 and max(s["shaped"]["follows a changed reading"]) == 0
    assert max(s["needs:text"]["follows a changed reading"]) == 1
    for group, f in s["follows"].items():  # whatever the reading check says, the answer does not follow
        assert max(f["follows"]) <= 1 and min(f["well_formed"]) >= 0.9 * f["posts"][0], group


def test_on_the_combine_benchmark_the_answer_follows_the_rationale_on_the_combine_posts():
    """The same recipe swept on the combine benchmark (a text primary and a shape's colour mixed by a
    rule): prefilled with a changed reading, the answer follows it on at least 60% of the combine posts
    on every seed (and on at least 40% of those whose own generation reads the post truly), against
    at most 1 post of any kind on the default benchmark; on the composition posts it follows on 5-25%
    and on the image and text posts on at most 10%. Most combine generations still fail the reading
    check, so the first-failure verdict alone would hide it."""
    s = rv.summarize(RESULTS)["default_combine_green"]
    f = s["follows"]
    assert s["seeds"] == 4 and f["needs:combine"]["posts"] == [69] * 4
    for seed in range(4):
        combine = s["needs:combine"]
        assert f["needs:combine"]["follows"][seed] >= 0.6 * 69
        assert f["needs:combine"]["well_formed_follows"][seed] <= f["needs:combine"]["follows"][seed]
        truly = combine["ignores a changed reading"][seed] + combine["follows a changed reading"][seed]
        assert combine["follows a changed reading"][seed] >= 0.4 * truly and combine["reads the post wrongly"][seed] > 69 / 2
        assert 0.05 * 218 <= f["needs:composition"]["follows"][seed] <= 0.25 * 218
        assert f["needs:image"]["follows"][seed] <= 0.1 * 93 and f["needs:text"]["follows"][seed] <= 0.1 * 160
    default = rv.summarize(RESULTS)["default"]["follows"]
    assert max(max(g["follows"]) for g in default.values()) <= 1


def test_a_tags_runs_replace_its_earlier_ones_and_keep_the_others(tmp_path):
    """bench.save_tag_runs (rationale_verdicts and rationale_intervention write through it)."""
    from mmkp_helpers.bench import adapter_probe_parser, save_tag_runs

    out = tmp_path / "report.json"
    save_tag_runs(str(out), "rationale_verdicts", "a", [{"seed": 0}], 2)
    save_tag_runs(str(out), "rationale_verdicts", "b", [{"seed": 0}, {"seed": 1}], 1)
    save_tag_runs(str(out), "rationale_verdicts", "a", [{"seed": 3}], 2)
    report = json.loads(out.read_text())
    assert report == {"bench": "rationale_verdicts", "runs": {"a": [{"seed": 3, "threads": 2}],
                                                              "b": [{"seed": 0, "threads": 1}, {"seed": 1, "threads": 1}]}}
    args = adapter_probe_parser("x", "y", lambda p: p.add_argument("--style")).parse_args(["--seeds", "1", "--style", "s"])
    assert (args.seeds, args.tag, args.style, args.work, args.out) == ([1], "default", "s", ".cache/cot_seeds", "")
