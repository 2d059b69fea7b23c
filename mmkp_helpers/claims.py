"""Summary claims computed from a run's records, and the checks that keep the prose honest.

A notebook's Summary states no number and no comparison in its markdown (:func:`prose_claims` finds
any). Each number or comparison is a *claim* built here from the run's records (``metrics.json``) or
measurements (``measurements.json``), shown as a bullet and stored in the measurements under
``summary_claims``. :func:`check` recomputes every stored claim from the files and reports each one
whose numbers or stated relation disagree, so a sentence such as "the rule-following keyphrases
score about the same on both splits" can only appear when the records say so::

    from mmkp_helpers import claims
    summary = [
        claims.compare(records, "Overlap: the original split {a:.3f} F1@M vs the clean split {b:.3f}, "
                       "{relation} ({diff:+.3f}).", a=dict(method="sft", variant="original"),
                       b=dict(method="sft", variant="text+image")),
        claims.value(measurements, "lsh.recall", "LSH finds {value:.1%} of the exhaustive search's pairs."),
    ]
    claims.show(summary)
    measurements["summary_claims"] = summary
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

import nbformat

TOLERANCE = 0.02  # two scores closer than this are "about the same"
RELATIONS = ("higher", "lower", "about the same")
_NUMBER_OR_COMPARISON = re.compile(
    r"(?<![\w`./-])\d[\d,.]*%?(?![\w`-])|\babout the same\b|\bhigher\b|\blower\b|\bbetter\b|\bworse\b|\bbeats?\b|"
    r"\bmore\b|\bless\b|\bfewer\b|\bfold\b|\btimes the\b|\boutperform", re.I)


class ClaimError(ValueError):
    pass


def find(records: Iterable[dict], where: dict) -> dict:
    """The one record whose fields equal ``where`` (``subset``/``metric`` keys are ignored here)."""
    keys = {k: v for k, v in where.items() if k not in ("subset", "metric")}
    hits = [r for r in records if all(r.get(k) == v for k, v in keys.items())]
    if len(hits) != 1:
        raise ClaimError(f"{len(hits)} records match {keys}, need exactly one")
    return hits[0]


def score(records: Iterable[dict], where: dict) -> float | None:
    """``where``'s metric (default F1@M) on its subset (default all); None for an empty subset."""
    rec = find(records, where)
    subset = rec["metrics"].get(where.get("subset", "all"))
    if not subset or not subset.get("n"):
        return None
    return subset[where.get("metric", "F1@M")]


def relation(a: float, b: float, tol: float = TOLERANCE) -> str:
    return "about the same" if abs(a - b) < tol else ("higher" if a > b else "lower")


def compare(records: list[dict], template: str, a: dict, b: dict, tol: float = TOLERANCE) -> dict:
    """A comparison claim: ``template`` may use {a}, {b}, {diff} (a - b) and {relation} (of a to b:
    higher / lower / about the same within ``tol``). Empty subsets give an "n/a" claim."""
    va, vb = score(records, a), score(records, b)
    claim = {"kind": "compare", "template": template, "a": dict(a), "b": dict(b), "tol": tol}
    if va is None or vb is None:
        claim.update(values=None, relation=None, text=f"n/a (an empty subset): {template.split(':')[0]}")
        return claim
    rel = relation(va, vb, tol)
    claim.update(values={"a": va, "b": vb, "diff": va - vb}, relation=rel,
                 text=template.format(a=va, b=vb, diff=va - vb, relation=rel))
    return claim


def _path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def value(measurements: dict, path: str, template: str) -> dict:
    """A claim about one measured value (``path`` is dotted into the measurements)."""
    v = _path(measurements, path)
    return {"kind": "value", "template": template, "path": path, "values": {"value": v}, "relation": None,
            "text": template.format(value=v)}


def check(claims: Iterable[dict], records: list[dict], measurements: dict) -> list[str]:
    """Every stored claim recomputed from ``records`` and ``measurements``; the disagreements."""
    problems = []
    for c in claims:
        try:
            fresh = (compare(records, c["template"], c["a"], c["b"], c.get("tol", TOLERANCE)) if c["kind"] == "compare"
                     else value(measurements, c["path"], c["template"]))
        except (ClaimError, KeyError, IndexError, TypeError) as err:
            problems.append(f"{c.get('text', c)!r}: cannot be recomputed ({err})")
            continue
        if fresh["text"] != c["text"] or fresh["relation"] != c.get("relation"):
            problems.append(f"stated {c['text']!r}, the records give {fresh['text']!r}")
        elif c["kind"] == "compare" and fresh["values"] and c["relation"] not in c["text"] and "{relation}" in c["template"]:
            problems.append(f"{c['text']!r} does not state its relation")
        vals = (fresh.get("values") or {}).values()
        if any(isinstance(v, float) and math.isnan(v) for v in vals):
            problems.append(f"{c['text']!r}: NaN")
    return problems


def show(claims: Iterable[dict]) -> None:
    """Display the claims as a markdown bullet list (in a notebook), else print them."""
    text = "\n".join(f"- {c['text']}" for c in claims)
    try:
        from IPython.display import Markdown, display
        display(Markdown(text))
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        print(text)


def summary_markdown(path: str | Path) -> list[str]:
    """The markdown lines of a notebook's ``## Summary`` section (up to the next ``##``)."""
    nb = nbformat.read(str(path), as_version=4)
    lines, inside = [], False
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else []:
            if line.startswith("## "):
                inside = line.strip() == "## Summary"
                continue
            if inside:
                lines.append(line)
    return lines


def prose_claims(path: str | Path) -> list[str]:
    """Summary lines that state a number or a comparison in prose (they belong in computed claims).
    Inline code, notebook numbers ("notebook 03") and section references are not counted."""
    found = []
    for line in summary_markdown(path):
        bare = re.sub(r"`[^`]*`", "", line)
        bare = re.sub(r"\b(notebooks?|sections?|§)\s+[\d, and-]+", "", bare, flags=re.I)
        if _NUMBER_OR_COMPARISON.search(bare):
            found.append(line.strip())
    return found
