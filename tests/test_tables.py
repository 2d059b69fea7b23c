"""The score table and the grouped-bar figure every notebook uses, and the figure checks."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mmkp_helpers import results  # noqa: E402
from mmkp_helpers.data import Example  # noqa: E402
from mmkp_helpers.metrics import score_examples  # noqa: E402
from mmkp_helpers.paths import resolve  # noqa: E402


def _examples():
    """Five posts; two carry an account's tags (the ``tag`` subset has 2 posts, 4 keyphrases)."""
    out = []
    for i in range(5):
        kinds = {"car": "present", "red car": "text+image"} | ({"travel": "tag", "deal": "tag"} if i < 2 else {})
        out.append(Example(id=f"p{i}", text=f"a new car {i}", keyphrases=list(kinds), meta={"kinds": kinds}))
    return out


def _record(variant, predict, split="clean", method="sft"):
    exs = _examples()
    scores = score_examples([predict(ex) for ex in exs], exs, train_keyphrases=["car", "red car", "travel", "deal"])
    return results.metric_record("03_sft_qlora", method, variant, "synthetic", split, len(exs), 4.0, scores)


@pytest.fixture()
def records():
    return [_record("text+image", lambda ex: ex.keyphrases[:2]),
            _record("original", lambda ex: ex.keyphrases, split="original"),
            _record("direct", lambda ex: ["bike"], method="zero_shot")]


def test_posts_and_keyphrases_are_those_of_the_subset(records):
    df = results.score_table(records, ["all", "tag"])
    tag = df[df["subset"] == "tag"]
    assert list(tag["posts"]) == [2, 2, 2] and list(tag["keyphrases"]) == [4, 4, 4]
    everything = df[df["subset"] == "all"]
    assert list(everything["posts"]) == [5, 5, 5] and list(everything["keyphrases"]) == [14, 14, 14]
    assert records[0]["n"] == 5  # the record-level count, which the table no longer repeats
    assert tag["F1@M"].tolist() == [0.0, 1.0, 0.0]  # a real zero stays a number


def test_an_empty_subset_reads_na_not_zero(records):
    assert records[0]["metrics"]["unseen"]["n"] == 0  # every keyphrase was seen in training
    row = results.score_table(records, "unseen").iloc[0]
    assert row["posts"] == 0
    assert all(row[m] == results.NA for m in ("F1@1", "F1@5", "F1@M", "MAP@5"))
    missing = results.score_table(records, "image").iloc[0]  # no such subset in the record
    assert missing["posts"] == results.NA and missing["F1@M"] == results.NA
    # the older entry point keeps its columns usable by notebook cells (drop, set_index, round)
    legacy = results.table(records, "unseen").drop(columns=["method", "dataset"]).set_index("variant").round(4)
    assert legacy.loc["text+image", "F1@M"] == results.NA


def test_glossary_exists_and_defines_what_the_tables_show():
    path = resolve(results.METRICS_GLOSSARY)
    text = path.read_text()
    for term in ("present", "absent", "unseen", "kind", "F1@5", "F1@M", "MAP@5", "min(k", "macro"):
        assert term in text, term
    link = results.glossary_link()
    assert "(../docs/metrics.md)" in link
    assert (resolve("notebooks") / "../docs/metrics.md").resolve() == path.resolve()


def test_bars_drop_empty_series_and_groups_and_pass_the_checks(records):
    empty = _record("image_only", lambda ex: [], method="zero_shot")
    for subset in empty["metrics"].values():
        if isinstance(subset, dict):
            subset["n"] = 0  # a run with no scored post at all: an all-empty series
    fig = results.score_bars(records + [empty], "F1@M",
                             subsets=["all", "present", "absent", "unseen", "tag", "text+image"])
    ax = fig.axes[0]
    labels = [t.get_text().replace("\n", "") for t in ax.get_xticklabels()]
    assert "unseen" not in labels  # empty in every series
    assert labels == ["all", "present", "absent", "tag", "text+image"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["sft: text+image", "sft: original", "zero_shot: direct"]
    assert ax.get_ylim() == (0.0, 1.0)  # scores on 0..1, even where they are all near zero
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # right of the axes
    assert results.figure_problems(fig) == []  # the zero-shot run's real zeros are not "empty"
    assert any(t.get_text() == "0" for t in ax.texts)  # a real 0 is written where no bar shows
    plt.close(fig)


def test_many_long_subset_names_do_not_overlap():
    subsets = [f"unseen:text+image kind {i}" for i in range(12)]
    metrics = {s: {"n": 3, "F1@M": 0.1 * (i % 10)} for i, s in enumerate(subsets)} | {"all": {"n": 3, "F1@M": 0.5}}
    recs = [{"method": "sft", "variant": f"v{j}", "split": "clean", "metrics": metrics} for j in range(4)]
    fig = results.score_bars(recs, subsets=subsets)
    assert results.figure_problems(fig) == []
    plt.close(fig)


def test_figure_problems_finds_overlaps_empty_series_covered_bars_and_magnified_axes():
    import pandas as pd

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(8), [0.1] * 8)
    ax.set_xticks(range(8))
    ax.set_xticklabels([f"a long subset name {i}" for i in range(8)])
    assert any("overlapping x tick label" in p for p in results.figure_problems(fig))
    ax.set_xticklabels([f"a long subset name {i}" for i in range(8)], rotation=90)
    assert results.figure_problems(fig) == []  # vertical labels 0.3 inch apart fit
    plt.close(fig)

    df = pd.DataFrame({"sft": [0.5, 0.7], "empty run": [math.nan, math.nan]}, index=["all", "tag"])
    ax = df.plot.bar(rot=0)
    ax.set_ylabel("F1@M")
    problems = results.figure_problems(ax.figure)
    assert any("'empty run' has no bar" in p for p in problems)
    plt.close(ax.figure)

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1], [0.9, 0.95], label="a")
    ax.bar([0.4, 1.4], [0.9, 0.95], label="b")
    ax.legend(loc="center")
    assert any("legend covers bars" in p for p in results.figure_problems(fig))
    plt.close(fig)

    fig, ax = plt.subplots()
    ax.bar([0, 1], [0.002, 0.007])
    ax.set_ylabel("F1@M")
    ax.set_ylim(0, 0.0075)
    assert any("magnified" in p for p in results.figure_problems(fig))
    plt.close(fig)
