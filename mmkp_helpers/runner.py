"""``mmkp-run``: execute the notebooks in order with papermill, parameters from a profile.

A profile (``profiles/<name>.yaml``) says *what* to run::

    description: one line
    env: {HF_HUB_OFFLINE: "1"}        # environment of the kernels
    timeout: 1800                      # seconds a cell may run (optional)
    defaults:                          # parameters given to every notebook that declares them
      model_name: tiny-qwen2_vl
    notebooks:                         # per-notebook overrides (name without .ipynb)
      03_sft_qlora: {max_steps: 200}

Every notebook also receives ``profile`` and ``results_dir`` (``results/<profile>`` or ``--out``).
Executed copies go to ``<results_dir>/<notebook>.ipynb``. A profile key that no notebook
declares, or a notebook that does not exist, is rejected before anything runs.

The kernels run headless: :data:`KERNEL_ENV` makes their progress bars plain text that redraws
rarely (see :mod:`mmkp_helpers.progress`; a profile's ``env`` may override it). Each executed copy
is checked with :func:`mmkp_helpers.nbcheck.problems` (absolute paths, tracebacks, warnings) and
what a reader would see is printed as a warning; it does not fail the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .paths import project_root

PROFILE_KEYS = {"description", "env", "timeout", "defaults", "notebooks"}
# The environment of the kernels papermill starts (a variable already set, or the profile's env, wins).
KERNEL_ENV = {"MMKP_PROGRESS": "plain"}
INJECTED = ("profile", "results_dir")


class ProfileError(ValueError):
    """A profile that cannot be run as written; the message lists what is valid."""


@dataclass
class Profile:
    name: str
    description: str = ""
    env: dict = field(default_factory=dict)
    timeout: int | None = None
    defaults: dict = field(default_factory=dict)
    notebooks: dict = field(default_factory=dict)


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def profiles_dir() -> Path:
    return project_root() / "profiles"


def list_notebooks(folder: Path | None = None) -> list[Path]:
    """The notebooks in reading order (``NN_name.ipynb``, sorted by name)."""
    folder = folder or notebooks_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def list_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def notebook_parameters(path: Path) -> dict:
    """The parameters a notebook declares in its ``parameters`` cell (name -> inferred type name)."""
    import papermill as pm

    return {name: info["inferred_type_name"] for name, info in pm.inspect_notebook(str(path)).items()}


def load_profile(name_or_path: str) -> Profile:
    """Read a profile by name (``profiles/<name>.yaml``) or path and check its top-level keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = profiles_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise ProfileError(f"no profile {name_or_path!r}; valid profiles: {', '.join(list_profiles()) or '(none)'}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile is a mapping with keys {sorted(PROFILE_KEYS)}")
    unknown = sorted(set(raw) - PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {unknown}; valid top-level keys: {sorted(PROFILE_KEYS)}")
    for key in ("env", "defaults", "notebooks"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise ProfileError(f"{path}: '{key}' must be a mapping")
    return Profile(name=path.stem, description=raw.get("description", ""), env=raw.get("env") or {},
                   timeout=raw.get("timeout"), defaults=raw.get("defaults") or {},
                   notebooks=raw.get("notebooks") or {})


def plan(profile: Profile, only: list[str] | None = None, results_dir: str | None = None,
         folder: Path | None = None) -> list[tuple[Path, dict]]:
    """Check the profile against the notebooks and return (notebook, parameters) in order.

    Raises ProfileError naming every unknown key with the keys that are valid there."""
    notebooks = list_notebooks(folder)
    by_name = {p.stem: p for p in notebooks}
    declared = {p.stem: notebook_parameters(p) for p in notebooks}
    errors = []
    for name in profile.notebooks:
        if name not in by_name:
            errors.append(f"notebook {name!r} does not exist; valid notebooks: {sorted(by_name)}")
    all_declared = set().union(*declared.values()) if declared else set()
    for key in profile.defaults:
        if key not in all_declared or key in INJECTED:
            errors.append(f"defaults: unknown parameter {key!r}; valid: {sorted(all_declared - set(INJECTED))}")
    for name, overrides in profile.notebooks.items():
        if name not in by_name:
            continue
        if not isinstance(overrides, dict):
            errors.append(f"notebooks.{name}: expected a mapping of parameters")
            continue
        for key in overrides:
            if key not in declared[name] or key in INJECTED:
                valid = sorted(set(declared[name]) - set(INJECTED))
                errors.append(f"notebooks.{name}: unknown parameter {key!r}; valid for {name}: {valid}")
    selected = notebooks
    if only:
        prefixes = [o.strip() for o in only if o.strip()]
        selected = [p for p in notebooks if any(p.stem == o or p.stem.startswith(o + "_") or p.stem[:2] == o
                                                 for o in prefixes)]
        missing = [o for o in prefixes if not any(p.stem == o or p.stem[:2] == o or p.stem.startswith(o + "_")
                                                  for p in notebooks)]
        if missing:
            errors.append(f"--only: no notebook {missing}; valid: {sorted(by_name)}")
    if errors:
        raise ProfileError(f"profile {profile.name!r} rejected:\n  - " + "\n  - ".join(errors))
    out_dir = results_dir or f"results/{profile.name}"
    runs = []
    for nb in selected:
        params = {k: v for k, v in profile.defaults.items() if k in declared[nb.stem]}
        params.update(profile.notebooks.get(nb.stem, {}) or {})
        for key, value in (("profile", profile.name), ("results_dir", out_dir)):
            if key in declared[nb.stem]:
                params[key] = value
        runs.append((nb, params))
    return runs


def _failure_message(nb: Path, output: Path, err: Exception) -> str:
    """Name the failing notebook, cell and error, and where the executed copy is.

    The cell number is the failing cell's position in the source notebook (0-based, counting
    markdown cells), which is what a reader finds when opening ``notebooks/NN_*.ipynb``."""
    import nbformat

    count = getattr(err, "exec_count", None)
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    failing_source, cell_index = None, None
    try:
        executed = nbformat.read(str(output), as_version=4)
        for c in executed.cells:
            if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                failing_source = c.source
                break
        source = nbformat.read(str(nb), as_version=4)
        cell_index = next((i for i, c in enumerate(source.cells) if c.source == failing_source), None)
    except Exception:  # the executed copy may not exist if the kernel never started
        pass
    where = f"cell #{cell_index}" if cell_index is not None else "a cell"
    if count is not None:
        where += f" (execution count {count})"
    lines = [f"FAILED: {nb.name}, {where}: {ename}: {evalue}".rstrip()]
    if failing_source and failing_source.strip():
        lines.append(f"  cell starts: {failing_source.strip().splitlines()[0][:100]}")
    lines.append(f"  executed copy with the traceback: {output}")
    return "\n".join(lines)


def run(profile_name: str, only: list[str] | None = None, out: str | None = None, progress: bool = True,
        folder: Path | None = None) -> int:
    """Run the profile's notebooks in order; return 0, or 1 at the first failure (reported)."""
    import papermill as pm

    profile = load_profile(profile_name)
    runs = plan(profile, only=only, results_dir=out, folder=folder)
    out_dir = Path(out) if out else project_root() / "results" / profile.name
    if not out_dir.is_absolute():
        out_dir = project_root() / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    from .nbcheck import report

    # KERNEL_ENV unless the caller's environment says otherwise; the profile's env over both
    kernel_env = {**{k: v for k, v in KERNEL_ENV.items() if k not in os.environ}, **profile.env}
    env_before = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update({k: str(v) for k, v in kernel_env.items()})
    unclean = []
    print(f"mmkp-run: profile {profile.name} ({profile.description.strip()}) -> {out_dir}")
    try:
        for i, (nb, params) in enumerate(runs, 1):
            output = out_dir / nb.name
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            print(f"[{i}/{len(runs)}] {nb.name}  ({shown})", flush=True)
            start = time.time()
            try:
                pm.execute_notebook(str(nb), str(output), parameters=params, kernel_name="python3",
                                    cwd=str(nb.parent), progress_bar=progress, log_output=False,
                                    execution_timeout=profile.timeout)
            except Exception as err:  # PapermillExecutionError, CellTimeoutError, DeadKernelError, ...
                print(_failure_message(nb, output, err), file=sys.stderr)
                return 1
            relative_paths(output)
            print(f"      done in {time.time() - start:.0f} s -> {output}", flush=True)
            if report([output]):
                unclean.append(output.name)
        if unclean:
            copies = "1 executed copy shows" if len(unclean) == 1 else f"{len(unclean)} executed copies show"
            print(f"mmkp-run: WARNING: {copies} what a reader should not see (listed above): {', '.join(unclean)}",
                  file=sys.stderr)
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return 0


def relative_paths(path: str | os.PathLike, root: str | os.PathLike | None = None) -> int:
    """Rewrite an executed notebook so that the project root's absolute path (in outputs, warnings
    and papermill's metadata) reads as a path relative to the root: a shared copy shows
    ``results/tiny/...`` and ``.venv/lib/...``, not the folders of the machine that ran it. Returns
    how many occurrences were replaced. Paths beside the root (its parent folder, e.g. the data in
    ``../shared``) read as ``../...``; other paths are left as they are."""
    root_path = Path(root) if root else project_root()
    root = str(root_path).rstrip("/")
    parent = str(root_path.parent).rstrip("/")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    count = 0
    swaps = [(root + "/", ""), (root + '"', '."')] + ([(parent + "/", "../")] if parent else [])
    for old, new in swaps:  # the root first; then its parent (e.g. ../shared/data beside a clone)
        count += text.count(old)
        text = text.replace(old, new)
    if count:
        path.write_text(text, encoding="utf-8")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmkp-run", description="Run the notebooks in order with a profile.")
    parser.add_argument("--profile", default="tiny", help=f"profile name or path (default tiny); have: "
                        f"{', '.join(list_profiles())}")
    parser.add_argument("--only", default=None, help="comma-separated notebook numbers or names, e.g. 00,03")
    parser.add_argument("--out", default=None, help="results folder (default results/<profile>)")
    parser.add_argument("--notebooks", default=None, help="folder of the notebooks (default notebooks/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    folder = Path(args.notebooks).resolve() if args.notebooks else None
    try:
        return run(args.profile, only=only, out=args.out, progress=not args.no_progress, folder=folder)
    except ProfileError as err:
        print(f"mmkp-run: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
