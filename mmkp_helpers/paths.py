"""Where things live: the project root, the results folder of a run, the local cache.

Notebooks run with their own folder as working directory (Jupyter, papermill's ``cwd``) or from
the project root (scripts, tests). Relative paths in parameters are therefore resolved against the
project root, so ``results/tiny`` means the same folder wherever the kernel started.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The folder holding ``pyproject.toml`` above this package (the repository root).

    Falls back to the current directory when the package is installed outside a checkout."""
    for folder in [_PACKAGE_DIR, *_PACKAGE_DIR.parents]:
        if (folder / "pyproject.toml").exists() and (folder / "notebooks").is_dir():
            return folder
    return Path.cwd()


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path; a relative one is taken relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def cache_dir(*parts: str) -> Path:
    """The project's cache (tiny models, downloaded data): ``$MMKP_CACHE`` or ``<root>/.cache``."""
    base = Path(os.environ["MMKP_CACHE"]).expanduser() if os.environ.get("MMKP_CACHE") else project_root() / ".cache"
    folder = base.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_dir(results_dir: str | os.PathLike, notebook: str | None = None) -> Path:
    """The results folder of a run (``results/<profile>``), or of one notebook inside it; created."""
    folder = resolve(results_dir)
    if notebook:
        folder = folder / notebook
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def relative(path: str | os.PathLike) -> str:
    """``path`` as it reads in a shared record: relative to the project root when inside it,
    ``../...`` when beside it (e.g. ``../shared/data``), else unchanged."""
    p = Path(path).expanduser().resolve()
    root = project_root().resolve()
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return str(p)
