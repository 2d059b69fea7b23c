"""Training data units and the collator that turns them into label-masked chat batches.

- :class:`TrainRecord`: one example with its direct target and, optionally, a CoT target.
- :class:`TargetForms`: a shared, mutable map ``example id -> "direct" | "cot"``. The collator
  reads it when it builds each batch, so a change (Dynamic CoT flips examples between forms as
  their loss moves) takes effect from the next batch on.
- :class:`ChatCollator`: chat-templated batches with the images; labels are ``-100`` everywhere
  except the assistant's answer and its closing ``<|im_end|>``.

**When forms are read.** :func:`mmkp_helpers.training.train_sft` does not collate inside the
DataLoader (accelerate's loader fetches a batch ahead, which would read forms one step early):
its trainer calls the collator when the optimizer step that uses the batch begins, so a change
made in a callback's ``on_step_end`` applies from the next step. ``TargetForms`` lives in the
training process; a DataLoader worker process would hold a stale copy, so the trainer uses
``dataloader_num_workers=0``. A lock makes reads and writes from different threads safe.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .data import Example
from .prompts import ANSWER_LABEL, PromptTemplate, build_messages, cot_target, direct_target, get_template

IGNORE_INDEX = -100
FORMS = ("direct", "cot")
#: A form setting, not a form: each visit of the example trains one of the two forms, drawn by
#: :meth:`TargetForms.resolve` (a seeded hash of the example and its visit number).
BOTH = "both"
SETTINGS = FORMS + (BOTH,)
ASSISTANT_HEADER = "<|im_start|>assistant\n"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>")


def load_image(path: str | os.PathLike):
    """An image file as an RGB ``PIL.Image`` (decoded now, so the file can be closed)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class TrainRecord:
    """One training unit: an example, its direct target and (optionally) its CoT target.

    ``direct`` is the serialized keyphrase list (``"kp1; kp2"``); ``cot`` the same answer after
    a rationale (``"<think>...</think>\\nkp1; kp2"``), or ``None`` when no rationale exists, in
    which case the record is always trained in its direct form. ``rationale`` is the rationale
    inside ``cot``. ``answer_only``: in its CoT form only the answer line is trained (labels on the
    rationale are ``-100``: it is context, as for a counterfactual record, see
    :mod:`mmkp_helpers.counterfactual`). ``context``: the opening of the CoT target that is context
    (its tokens carry no loss), the rest trains (an evidence counterfactual's changed reading,
    :func:`mmkp_helpers.counterfactual.reread_records`)."""
    example: Example
    direct: str
    cot: str | None = None
    rationale: str | None = None
    answer_only: bool = False
    context: str | None = None

    @property
    def id(self) -> str:
        return self.example.id

    def target(self, form: str) -> str:
        """The target text for ``form`` (``"cot"`` falls back to direct when there is no CoT)."""
        if form not in FORMS:
            raise ValueError(f"unknown target form {form!r}; choose one of {FORMS}")
        return self.cot if form == "cot" and self.cot is not None else self.direct

    def used_form(self, form: str) -> str:
        """The form actually trained when ``form`` is asked for."""
        return "cot" if form == "cot" and self.cot is not None else "direct"


def make_records(examples: Iterable[Example], rationales: Mapping[str, str] | None = None) -> list[TrainRecord]:
    """One :class:`TrainRecord` per example; ``rationales`` (id -> rationale) adds CoT targets."""
    rationales = rationales or {}
    records = []
    for ex in examples:
        rationale = rationales.get(ex.id)
        records.append(TrainRecord(ex, direct_target(ex.keyphrases),
                                   None if rationale is None else cot_target(rationale, ex.keyphrases), rationale))
    return records


class TargetForms:
    """Which target form each example trains with: ``id -> "direct" | "cot" | "both"``, with a
    default.

    ``"both"`` means each visit trains one form, drawn per visit (:meth:`resolve`): the visits of
    an example alternate between the forms, starting with the one a seeded hash of the example's
    id picks, so after any two visits an example has trained in both forms, and over the examples
    each form comes first half of the time. Shared by reference between the collator (reads at
    collate time) and whoever decides the forms (a Dynamic CoT callback writes). ``version``
    counts changes; ``visits`` counts each example's visits in ``"both"``."""

    def __init__(self, default: str = "direct", forms: Mapping[str, str] | None = None, seed: int = 0):
        if default not in SETTINGS:
            raise ValueError(f"unknown default form {default!r}; choose one of {SETTINGS}")
        self.default = default
        self.seed = int(seed)
        self._forms: dict[str, str] = {}
        self._lock = threading.Lock()
        self.version = 0
        self.visits: dict[str, int] = {}
        if forms:
            self.update(forms)

    def __getstate__(self) -> dict:  # picklable (a run trained in a worker process returns its table)
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getitem__(self, example_id: str) -> str:
        with self._lock:
            return self._forms.get(example_id, self.default)

    def get(self, example_id: str) -> str:
        return self[example_id]

    def set(self, example_id: str, form: str) -> None:
        self.update({example_id: form})

    def __setitem__(self, example_id: str, form: str) -> None:
        self.set(example_id, form)

    def resolve(self, example_id: str) -> str:
        """The form this visit of ``example_id`` trains in: its setting, or for ``"both"`` the
        next form of its alternation (counted as a visit)."""
        setting = self[example_id]
        if setting != BOTH:
            return setting
        import hashlib

        with self._lock:
            k = self.visits.get(example_id, 0)
            self.visits[example_id] = k + 1
        first = hashlib.sha256(f"{self.seed}:{example_id}".encode()).digest()[0] % 2
        return FORMS[(first + k) % 2]

    def update(self, forms: Mapping[str, str]) -> None:
        bad = {f for f in forms.values() if f not in SETTINGS}
        if bad:
            raise ValueError(f"unknown target forms {sorted(bad)}; choose from {SETTINGS}")
        with self._lock:
            self._forms.update(forms)
            self.version += 1

    def set_default(self, form: str) -> None:
        """Change the form of every example that has no explicit form."""
        if form not in SETTINGS:
            raise ValueError(f"unknown form {form!r}; choose one of {SETTINGS}")
        with self._lock:
            self.default = form
            self.version += 1

    def counts(self, ids: Iterable[str]) -> dict[str, int]:
        """How many of ``ids`` are in each form setting (``both`` only when some are)."""
        out = dict.fromkeys(FORMS, 0)
        for i in ids:
            out[self[i]] = out.get(self[i], 0) + 1
        return out

    def to_dict(self) -> dict:
        with self._lock:
            return {"default": self.default, "forms": dict(self._forms), "version": self.version,
                    "seed": self.seed, "visits": dict(self.visits)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "TargetForms":
        out = cls(data.get("default", "direct"), data.get("forms") or {}, seed=data.get("seed", 0))
        out.version = int(data.get("version", out.version))
        out.visits = {k: int(v) for k, v in (data.get("visits") or {}).items()}
        return out

    def load_state(self, data: Mapping) -> None:
        """Replace this object's state in place (so every holder of the reference sees it)."""
        other = TargetForms.from_dict(data)
        with self._lock:
            self.default, self._forms, self.version = other.default, other._forms, other.version
            self.seed, self.visits = other.seed, other.visits

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TargetForms":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        return f"TargetForms(default={self.default!r}, explicit={len(self._forms)}, version={self.version})"


class ChatCollator:
    """Build a training batch from :class:`TrainRecord` objects.

    For each record: the chat messages (user turn from ``prompt``, assistant turn = the target in
    the form ``forms`` says; ``prompt_keyphrases`` is the number the prompt asks for), rendered
    with the processor's chat template, tokenized together
    with the images (each ``<|image_pad|>`` expanded to the image's patch count; image tokens are
    never truncated, so they always match the image features), right-padded.

    Returned keys: ``input_ids``, ``attention_mask``, ``labels``, and when there are images
    ``pixel_values`` and ``image_grid_thw`` (plus whatever else the processor returns, e.g.
    ``mm_token_type_ids``); ``answer_mask`` (1 on the answer line, see :meth:`answer_mask`); and
    two non-tensor keys for attribution, ``example_ids`` and ``forms`` (the form each row was
    trained in). The trainer removes these three before the model sees the batch.

    Labels equal ``input_ids`` on the assistant answer and its ``<|im_end|>``; everything up to
    and including ``<|im_start|>assistant\\n``, the newline after ``<|im_end|>``, padding and
    vision tokens are ``-100``.

    **max_length** (tokens, image tokens included; ``None``: no limit). A longer sequence loses
    prompt text, never answer or image tokens: the post text is cut from its end (its opening is
    kept), then the OCR text, then image wordings are dropped from the last, until it fits; the
    instruction, answer-format line, chat markup, image tokens and the whole answer + ``<|im_end|>``
    always stay. The ids of records cut so are added to ``truncated_ids``; a record that still
    does not fit (answer + minimal prompt over ``max_length``) is kept whole anyway and also added
    to ``overlong_ids``.

    **cache** (default on): each (chat text, image) is tokenized and label-masked once and kept,
    and each image's pixels up to ``pixel_cache_bytes`` (512 MiB: the tiny profile's images all fit;
    past it, images are processed per batch); batches are assembled from what is kept, padded as the
    processor pads. They are identical to the processor's on the whole batch (``cache=False``; a
    test compares them).
    """

    def __init__(self, processor, prompt: str | PromptTemplate = "direct", forms: TargetForms | None = None,
                 prompt_keyphrases: int = 5, max_length: int | None = None, cache: bool = True,
                 pixel_cache_bytes: int = 512 * 2**20):
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive or None, not {max_length}")
        self.processor = processor
        self.template = get_template(prompt)
        self.forms = forms if forms is not None else TargetForms()
        self.prompt_keyphrases = prompt_keyphrases
        self.max_length = max_length
        self.truncated_ids: set[str] = set()  # records whose prompt was cut to fit max_length
        self.overlong_ids: set[str] = set()  # records still over max_length (answer kept whole)
        tok = processor.tokenizer
        self.im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.header_ids = tok(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"]
        self.answer_ids = tok(ANSWER_LABEL, add_special_tokens=False)["input_ids"]
        self.vision_ids = [i for i in tok.convert_tokens_to_ids(list(VISION_TOKENS))
                           if i is not None and i != tok.unk_token_id]
        self.cache = cache
        self.load_image = load_image  # image key (a path) -> RGB image; the tiny base's pretraining renders drawings
        self.pixel_cache_bytes = pixel_cache_bytes
        self._rows: dict[tuple, dict] = {}
        self._pixels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pixel_bytes = 0
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.pad_values = {"input_ids": pad, "attention_mask": 0, "labels": IGNORE_INDEX, "answer_mask": 0}

    def render(self, record: TrainRecord, form: str, example: Example | None = None) -> str:
        """The full chat text (system, user, assistant) of one record in one form (with
        ``example`` in place of the record's own, e.g. a shortened one)."""
        messages = build_messages(example or record.example, self.template, target=record.target(form),
                                  max_keyphrases=self.prompt_keyphrases)
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def _n_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def shorten(self, record: TrainRecord, form: str, length: int) -> Example:
        """The record's example with prompt text removed until the rendered sequence fits
        ``max_length``, given its current ``length`` in tokens (image tokens included); as short
        as it gets when it cannot fit. Cuts the post text from its end, then the OCR text, then
        drops image wordings from the last (see the class docstring)."""
        tok = self.processor.tokenizer
        image_surplus = length - self._n_tokens(self.render(record, form))  # expanded image tokens
        example = record.example

        def excess(ex: Example) -> int:
            return self._n_tokens(self.render(record, form, ex)) + image_surplus - self.max_length

        need = length - self.max_length
        for name in ("text", "ocr"):
            while need > 0 and getattr(example, name).strip():
                old = getattr(example, name).strip()
                ids = tok(old, add_special_tokens=False)["input_ids"]
                cut = tok.decode(ids[:max(0, len(ids) - need)]).strip()
                example = replace(example, **{name: cut if len(cut) < len(old) else old[:-1]})  # always shorter
                need = excess(example)
        while need > 0 and example.attributes:
            example = replace(example, attributes=list(example.attributes[:-1]))
            need = excess(example)
        return example

    def mask_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Labels for a batch of full conversations: ``input_ids`` on each row's answer span
        (after the last assistant header, up to and including the next ``<|im_end|>``),
        ``-100`` elsewhere."""
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        h = len(self.header_ids)
        header = torch.tensor(self.header_ids, dtype=input_ids.dtype)
        for row in range(input_ids.shape[0]):
            ids = input_ids[row]
            starts = (ids.unfold(0, h, 1) == header).all(dim=1).nonzero() if ids.shape[0] >= h else []
            if len(starts) == 0:
                raise ValueError("no assistant header in a training sequence (was it truncated?)")
            begin = int(starts[-1]) + h
            ends = (ids[begin:] == self.im_end_id).nonzero()
            end = begin + int(ends[0]) + 1 if len(ends) else ids.shape[0]
            labels[row, begin:end] = ids[begin:end]
        labels[attention_mask == 0] = IGNORE_INDEX
        for vid in self.vision_ids:
            labels[input_ids == vid] = IGNORE_INDEX
        return labels

    def answer_mask(self, labels: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """1 on each row's answer line (from its last ``Keyphrases:`` label to the end of the
        supervised span, ``<|im_end|>`` included), 0 elsewhere: in a CoT target, the tokens after
        ``</think>``; in a direct one, the whole target."""
        mask = torch.zeros_like(labels)
        h = len(self.answer_ids)
        label = torch.tensor(self.answer_ids, dtype=input_ids.dtype)
        for row in range(labels.shape[0]):
            supervised = (labels[row] != IGNORE_INDEX).nonzero().squeeze(1)
            if len(supervised) == 0:
                continue
            ids = input_ids[row]
            hits = (ids.unfold(0, h, 1) == label).all(dim=1).nonzero().squeeze(1) if ids.shape[0] >= h else []
            hits = [int(i) for i in hits if int(i) >= int(supervised[0])]
            start = hits[-1] if hits else int(supervised[0])
            mask[row, start:int(supervised[-1]) + 1] = 1
        return mask * (labels != IGNORE_INDEX)

    def mask_context(self, batch: dict, row: int, context: str) -> None:
        """Labels ``-100`` on the tokens of ``context`` at the start of ``row``'s target (checked:
        they must decode to ``context``, i.e. it ends on a token boundary of the target)."""
        ids = self.processor.tokenizer(context, add_special_tokens=False)["input_ids"]
        supervised = (batch["labels"][row] != IGNORE_INDEX).nonzero().squeeze(1)
        start = int(supervised[0])
        span = batch["input_ids"][row, start:start + len(ids)].tolist()
        if span != list(ids):
            raise ValueError(f"context {context!r} is not the opening of its target's tokens")
        batch["labels"][row, start:start + len(ids)] = IGNORE_INDEX

    def _encode(self, texts: list[str], images: list) -> dict:
        """The processor on a whole batch (right padding): what :meth:`_batch` assembles row by row."""
        return dict(self.processor(text=texts, images=images or None, padding=True, padding_side="right",
                                   return_tensors="pt"))

    def _fill_rows(self, keys: list[tuple]) -> None:
        """Encode the (text, image path) pairs not kept yet, in one processor call, and keep each
        row's tensors (1-D: ids, attention, token types, labels, answer mask) and, within
        ``pixel_cache_bytes``, each image's pixels: a record is visited several times in a run, and
        tokenizing, masking and image processing are most of a batch's cost on the tiny profile."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if not missing:
            return
        enc = self._encode([t for t, _ in missing], [self.load_image(p) for _, p in missing if p is not None])
        labels = self.mask_labels(enc["input_ids"], enc["attention_mask"])
        answer = self.answer_mask(labels, enc["input_ids"])
        width = enc["input_ids"].shape[1]
        seq = {k: v for k, v in enc.items() if torch.is_tensor(v) and v.shape == (len(missing), width)}
        seq |= {"labels": labels, "answer_mask": answer}
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        grid = enc.get("image_grid_thw")
        offset, image = 0, 0
        for i, (key, n) in enumerate(zip(missing, lengths)):
            self._rows[key] = {k: v[i, :n].clone() for k, v in seq.items()}
            if key[1] is not None:
                patches = int(grid[image].prod())
                if key[1] not in self._pixels and self._pixel_bytes < self.pixel_cache_bytes:
                    pixels = enc["pixel_values"][offset:offset + patches].clone()
                    self._pixels[key[1]] = (pixels, grid[image].clone())
                    self._pixel_bytes += pixels.numel() * pixels.element_size()
                offset, image = offset + patches, image + 1

    def _batch(self, texts: list[str], image_paths: list) -> dict:
        """A right-padded batch equal to :meth:`_encode`'s plus ``labels`` and ``answer_mask``
        (a test compares them), assembled from kept rows and pixels (:meth:`_fill_rows`)."""
        if not self.cache:
            images = [self.load_image(p) for p in image_paths if p is not None]
            batch = self._encode(texts, images)
            batch["labels"] = self.mask_labels(batch["input_ids"], batch["attention_mask"])
            batch["answer_mask"] = self.answer_mask(batch["labels"], batch["input_ids"])
            return batch
        keys = [(t, None if p is None else str(p)) for t, p in zip(texts, image_paths)]
        self._fill_rows(keys)
        rows = [self._rows[k] for k in keys]
        width = max(len(r["input_ids"]) for r in rows)
        batch = {}
        for name in rows[0]:
            out = torch.full((len(rows), width), self.pad_values.get(name, 0), dtype=rows[0][name].dtype)
            for i, r in enumerate(rows):
                out[i, :len(r[name])] = r[name]
            batch[name] = out
        paths = [p for _, p in keys if p is not None]
        if paths:
            if all(p in self._pixels for p in paths):
                batch["pixel_values"] = torch.cat([self._pixels[p][0] for p in paths])
                batch["image_grid_thw"] = torch.stack([self._pixels[p][1] for p in paths])
            else:
                batch |= dict(self.processor.image_processor(images=[self.load_image(p) for p in paths],
                                                             return_tensors="pt"))
        return batch

    def settings_for(self, records: list[TrainRecord], step: int | None = None) -> list[str]:
        """The form each record of a batch trains in now: a form table with a batch-level plan
        (``plan(ids, step)``, e.g. a control that replays another run's CoT exposure step by step)
        decides for the batch; otherwise each record's own setting (``resolve``: ``both`` draws)."""
        plan = getattr(self.forms, "plan", None)
        if plan is not None:
            return list(plan([r.id for r in records], step))
        return [self.forms.resolve(r.id) for r in records]

    def __call__(self, records: list[TrainRecord], step: int | None = None) -> dict:
        forms = [r.used_form(f) for r, f in zip(records, self.settings_for(records, step))]
        texts = [self.render(r, f) for r, f in zip(records, forms)]
        paths = [r.example.image if self.template.wants_image(r.example) else None for r in records]
        batch = self._batch(texts, paths)
        if self.max_length is not None:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            cut = [i for i, n in enumerate(lengths) if n > self.max_length]
            for i in cut:
                texts[i] = self.render(records[i], forms[i], self.shorten(records[i], forms[i], int(lengths[i])))
                self.truncated_ids.add(records[i].id)
            if cut:
                batch = self._batch(texts, paths)
                lengths = batch["attention_mask"].sum(dim=1).tolist()
                self.overlong_ids.update(records[i].id for i in cut if lengths[i] > self.max_length)
        for i, (r, f) in enumerate(zip(records, forms)):
            if r.answer_only and f == "cot":  # the rationale is context: only the answer line trains
                batch["labels"][i, batch["answer_mask"][i] == 0] = IGNORE_INDEX
            if r.context and f == "cot":  # the target's opening is context: the rest trains
                self.mask_context(batch, i, r.context)
        batch["example_ids"] = [r.id for r in records]
        batch["forms"] = forms
        batch["image_paths"] = [str(p) for p in paths if p is not None]  # keys of the images' features
        return batch
