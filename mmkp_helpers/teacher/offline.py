"""Teachers that need no API: the synthetic benchmark's oracle and a template teacher for CMKP.

- :class:`OracleTeacher` (in :mod:`.oracle`, re-exported here) writes a faithful rationale from a
  synthetic example's recorded ground truth, in a ``verbose`` or ``compact`` style, optionally
  with a share of unfaithful ones; :func:`check_oracle_rationale` checks one against the truth.
- :class:`TemplateTeacher` explains a real post's gold keyphrases from its text, image wordings
  and OCR: present keyphrases are pointed out in the text, absent ones are tied to a wording or
  the OCR when a word overlaps, else stated as the topic of the post.

Both teachers answer in the format asked of an API teacher (``<think>...</think>`` then
``Keyphrases: ...``), cost nothing and report their (tiny) latency.
"""
from __future__ import annotations

from ..data import Example
from ..text import is_present, present_in_text, stem_phrase, stem_text
from .base import Teacher, format_answer
from .oracle import NOISE_KINDS, STYLES, OracleTeacher, check_oracle_rationale  # noqa: F401 (re-exported)


# ------------------------------------------------------------------------------------------------
# The template teacher (CMKP posts, no API)
# ------------------------------------------------------------------------------------------------
class TemplateTeacher(Teacher):
    """Rule-based rationales for real posts from the text, the image wordings and the OCR.

    In *rationalize* mode every gold keyphrase gets a step, in order: a present one is pointed out
    in the text ("the text mentions 'game of thrones'"), an absent one is tied to the wordings or
    the OCR when one of its words (stemmed) is there ("the image wordings include 'crowd': 'concert'"),
    else stated as the topic of the post ("the post is about 'concert'"). In *predict* mode the
    answer keeps only the keyphrases the evidence supports (present, wordings, OCR): the others
    would be guesses."""

    name = "template"
    model = "rules"

    def steps(self, example: Example) -> list[tuple[str, str, str]]:
        """(sentence, keyphrase, support) per gold keyphrase; support is "text", "wordings",
        "ocr" or "topic"."""
        text_stems = stem_text(example.text)
        words = [w for w in (a.strip() for a in example.attributes) if w]
        ocr_words = example.ocr.split() if example.ocr else []
        out = []
        for kp in (k.strip() for k in example.keyphrases):
            if not kp:
                continue
            stems = set(stem_phrase(kp))
            if is_present(stem_phrase(kp), text_stems) or present_in_text(kp, example.text):
                out.append((f"the text mentions '{kp}'", kp, "text"))
                continue
            hits = [w for w in words if set(stem_phrase(w)) & stems]
            if hits:
                shown = ", ".join(f"'{w}'" for w in dict.fromkeys(hits))
                out.append((f"the image wordings include {shown}: '{kp}'", kp, "wordings"))
                continue
            hits = [w for w in ocr_words if set(stem_phrase(w)) & stems]
            if hits:
                shown = " ".join(dict.fromkeys(hits))
                out.append((f"the text in the image reads '{shown}': '{kp}'", kp, "ocr"))
                continue
            out.append((f"the post is about '{kp}'", kp, "topic"))
        return out

    def _answer_text(self, example: Example) -> tuple[str, int, int]:
        steps = self.steps(example)
        if self.mode == "predict":
            steps = [s for s in steps if s[2] != "topic"]
            if not steps:
                return format_answer("nothing in the post points to a keyphrase.", []), 0, 0
        rationale = ". ".join(s for s, _, _ in steps) + "."
        keyphrases = [kp for _, kp, _ in steps] if self.mode == "predict" else list(example.keyphrases)
        return format_answer(rationale, keyphrases), 0, 0
