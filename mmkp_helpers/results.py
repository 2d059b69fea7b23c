"""Writing what a run produced (metrics, measurements, parameters, environment, figures) under
``results/<profile>/<notebook>/`` and reading it back.

Every notebook ends with :func:`record_run`. It writes JSON files atomically and also displays
the metrics as a JSON bundle (mimetype :data:`MIMETYPE`) so tests can read them either from the
folder or from the executed notebook (recommenders' ``store_metadata`` idea, without scrapbook).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .metrics import METRIC_NAMES
from .paths import project_root, resolve, run_dir

MIMETYPE = "application/vnd.mmkp.record+json"
METHODS = ("zero_shot", "sft", "fine_tune_cot", "dynamic_cot")
RECORD_KEYS = ("notebook", "method", "variant", "dataset", "split", "n", "gen_tokens_mean", "metrics")


def _shareable(text: str) -> str:
    """A path inside the project (or beside it) as a project-relative one: records, measurements
    and environments read the same on every machine (``results/tiny/...``, ``.venv/...``)."""
    root = str(project_root())
    for base, prefix in ((root + "/", ""), (str(Path(root).parent) + "/", "../")):
        if text.startswith(base) and len(base) > 1:
            return prefix + text[len(base):]
    return text


def _shareable_tree(value: Any) -> Any:
    """:func:`_jsonable`, with every absolute path inside the project made project-relative (for
    the files of :func:`record_run`, which readers and other machines see)."""
    value = _jsonable(value)
    if isinstance(value, dict):
        return {k: _shareable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shareable_tree(v) for v in value]
    return _shareable(value) if isinstance(value, str) and value.startswith("/") else value


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars become floats/ints, paths strings, NaN stays NaN-free."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def metric_record(notebook: str, method: str, variant: str, dataset: str, split: str, n: int,
                  gen_tokens_mean: float | None, metrics: dict, **extra) -> dict:
    """One evaluation result in the project's record format (see README, "Results").

    ``metrics`` maps subset (all / present / absent / unseen / ...) to the scores that
    ``mmkp-score --json`` prints for it."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
    if "all" not in metrics:
        raise ValueError("metrics must hold at least the 'all' subset")
    for subset, scores in metrics.items():
        if not isinstance(scores, dict):
            continue
        missing = [m for m in METRIC_NAMES if m not in scores]
        if missing:
            raise ValueError(f"subset {subset!r} lacks {missing}")
    if dataset == "cmkp":  # never plain "cmkp" unless the authors' training split was there
        from .cmkp import dataset_label

        dataset = dataset_label()
    record = {"notebook": notebook, "method": method, "variant": variant, "dataset": dataset, "split": split,
              "n": int(n), "gen_tokens_mean": None if gen_tokens_mean is None else float(gen_tokens_mean),
              "metrics": metrics}
    record.update(extra)
    return _jsonable(record)


def save_figure(fig, results_dir: str | os.PathLike, notebook: str, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``results/<profile>/<notebook>/<name>.png`` and return the path."""
    path = run_dir(results_dir, notebook) / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def record_run(results_dir: str | os.PathLike, notebook: str, params: dict, metrics: Iterable[dict] = (),
               measurements: dict | None = None, display: bool = True) -> Path:
    """Write the run's records under ``results/<profile>/<notebook>/``:

    - ``metrics.json``: the list of :func:`metric_record` records (when there are any);
    - ``measurements.json``: other figures of the run (memory, timings, counts);
    - ``params.json``: the parameters the notebook ran with;
    - ``environment.json``: versions and device.
    Returns the folder. Also displays everything as one JSON bundle for readers of the notebook."""
    from .modeling import environment_record

    folder = run_dir(results_dir, notebook)
    metrics = [dict(m) for m in metrics]
    for m in metrics:
        missing = [k for k in RECORD_KEYS if k not in m]
        if missing:
            raise ValueError(f"metric record lacks {missing}: build it with metric_record()")
    if metrics:
        write_json(folder / "metrics.json", _shareable_tree(metrics))
    if measurements is not None:
        write_json(folder / "measurements.json", _shareable_tree(measurements))
    write_json(folder / "params.json", _shareable_tree(params))
    write_json(folder / "environment.json", _shareable_tree(environment_record()))
    if display:
        try:
            from IPython.display import display as ipy_display
            bundle = {"notebook": notebook, "metrics": metrics, "measurements": measurements or {}}
            ipy_display({MIMETYPE: _shareable_tree(bundle), "text/plain": f"recorded {len(metrics)} metric records"
                         f"{' and ' + str(len(measurements)) + ' measurements' if measurements else ''} in {folder}"},
                        raw=True)
        except ImportError:
            pass
    return folder


def read_metrics(results_dir: str | os.PathLike, notebook: str | None = None) -> list[dict]:
    """All metric records of a run folder (one notebook's, or every notebook's)."""
    base = resolve(results_dir)  # a relative folder is relative to the project root, as everywhere
    files = [base / notebook / "metrics.json"] if notebook else sorted(base.glob("*/metrics.json"))
    records: list[dict] = []
    for f in files:
        if f.exists():
            records.extend(read_json(f))
    return records


def read_notebook_records(path: str | os.PathLike) -> list[dict]:
    """The bundles that :func:`record_run` displayed in an executed notebook."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIMETYPE in data:
                out.append(data[MIMETYPE])
    return out


# --------------------------------------------------------------------------------------------
# Score tables and figures (every notebook)
# --------------------------------------------------------------------------------------------
METRICS_GLOSSARY = "docs/metrics.md"  # the metric definitions, relative to the project root
NA = "n/a"


def glossary_link(relative_to: str = "notebooks") -> str:
    """A markdown line linking :data:`METRICS_GLOSSARY`, relative to ``relative_to`` (a folder
    of the project; notebooks run in ``notebooks/``). Display it before a notebook's first table."""
    target = os.path.relpath(resolve(METRICS_GLOSSARY), resolve(relative_to))
    return (f"Metric definitions (subsets; F1@k with CMKP's P@k rule, so F1@5 = F1@M for a model that "
            f"predicts at most five keyphrases; MAP@5): [{METRICS_GLOSSARY}]({target})")


def subset_scores(record: dict, subset: str) -> dict | None:
    """A record's scores on ``subset``, or None when the subset is missing or has no post
    (the evaluator scores an empty subset 0.0; a table must say n/a)."""
    scores = record["metrics"].get(subset)
    if not isinstance(scores, dict) or scores.get("n", 1) == 0:
        return None
    return scores


def run_label(record: dict) -> str:
    """``method: variant`` (and the split when it is neither the clean one nor the variant's name)."""
    split = record.get("split")
    shown = split and split != "clean" and split != record["variant"]
    return f"{record['method']}: {record['variant']}" + (f" ({split})" if shown else "")


def score_table(records: Iterable[dict], subsets: str | Iterable[str] = "all", metrics: Iterable[str] = METRIC_NAMES,
                keys: Iterable[str] = ("method", "variant", "dataset", "split"), digits: int | None = 4):
    """A pandas table of scores: one row per record (and per subset when several are asked).

    ``posts`` and ``keyphrases`` are the counts *in that subset* (posts with at least one target
    of the subset, and their targets; e.g. 77 of 150 posts for ``tag`` on the clean split),
    not the record's post count. An empty or missing subset shows ``n/a`` in every score column
    (never 0.0). Scores rounded to ``digits`` (None: unrounded). Subsets default to ``all``;
    pass ``None`` for every subset of the first record."""
    import pandas as pd

    records = list(records)
    many = subsets is None or not isinstance(subsets, str)
    if subsets is None:
        subsets = [s for s, v in (records[0]["metrics"] if records else {}).items() if isinstance(v, dict)]
    subsets = [subsets] if isinstance(subsets, str) else list(subsets)
    metrics = list(metrics)
    rows = []
    for r in records:
        for subset in subsets:
            row = {k: r.get(k) for k in keys}
            if many:
                row["subset"] = subset
            raw = r["metrics"].get(subset)
            scores = subset_scores(r, subset)
            row["posts"] = raw.get("n") if isinstance(raw, dict) else NA
            row["keyphrases"] = raw.get("n_targets") if isinstance(raw, dict) else NA
            for m in metrics:
                v = None if scores is None else scores.get(m)
                row[m] = NA if v is None else (round(float(v), digits) if digits is not None else float(v))
            row["tokens / post"] = r.get("gen_tokens_mean")
            rows.append(row)
    return pd.DataFrame(rows)


def table(records: Iterable[dict], subset: str = "all", metrics: Iterable[str] = METRIC_NAMES):
    """:func:`score_table` for one subset, unrounded (kept for older notebook cells)."""
    return score_table(records, subset, metrics, digits=None)


def show_table(records: Iterable[dict], subsets: str | Iterable[str] = "all", title: str | None = None,
               glossary: bool = False, drop: Iterable[str] = ("dataset",), **kwargs):
    """Display :func:`score_table` in a notebook (with :func:`glossary_link` above it when
    ``glossary``: pass True for the notebook's first table) and return it."""
    from IPython.display import Markdown, display

    df = score_table(records, subsets, **kwargs).drop(columns=[c for c in drop], errors="ignore")
    if glossary:
        display(Markdown(glossary_link()))
    if title:
        display(Markdown(f"**{title}**"))
    display(df)
    return df


SCORE_PREFIXES = ("F1@", "P@", "R@", "MAP@")


def score_bars(records: Iterable[dict], metric: str = "F1@M", subsets: Iterable[str] | None = None,
               label=run_label, title: str | None = None, ax=None, wrap: int = 12):
    """Grouped bars of ``metric``: one group per subset, one bar per record (series).

    A series whose every subset is empty and a subset empty in every series are left out; an
    empty subset of one series gets no bar (a small "n/a" at its place). The legend sits right of
    the axes, outside the bars; scores use a 0..1 y-axis (never a magnified 0..0.007 one); the
    subset names are wrapped at ``wrap`` characters and the figure widens with the groups so
    that no two tick labels overlap (:func:`figure_problems` checks). Returns the figure."""
    import textwrap

    import matplotlib.pyplot as plt

    records = list(records)
    if subsets is None:
        subsets = list(dict.fromkeys(s for r in records for s, v in r["metrics"].items() if isinstance(v, dict)))
    values = {label(r): [None if subset_scores(r, s) is None else subset_scores(r, s).get(metric) for s in subsets]
              for r in records}
    values = {k: v for k, v in values.items() if any(x is not None for x in v)}      # all-empty series
    keep = [i for i, _ in enumerate(subsets) if any(v[i] is not None for v in values.values())]
    groups = [subsets[i] for i in keep]                                              # empty groups
    values = {k: [v[i] for i in keep] for k, v in values.items()}
    n_series = max(1, len(values))
    if ax is None:
        width = min(16.0, max(5.0, 1.0 + len(groups) * (0.35 + 0.22 * n_series)))
        fig, ax = plt.subplots(figsize=(width, 3.4))
    fig = ax.figure
    bar = 0.8 / n_series
    for j, (name, ys) in enumerate(values.items()):
        xs = [i - 0.4 + bar * (j + 0.5) for i in range(len(groups))]
        heights = [float("nan") if y is None else y for y in ys]
        container = ax.bar(xs, heights, width=bar, label=name)
        container.mmkp_values = list(ys)  # figure_problems tells a real 0 from an empty subset by this
        for x, y in zip(xs, ys):
            if y is None or y == 0:  # no bar to see: say why
                ax.text(x, 0.01, NA if y is None else "0", rotation=90, ha="center", va="bottom", fontsize=6,
                        color="0.5")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([textwrap.fill(g, wrap) for g in groups], fontsize=8)
    finite = [y for ys in values.values() for y in ys if y is not None]
    if metric.startswith(SCORE_PREFIXES):
        ax.set_ylim(0, 1)
    elif finite:
        ax.set_ylim(min(0.0, min(finite)), max(finite) * 1.1 or 1.0)
    ax.set_ylabel(metric)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    if title:
        ax.set_title(title, fontsize=9)
    if values:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _overlap(a, b, tol: float = 1.0) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _label_boxes(texts, renderer) -> list[tuple]:
    """Per visible, non-empty text: (centre x, centre y, width, height, angle) of its rotated box."""
    out = []
    for t in texts:
        if not t.get_visible() or not t.get_text().strip():
            continue
        box = t.get_window_extent(renderer)
        angle = t.get_rotation()
        t.set_rotation(0)
        flat = t.get_window_extent(renderer)
        t.set_rotation(angle)
        out.append(((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, flat.width, flat.height, math.radians(angle)))
    return out


def _boxes_overlap(a: tuple, b: tuple, tol: float = 1.0) -> bool:
    """Two rotated text boxes overlap (exact for parallel boxes: separating axes along and across
    the text; boxes of different angles compared by their axis-aligned extents)."""
    (xa, ya, wa, ha, ta), (xb, yb, wb, hb, tb) = a, b
    dx, dy = xb - xa, yb - ya
    if abs(ta - tb) > 1e-6:
        ext = [(abs(w * math.cos(t)) + abs(h * math.sin(t)), abs(w * math.sin(t)) + abs(h * math.cos(t)))
               for w, h, t in ((wa, ha, ta), (wb, hb, tb))]
        return (ext[0][0] + ext[1][0]) / 2 - abs(dx) > tol and (ext[0][1] + ext[1][1]) / 2 - abs(dy) > tol
    along = abs(dx * math.cos(ta) + dy * math.sin(ta))
    across = abs(-dx * math.sin(ta) + dy * math.cos(ta))
    return (wa + wb) / 2 - along > tol and (ha + hb) / 2 - across > tol


def figure_problems(fig) -> list[str]:
    """What makes a figure hard to read, one sentence each (empty when none): overlapping tick
    labels, a bar series with no bar to see (every value empty; for bars not drawn by
    :func:`score_bars`, also all 0, as pandas draws empty values) or a line with no finite value
    (an empty entry in the legend), a legend
    drawn over bars, and a y-axis of scores magnified to less than 0..0.05."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for k, ax in enumerate(fig.axes):
        where = f"axes {k}" + (f" ({ax.get_title()})" if ax.get_title() else "")
        for axis, texts in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            boxes = _label_boxes(texts, renderer)
            pairs = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                     if _boxes_overlap(boxes[i], boxes[j])]
            if pairs:
                names = [t.get_text() for t in texts if t.get_visible() and t.get_text().strip()]
                i, j = pairs[0]
                problems.append(f"{where}: {len(pairs)} overlapping {axis} tick label pair(s), "
                                f"e.g. {names[i]!r} and {names[j]!r}")
        bars = []
        for container in ax.containers:
            name = container.get_label()
            known = getattr(container, "mmkp_values", None)  # set by score_bars: None marks an empty subset
            if known is not None:
                empty = all(v is None for v in known)
            else:  # pandas draws NaN as a 0-high bar: a series with no visible bar may be all empty
                empty = not any(math.isfinite(p.get_height()) and p.get_height() != 0 for p in container.patches)
            if empty:
                problems.append(f"{where}: series {name!r} has no bar (every value empty, or 0 where pandas "
                                "filled empty values): leave it out or say so")
            bars += [p for p in container.patches if math.isfinite(p.get_height()) and p.get_height() != 0]
        for line in ax.get_lines():
            y = [float(v) for v in line.get_ydata()] if len(line.get_ydata()) else []
            if not line.get_label().startswith("_") and not any(math.isfinite(v) for v in y):
                problems.append(f"{where}: line {line.get_label()!r} has no finite value")
        legend = ax.get_legend()
        if legend is not None and bars:
            lbox = legend.get_window_extent(renderer)
            if any(_overlap(lbox, p.get_window_extent(renderer)) for p in bars):
                problems.append(f"{where}: the legend covers bars")
        top = ax.get_ylim()[1]
        if ax.containers and ax.get_ylabel().startswith(SCORE_PREFIXES) and 0 < top < 0.05:
            problems.append(f"{where}: the score axis tops at {top:.3g}: near-zero scores are magnified")
    return problems


# --------------------------------------------------------------------------------------------
# The paper-style summary (notebook 06)
# --------------------------------------------------------------------------------------------
SUMMARY_SUBSETS = ("all", "present", "absent", "unseen", "text+image", "unseen:text+image")
SUMMARY_METRICS = ("F1@1", "F1@3", "F1@5", "F1@M", "MAP@5")
METHOD_ORDER = {m: i for i, m in enumerate(METHODS)}


def summary_rows(records: Iterable[dict], subsets: Iterable[str] = SUMMARY_SUBSETS,
                 metrics: Iterable[str] = SUMMARY_METRICS) -> list[dict]:
    """One row per record (method, variant, notebook, split), the chosen subsets' scores as
    ``"<subset> <metric>"`` columns (None where the record has no such subset), then the think
    share, the well-formed share of its rationales (None without any), generated tokens and
    milliseconds per post. Rows in method order."""
    subsets, metrics = list(subsets), list(metrics)
    rows = []
    for r in sorted(records, key=lambda r: (METHOD_ORDER.get(r["method"], 99), r["notebook"], r["variant"])):
        row = {"method": r["method"], "variant": r["variant"], "notebook": r["notebook"], "split": r["split"],
               "posts": r["n"]}
        for s in subsets:
            scores = r["metrics"].get(s)
            for m in metrics:
                row[f"{s} {m}"] = None if not scores or not scores.get("n") else scores.get(m)
        row["think share"] = r.get("think_share")
        row["well-formed"] = r.get("well_formed_share")
        row["tokens / post"] = r.get("gen_tokens_mean")
        sec = r.get("seconds_per_post")
        row["ms / post"] = None if sec is None else 1000 * sec
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    """A GitHub markdown table of ``rows`` (missing or None values print as n/a)."""
    columns = columns or (list(rows[0]) if rows else [])

    def cell(v):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "n/a"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_summary(results_dir: str | os.PathLike, rows: list[dict], title: str, notes: Iterable[str] = (),
                  columns: list[str] | None = None) -> Path:
    """``<results_dir>/summary.md``: a title, the table of ``rows`` and notes."""
    path = run_dir(results_dir) / "summary.md"
    text = [f"# {title}", "", markdown_table(rows, columns), ""]
    text += [f"- {n}" for n in notes]
    path.write_text("\n".join(text).rstrip() + "\n")
    return path
