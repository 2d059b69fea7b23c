"""The ``Example`` record and everything that reads or writes examples.

(Loaders, the CMKP fetcher and splits are added by the data issue; the record is fixed here so
every room can rely on its fields.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Example:
    """One social-media post and its keyphrases.

    - ``keyphrases``: the gold keyphrases, in their given order (ranked for CMKP).
    - ``image``: path to the image file, or None when there is none (text, wordings and OCR
      are then all a model sees of the image).
    - ``attributes``: image wordings (attribute words predicted from the image, CMKP's
      ``*_attribute_cleaned.txt``).
    - ``ocr``: text read from the image.
    - ``source``: where it came from, ``file:line`` (1-based line).
    - ``meta``: anything else; the synthetic benchmark keeps its ground truth here
      (what is drawn, which cue gives which keyphrase, the kind of each keyphrase).
    """
    id: str
    text: str
    keyphrases: list[str]
    image: str | None = None
    attributes: list[str] = field(default_factory=list)
    ocr: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
