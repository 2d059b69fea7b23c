"""Author notebooks as plain text and keep the committed copies clean.

    python tools/nbtool.py build notebooks/src/00_vlm_primer.py notebooks/00_vlm_primer.ipynb
    python tools/nbtool.py export notebooks/00_vlm_primer.ipynb /tmp/00.py  # the reverse, for editing
    python tools/nbtool.py clean notebooks/*.ipynb      # strip outputs and execution metadata

The committed ``.ipynb`` files are the only source of truth; the text form is a transient
editing aid (export, edit, build).

The source format is jupytext's "percent" style: cells start with ``# %%`` (code) or
``# %% [markdown]`` (markdown, every line prefixed with ``# ``); ``# %% tags=["parameters"]``
tags a cell.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def build(src: Path, dst: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{dst.stem[:2]}-{i:02d}"
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    dst.write_text(nbformat.writes(nb) + "\n")


def export(src: Path, dst: Path) -> None:
    nb = nbformat.read(str(src), as_version=4)
    parts = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        head = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "")
        if tags:
            head += " tags=" + json.dumps(tags)
        body = cell.source
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + l) if l else "#" for l in body.splitlines())
        parts.append(head + "\n" + body)
    dst.write_text("\n\n".join(parts) + "\n")


def clean(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    path.write_text(nbformat.writes(nb) + "\n")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "build":
        build(Path(args[0]), Path(args[1]))
    elif cmd == "export":
        export(Path(args[0]), Path(args[1]))
    elif cmd == "clean":
        for a in args:
            clean(Path(a))
    else:
        sys.exit(__doc__)
