"""Copy the tiny profile's results table from ``results/tiny/summary.md`` into the README.

    python tools/readme_table.py           # rewrite the table between the README's markers
    python tools/readme_table.py --check   # exit 1 when the README's table differs from summary.md

The README's table is never typed by hand: notebook 06 writes ``summary.md`` from every record of
``make reproduce``, this script copies its table, and ``tests/test_links.py`` checks the copy.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- summary.md table: start -->", "<!-- summary.md table: end -->"


def summary_table(summary: Path = ROOT / "results" / "tiny" / "summary.md") -> list[str]:
    """The first Markdown table of ``summary.md``, as lines."""
    lines = summary.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    last = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[first:last]


def readme_table(readme: Path = ROOT / "README.md") -> list[str]:
    """The lines between the README's markers."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    return lines[lines.index(START) + 1:lines.index(END)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    table, readme = summary_table(), ROOT / "README.md"
    if readme_table() == table:
        return 0
    if args.check:
        print("README.md's results table differs from results/tiny/summary.md: run python tools/readme_table.py")
        return 1
    lines = readme.read_text(encoding="utf-8").splitlines()
    lines[lines.index(START) + 1:lines.index(END)] = table
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"README.md: {len(table) - 2} rows copied from results/tiny/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
