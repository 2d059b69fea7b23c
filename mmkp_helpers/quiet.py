"""Silence library messages that are known to be harmless here, each at its source, each with why.

Only exact messages are silenced (a regex on the message, a logger and a category); anything
else a library says stays visible. ``tests/test_executed_clean.py`` fails when an executed notebook
shows a warning that is neither silenced here nor on its allow-list, so a new warning is seen.

Call :func:`apply` before the libraries are imported (``mmkp_helpers.modeling`` does, at import);
it is idempotent.
"""
from __future__ import annotations

import logging
import re
import warnings

# (category, message regex, why it is harmless)
WARNINGS = [
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated",
     "transformers 5 renamed is_gradient_checkpointing to is_activation_checkpointing; peft still reads the "
     "old name (getattr in PeftModel.__init__). The value is the same; nothing to do until peft follows."),
]

# (logger name, message regex, why it is harmless)
LOG_MESSAGES = [
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community",
     "bitsandbytes tries an optional faster CPU 4-bit kernel from the `kernels` package (not a dependency) and "
     "falls back to its own CPU kernel, which the tiny profile is tested with. Results are the same."),
]


class _DropMessages(logging.Filter):
    """Drops the records whose message matches one of ``patterns``."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def apply() -> None:
    """Install the filters above (warnings filters and logger filters); safe to call again."""
    for category, message, _why in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    by_logger: dict[str, list[str]] = {}
    for name, message, _why in LOG_MESSAGES:
        by_logger.setdefault(name, []).append(message)
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)  # the same object the library gets when it is imported later
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(patterns))
