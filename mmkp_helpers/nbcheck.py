"""Check an executed notebook before it is shared: :func:`problems` lists what a reader should not
see in ``results/<profile>/*.ipynb``.

- an absolute path of the machine that ran it (``/work/...``, ``/home/...``, ``/tmp/...``), or a
  path into installed packages (``site-packages/...``): ``mmkp-run`` rewrites the project's own
  paths to relative ones, anything left is a leak or a library message;
- a traceback (an error output, or ``Traceback (most recent call last)`` in any output);
- a warning (``SomethingWarning:`` or ``warnings.warn(`` on stderr, or library noise known from
  :mod:`mmkp_helpers.quiet`) that is not on :data:`ALLOW`;
- a progress bar that redrew more than :data:`MAX_REDRAWS` times (headless runs draw plain bars
  that redraw rarely, see :mod:`mmkp_helpers.progress`);
- Trainer log dicts printed as text (``{'loss': ...}``).

``mmkp-run`` prints these after each notebook; ``tests/test_executed_clean.py`` runs it on the
committed executed copies.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

# Warnings a reader may see, each with the reason it stays. A regex searched in the warning's line.
ALLOW: list[tuple[str, str]] = [
    (r"UserWarning: clean split: unseen test keyphrase share",
     "01_benchmark_overlap's own note that a small pool cannot reach the target unseen-keyphrase share; "
     "it qualifies the split that the notebook reports, so the reader must see it"),
]

ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|home|tmp|usr|opt|var|mnt|srv|scratch|Users|private)/[^\s'\"]*")
PACKAGE_PATH = re.compile(r"[^\s'\"]*(?:site|dist)-packages/[^\s'\"]*")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
WARNING = re.compile(r"\b\w*Warning: |warnings\.warn\(")
# Library noise that mmkp_helpers.quiet silences: seen again means the silencing broke.
KNOWN_NOISE = re.compile(r"Failed to load CPU gemm_4bit_forward|IProgress not found")
PROGRESS_LINE = re.compile(r"^\s*(?P<desc>[^\r\n|]*?):?\s*(?P<pct>\d{1,3})%\|.*?\[(?P<elapsed>(?:\d+:)?\d+:\d+)")
# A plain bar draws its first line, one every PLAIN_MININTERVAL seconds, and its last (twice when
# closed); more than this many (plus one per interval it ran) means it redrew at tqdm's default rate.
MAX_REDRAWS = 4
TRAINER_DICT = re.compile(r"^\{'(?:loss|eval_loss|train_runtime|grad_norm|learning_rate)': ", re.M)
_TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "application/json")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _outputs(cell) -> list[tuple[str, str, str]]:
    """(kind, stream name or mime, text) of a cell's outputs; images are skipped."""
    found = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            found.append((kind, out.get("name", ""), _ANSI.sub("", _text(out.get("text", "")))))
        elif kind == "error":
            text = f"{out.get('ename', '')}: {out.get('evalue', '')}\n" + "\n".join(out.get("traceback", []))
            found.append((kind, "error", _ANSI.sub("", text)))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            for mime, value in (out.get("data") or {}).items():
                if mime in _TEXT_MIMES or mime.endswith("+json"):
                    found.append((kind, mime, _text(value)))
    return found


def allowed(line: str, allow: list[tuple[str, str]] | None = None) -> bool:
    return any(re.search(pattern, line) for pattern, _reason in (ALLOW if allow is None else allow))


def problems(notebook_path: str | os.PathLike, allow: list[tuple[str, str]] | None = None) -> list[str]:
    """What a reader should not see in this executed notebook, one line each (empty: clean).

    Cell numbers are positions in the executed copy (0-based, markdown cells counted)."""
    nb = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    found: list[str] = []

    def add(message: str) -> None:
        if message not in found:
            found.append(message)

    meta = json.dumps(nb.get("metadata", {}).get("papermill", {}))
    for match in ABSOLUTE_PATH.finditer(meta):
        add(f"metadata: absolute path {match.group(0)[:120]!r}")
    from .progress import PLAIN_MININTERVAL
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        bars: list[list] = []  # [description, last percent, lines, elapsed seconds] per bar drawn
        stderr = "".join(text for kind, name, text in _outputs(cell) if kind == "stream" and name == "stderr")
        for kind, name, text in _outputs(cell):
            where = f"cell {index}"
            if kind == "error":
                add(f"{where}: error output {text.splitlines()[0][:160]}")
            if TRACEBACK.search(text):
                add(f"{where}: a traceback in the {name} output")
            for match in ABSOLUTE_PATH.finditer(text):
                add(f"{where}: absolute path {match.group(0)[:120]!r} in the {name} output")
            for match in PACKAGE_PATH.finditer(text):
                add(f"{where}: path into installed packages {match.group(0)[:120]!r} in the {name} output")
            if kind == "stream" and name == "stdout" and TRAINER_DICT.search(text):
                add(f"{where}: Trainer log dict printed: {TRAINER_DICT.search(text).group(0)}...")
        previous_warned = False
        for line in re.split(r"[\r\n]+", stderr):
            if WARNING.search(line) or KNOWN_NOISE.search(line):
                # "warnings.warn(" right after a warning line is that warning's source line
                if not (previous_warned and line.strip().startswith("warnings.warn(")) and not allowed(line, allow):
                    add(f"cell {index}: warning {line.strip()[:200]!r}")
                previous_warned = True
            elif line.strip():
                previous_warned = False
            progress = PROGRESS_LINE.match(line)
            if progress:
                desc, pct = progress.group("desc").strip(), int(progress.group("pct"))
                elapsed = sum(int(x) * 60 ** i for i, x in enumerate(reversed(progress.group("elapsed").split(":"))))
                if not bars or bars[-1][0] != desc or pct < bars[-1][1]:
                    bars.append([desc, pct, 0, 0])
                bars[-1][1:] = [pct, bars[-1][2] + 1, elapsed]
        for desc, _pct, lines, elapsed in bars:
            limit = MAX_REDRAWS + int(elapsed // PLAIN_MININTERVAL)
            if lines > limit:
                add(f"cell {index}: progress bar {desc!r} drew {lines} lines in {elapsed} s (a plain bar draws at most "
                    f"{limit}: see mmkp_helpers.progress)")
    return found


def report(paths, file=None) -> int:
    """Print the problems of each executed notebook (to stderr by default); return how many have any."""
    file = file or sys.stderr
    bad = 0
    for path in paths:
        found = problems(path)
        if found:
            bad += 1
            print(f"WARNING: {path}: {len(found)} problem(s) a reader would see:", file=file)
            for line in found[:20]:
                print(f"  - {line}", file=file)
            if len(found) > 20:
                print(f"  - ... and {len(found) - 20} more", file=file)
    return bad


def main(argv: list[str] | None = None) -> int:
    """``python -m mmkp_helpers.nbcheck results/tiny/*.ipynb``: exit 1 when any has problems."""
    paths = argv if argv is not None else sys.argv[1:]
    return 1 if report(paths, file=sys.stdout) else 0


if __name__ == "__main__":
    sys.exit(main())
