"""Progress bars that suit where the code runs.

- In JupyterLab (and any live notebook): ``tqdm.auto``, i.e. a widget bar (needs ``ipywidgets``,
  which the lock pins; without it tqdm falls back to text and warns "IProgress not found").
- In a headless run (``mmkp-run`` executing notebooks with papermill sets ``MMKP_PROGRESS=plain``
  for its kernels): plain text bars that redraw at most every :data:`PLAIN_MININTERVAL` seconds.
  A widget bar there would be saved as a "0%" placeholder (its updates are widget messages, not
  outputs), and a text bar at tqdm's default rate writes dozens of lines into the executed copy.

Use :func:`tqdm` instead of ``tqdm.auto.tqdm``; :func:`configure` routes the bars transformers
draws itself (``Loading weights``) the same way.
"""
from __future__ import annotations

import os

ENV_VAR = "MMKP_PROGRESS"
PLAIN = "plain"
PLAIN_MININTERVAL = 30.0  # seconds between redraws of a plain bar: its first line, a few, the last


def plain() -> bool:
    """Whether bars should be plain text that redraws rarely (``MMKP_PROGRESS=plain``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() == PLAIN


def tqdm_class():
    """The tqdm class for the current run (see the module docstring)."""
    if plain():
        from tqdm.std import tqdm as cls
    else:
        from tqdm.auto import tqdm as cls
    return cls


def tqdm(*args, **kwargs):
    """A progress bar: ``tqdm.auto`` in a live notebook, a rarely redrawn text bar in headless runs."""
    if plain():
        kwargs.setdefault("mininterval", PLAIN_MININTERVAL)
        kwargs.setdefault("maxinterval", PLAIN_MININTERVAL)  # tqdm's monitor thread may not force redraws sooner
    return tqdm_class()(*args, **kwargs)


def _transformers_hook(factory, args, kwargs):
    """transformers' tqdm hook: its bars (when enabled) drawn by :func:`tqdm`."""
    from tqdm.auto import tqdm as auto

    return tqdm(*args, **kwargs) if factory is auto else factory(*args, **kwargs)


def configure() -> None:
    """In a headless run, make transformers' own bars plain and rare too. Idempotent; a no-op in a
    live notebook or when transformers is too old to take a hook."""
    if not plain():
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    if hasattr(hf_logging, "set_tqdm_hook"):
        hf_logging.set_tqdm_hook(_transformers_hook)
