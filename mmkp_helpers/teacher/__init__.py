"""Teachers that write chain-of-thought rationales for training posts (Fine-tune-CoT, Ho et al. 2023).

Training code never imports this package: its product is a ``{example id: rationale}`` map for
:func:`mmkp_helpers.collate.make_records`. Three teachers share one interface (``name``, ``model``,
``mode``, ``prompt_version``, ``cache_key()``, ``messages(example)``, ``answer(example)``):

- :class:`OpenAITeacher`: any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM,
  Ollama) through the official ``openai`` client;
- :class:`OracleTeacher`: offline, faithful (or deliberately noisy) rationales from the synthetic
  benchmark's ground truth; :func:`check_oracle_rationale` verifies one;
- :class:`TemplateTeacher`: offline, rule-based rationales for CMKP posts.

Each works in *rationalize* mode (shown the gold keyphrases, it explains them) or *predict* mode
(it answers on its own; its rationales are kept when its keyphrases reach ``min_f1``).
:func:`estimate_run` prices a run before it is made (output lengths measured on the cache, e.g.
after a :func:`pilot_run`, else ``max_tokens`` as the upper bound; it says which);
:func:`run_teacher` makes it with live calls, a crash-safe cache, bounded concurrency, a budget
guard and the filtering; :func:`run_batch` makes it through the
OpenAI Batch API at half price into the same cache (also ``python -m mmkp_helpers.teacher``)::

    teacher = make_teacher("openai", model="gpt-4o-mini")
    pilot_run(teacher, train, "cache/teacher", n=5, prices=(0.15, 0.60))  # 5 real requests, cached
    print(estimate_run(teacher, train, prices=(0.15, 0.60), cache_dir="cache/teacher"))
    run = run_teacher(teacher, train, "cache/teacher", prices=(0.15, 0.60), max_cost=2.0)
    records = make_records(train, rationales=run.rationales)
"""
from __future__ import annotations

from .base import MODES, PROMPT_VERSION, TeacherAnswer
from .offline import OracleTeacher, TemplateTeacher, check_oracle_rationale
from .openai_teacher import MissingAPIKeyError, OpenAITeacher
from .batch import batch_status, run_batch
from .cache import load_cache
from .estimate import BATCH_DISCOUNT, estimate_run
from .run import TeacherBudgetError, TeacherRun, keyphrase_f1, leaks_gold, pilot_run, run_teacher

TEACHERS = {"oracle": OracleTeacher, "template": TemplateTeacher, "openai": OpenAITeacher}


def make_teacher(kind: str, **settings):
    """A teacher by kind: ``"oracle"``, ``"template"`` or ``"openai"``; ``settings`` go to its
    constructor (e.g. ``make_teacher("openai", model="gpt-4o-mini", mode="predict")``)."""
    try:
        cls = TEACHERS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown teacher kind {kind!r}; choose one of {sorted(TEACHERS)}") from None
    return cls(**settings)


__all__ = ["TeacherAnswer", "OpenAITeacher", "OracleTeacher", "TemplateTeacher", "make_teacher", "estimate_run",
           "run_teacher", "TeacherRun", "TeacherBudgetError", "check_oracle_rationale", "MissingAPIKeyError",
           "keyphrase_f1", "leaks_gold", "load_cache", "pilot_run", "BATCH_DISCOUNT", "run_batch", "batch_status", "MODES", "PROMPT_VERSION", "TEACHERS"]
