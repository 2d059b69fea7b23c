"""``mmkp-course``: the course editions of the notebooks.

``mmkp-course --out DIR`` reads the committed notebooks (``notebooks/*.ipynb``, or the ones given
with ``--notebooks``) with nbformat and writes

- ``DIR/student/<name>.ipynb``: every cell tagged ``solution`` removed;
- ``DIR/instructor/<name>.ipynb``: the solutions kept;
- ``DIR/README.md``: the run order and how to open the notebooks.

In both editions outputs and execution counts are cleared, execution metadata is dropped, and a
first markdown cell says how to run the notebook (``make lab`` or ``jupyter lab``, the ``tiny``
profile its parameters default to, and which earlier notebooks it reads).

Exercises and solutions, the convention the course relies on (checked by :func:`check_solutions`):

- a markdown cell with a ``## Exercises`` heading lists the exercises as a numbered list, one
  top-level item ``N. ...`` per exercise, up to the next heading or the end of the cell;
- the cells right after it are the worked solutions, every one tagged ``solution``: for each
  exercise N, in order, a markdown cell starting ``### Solution N`` (or ``**Solution N.**``)
  followed by at least one more solution cell (code that computes the answer, or markdown that
  explains it);
- solutions run with the notebook: they reuse what the notebook computed and stay cheap.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
EDITIONS = ("student", "instructor")

_EXERCISES = re.compile(r"^##\s+Exercises\s*$", re.M)
_HEADING = re.compile(r"^#{1,6}\s")
_ITEM = re.compile(r"^(\d+)\.\s")
_SOLUTION = re.compile(r"^\s*(?:###\s+Solution\s+(\d+)\b|\*\*Solution\s+(\d+)\.?\*\*)")

# What each notebook reads from the earlier ones in the same results folder (``results/<profile>``).
# Keys are notebook stems, values (earlier notebook stem, what is read). tests/test_course.py checks
# that every notebook is listed and that each dependency is named in the notebook's own text.
DEPENDS: dict[str, tuple[tuple[str, str], ...]] = {
    "00_vlm_primer": (),
    "01_benchmark_overlap": (),
    "02_zero_shot": (("01_benchmark_overlap", "the clean split it writes (rebuilt with the same arguments "
                                              "when it is missing)"),),
    "03_sft_qlora": (("01_benchmark_overlap", "the original and clean splits it writes (rebuilt when missing)"),),
    "04_fine_tune_cot": (("01_benchmark_overlap", "the clean split (rebuilt when missing)"),
                         ("03_sft_qlora", "its text+image SFT adapter, reused when trained with the same settings "
                                          "(else the SFT baseline is trained here)")),
    "05_dynamic_cot": (("01_benchmark_overlap", "the clean split (rebuilt when missing)"),
                       ("04_fine_tune_cot", "the teacher's rationales and the SFT and Fine-tune-CoT records and "
                                            "generations, reused when trained with the same settings (else "
                                            "rebuilt here)")),
    "06_results": (("02_zero_shot", "its metrics records"), ("03_sft_qlora", "its metrics records"),
                   ("04_fine_tune_cot", "its metrics records"), ("05_dynamic_cot", "its metrics records")),
}


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def exercise_numbers(source: str) -> list[int]:
    """The numbers of the exercises listed under the ``## Exercises`` heading of a markdown cell
    (top-level ``N. `` items up to the next heading); [] when the cell has no such heading."""
    match = _EXERCISES.search(source)
    if not match:
        return []
    numbers = []
    for line in source[match.end():].splitlines():
        if _HEADING.match(line):
            break
        item = _ITEM.match(line)
        if item:
            numbers.append(int(item.group(1)))
    return numbers


def exercise_cells(nb) -> list[int]:
    """Indices of the markdown cells that hold an ``## Exercises`` heading."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and _EXERCISES.search(c.source)]


def solution_sections(nb, index: int) -> list[tuple[int, list[int]]]:
    """The solutions right after the exercises cell at ``index``: ``[(exercise number, [cell
    indices of that solution, its heading first])]``, from the run of ``solution`` cells that
    follows the cell. Solution cells before the first ``### Solution N`` heading are put under 0."""
    sections: list[tuple[int, list[int]]] = []
    for i in range(index + 1, len(nb.cells)):
        cell = nb.cells[i]
        if not is_solution(cell):
            break
        heading = _SOLUTION.match(cell.source) if cell.cell_type == "markdown" else None
        if heading:
            sections.append((int(heading.group(1) or heading.group(2)), [i]))
        elif sections:
            sections[-1][1].append(i)
        else:
            sections.append((0, [i]))
    return sections


def check_solutions(nb) -> list[str]:
    """What breaks the exercises/solutions convention of the module docstring ([] when nothing)."""
    problems = []
    indices = exercise_cells(nb)
    if not indices:
        problems.append("no markdown cell with an '## Exercises' heading")
    for index in indices:
        numbers = exercise_numbers(nb.cells[index].source)
        if not numbers:
            problems.append(f"cell {index}: '## Exercises' lists no numbered exercise")
        sections = solution_sections(nb, index)
        found = [n for n, _ in sections]
        if found != numbers:
            problems.append(f"cell {index}: exercises {numbers}, but the solution cells after it are "
                            f"headed {found or 'nothing'} ('### Solution N' or '**Solution N.**', tagged {SOLUTION_TAG!r})")
        for n, cells in sections:
            if len(cells) < 2:
                problems.append(f"cell {index}: solution {n} has a heading and nothing else")
    return problems


def header(name: str, edition: str) -> str:
    """The first cell of an edition: how to run the notebook and what it needs to have run before."""
    number = name[:2]
    deps = DEPENDS.get(name, ())
    lines = [f"> **Course edition ({edition})** of `notebooks/{name}.ipynb`, made by `mmkp-course`.", "",
             "**How to run it.** From the project root, `make lab` opens JupyterLab with the project's kernel "
             "(it creates `.venv` with the pinned environment on first use); or activate `.venv` and run "
             "`jupyter lab` in the folder of this edition. Run the cells from the top "
             "(*Run > Restart Kernel and Run All Cells*).",
             "",
             "**Profile.** The parameters cell defaults to the `tiny` profile: a tiny random Qwen2-VL on the "
             "synthetic benchmark, on a CPU, in minutes, nothing downloaded; results go to `results/tiny/` "
             "(paths are relative to the project root). The same run without Jupyter: "
             f"`mmkp-run --profile tiny --only {number}`; on a GPU, `--profile paper-qwen2vl-2b`.", ""]
    if deps:
        lines.append("**Run first.** This notebook reads, from the same results folder:")
        lines += [f"- notebook {dep[:2]} (`{dep}`): {what};" for dep, what in deps]
        lines[-1] = lines[-1].rstrip(";") + "."
    else:
        lines.append("**Run first.** Nothing: this notebook reads nothing that an earlier one writes.")
    lines.append("")
    if edition == "student":
        lines.append("**Exercises.** The `## Exercises` section at the end is yours; the worked solutions are "
                     "in the instructor edition.")
    else:
        lines.append(f"**Exercises.** The cells tagged `{SOLUTION_TAG}` after `## Exercises` are the worked "
                     "solutions; they run with the notebook and reuse what it computed, so they take seconds "
                     "on the `tiny` profile.")
    return "\n".join(lines)


def clear(nb) -> None:
    """Outputs, execution counts and execution metadata removed, in place."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)


def edition(nb, name: str, kind: str):
    """A copy of ``nb`` as the ``kind`` edition (``student`` or ``instructor``)."""
    if kind not in EDITIONS:
        raise ValueError(f"unknown edition {kind!r}; choose one of {EDITIONS}")
    out = copy.deepcopy(nb)
    if kind == "student":
        out.cells = [c for c in out.cells if not is_solution(c)]
    clear(out)
    out.cells.insert(0, nbformat.v4.new_markdown_cell(header(name, kind), metadata={"tags": ["course-header"]}))
    for i, cell in enumerate(out.cells):  # deterministic, unique ids (the header's would be random)
        if out.nbformat_minor >= 5:
            cell["id"] = f"{kind}-{i:03d}"
        else:
            cell.pop("id", None)
    return out


def readme(names: list[str], summaries: dict[str, dict]) -> str:
    lines = ["# mmkp: the course editions", "",
             "Made by `mmkp-course` from the project's `notebooks/`. Two editions of every notebook, with "
             "outputs cleared:", "",
             "- `student/`: without the worked solutions (the cells tagged `solution`);",
             "- `instructor/`: with them; they run with the notebook, on the `tiny` profile in seconds.", "",
             "## How to run", "",
             "From the project root: `make lab` (JupyterLab with the project's kernel; `.venv` is created "
             "with the pinned environment on first use), then open an edition's folder; or, with `.venv` "
             "activated, `jupyter lab student/` here. Every notebook defaults to the `tiny` profile (CPU, "
             "minutes, nothing downloaded) and writes to `results/tiny/` under the project root. "
             "`mmkp-run --profile tiny` runs them all in order without Jupyter.", "",
             "## Order", "",
             "| notebook | exercises | worked solutions | run first |", "| --- | --- | --- | --- |"]
    for name in names:
        s = summaries[name]
        deps = ", ".join(dep[:2] for dep, _ in DEPENDS.get(name, ())) or "-"
        lines.append(f"| `{name}` | {s['exercises']} | {s['solutions']} | {deps} |")
    return "\n".join(lines) + "\n"


def build(out: str | Path, notebooks: list[Path]) -> dict[str, dict]:
    """Write both editions of ``notebooks`` and the README under ``out``; per notebook, how many
    exercises and solutions it has and what breaks the convention."""
    out = Path(out)
    for kind in EDITIONS:
        (out / kind).mkdir(parents=True, exist_ok=True)
    summaries = {}
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        name = path.stem
        for kind in EDITIONS:
            ed = edition(nb, name, kind)
            nbformat.validate(ed)
            nbformat.write(ed, str(out / kind / path.name))
        numbers = [n for i in exercise_cells(nb) for n in exercise_numbers(nb.cells[i].source)]
        solved = {n for i in exercise_cells(nb) for n, _ in solution_sections(nb, i) if n}
        summaries[name] = {"exercises": len(numbers), "solutions": len(solved & set(numbers)),
                           "problems": check_solutions(nb)}
    (out / "README.md").write_text(readme([p.stem for p in notebooks], summaries))
    return summaries


def main(argv: list[str] | None = None) -> int:
    from .runner import list_notebooks

    parser = argparse.ArgumentParser(prog="mmkp-course", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for student/, instructor/ and README.md")
    parser.add_argument("--notebooks", nargs="+", default=None,
                        help="notebook files or folders (default: the project's notebooks/)")
    args = parser.parse_args(argv)
    paths: list[Path] = []
    for item in args.notebooks or [None]:
        if item is None:
            paths += list_notebooks()
        elif Path(item).is_dir():
            paths += list_notebooks(Path(item))
        elif Path(item).suffix == ".ipynb" and Path(item).is_file():
            paths.append(Path(item))
        else:
            parser.error(f"not a notebook or a folder of notebooks: {item}")
    if not paths:
        parser.error("no notebooks found")
    summaries = build(args.out, paths)
    for name, s in summaries.items():
        note = f"; {len(s['problems'])} problem(s): {s['problems'][0]}" if s["problems"] else ""
        print(f"{name}: {s['exercises']} exercises, {s['solutions']} worked solutions{note}")
    print(f"wrote {args.out}/student, {args.out}/instructor and {args.out}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
