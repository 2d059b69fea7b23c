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
from .paths import resolve, run_dir

MIMETYPE = "application/vnd.mmkp.record+json"
METHODS = ("zero_shot", "sft", "fine_tune_cot", "dynamic_cot")
RECORD_KEYS = ("notebook", "method", "variant", "dataset", "split", "n", "gen_tokens_mean", "metrics")


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
        write_json(folder / "metrics.json", metrics)
    if measurements is not None:
        write_json(folder / "measurements.json", measurements)
    write_json(folder / "params.json", params)
    write_json(folder / "environment.json", environment_record())
    if display:
        try:
            from IPython.display import display as ipy_display
            bundle = {"notebook": notebook, "metrics": metrics, "measurements": measurements or {}}
            ipy_display({MIMETYPE: _jsonable(bundle), "text/plain": f"recorded {len(metrics)} metric records"
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


def table(records: Iterable[dict], subset: str = "all", metrics: Iterable[str] = METRIC_NAMES):
    """A pandas table: one row per record, the chosen subset's scores as columns."""
    import pandas as pd

    rows = []
    for r in records:
        scores = r["metrics"].get(subset) or {}
        row = {k: r[k] for k in ("method", "variant", "dataset", "split", "n")}
        row.update({m: scores.get(m) for m in metrics})
        row["gen_tokens_mean"] = r.get("gen_tokens_mean")
        rows.append(row)
    return pd.DataFrame(rows)


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
    share, generated tokens and milliseconds per post. Rows in method order."""
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
