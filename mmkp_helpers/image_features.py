"""The frozen vision tower's output per image, computed once per training run.

In every recipe here the vision tower is frozen and carries no adapter (LoRA targets the language
model's projections only), so an image's features are the same at every visit of its post: a run
of 800 steps over 1,442 posts otherwise encodes each image four to five times, and on the tiny
profile the tower is about a tenth of a step. :class:`ImageFeatures` keeps each image's features
(keyed by its path, as the collator gives them in ``image_paths``) and passes them to the model as
``mm_encoder_outputs``, the transformers 5 argument for precomputed encoder outputs, instead of
``pixel_values``. Images not kept yet are encoded together in one call of the model's own
``get_image_features``.

The values are those the model computes itself. When every image has the same size (the tiny
profile's benchmark: 64 patches each) a run with the cache trains to the same losses and weights,
bit for bit, as one without it (tests/test_image_features.py; the committed sweep's seed-0 rows
were reproduced to the last digit with it). With images of several sizes a batch's matrix
products change shape with its other images, so a kept feature may differ from one encoded again
in the last bits (the losses agree to 1e-5, same test). The cache lives
for one run (one :class:`~mmkp_helpers.training.SFTTrainer`) and within ``max_bytes``; past that,
images are encoded at each visit as before. It is off when the tower has a trainable parameter or
the model's forward does not take ``mm_encoder_outputs``."""
from __future__ import annotations

import inspect
from typing import Sequence

import torch

MAX_BYTES = 512 * 2**20


def _vision_body(model):
    """The module with ``get_image_features`` and a ``visual`` tower under ``model`` (peft and
    accelerate wrappers unwrapped), or None."""
    while hasattr(model, "module") and not hasattr(model, "get_base_model"):
        model = model.module  # DistributedDataParallel
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, "model", None)
    if body is None or not hasattr(body, "get_image_features") or not hasattr(body, "visual"):
        return None
    return body


def applies(model) -> bool:
    """True when the vision tower under ``model`` is frozen and both the model's forward and its
    body's take ``mm_encoder_outputs``."""
    body = _vision_body(model)
    if body is None or any(p.requires_grad for p in body.visual.parameters()):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return all("mm_encoder_outputs" in inspect.signature(m.forward).parameters for m in (body, base))


class ImageFeatures:
    """Per-image features of one run's frozen vision tower (see the module's text)."""

    def __init__(self, model, max_bytes: int = MAX_BYTES):
        self.body = _vision_body(model)
        self.max_bytes = int(max_bytes)
        self.kept: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.encoded = 0  # images run through the tower (a measure of the work the cache saved)
        self.served = 0   # images served in batches

    def swap(self, inputs: dict, paths: Sequence[str]) -> dict:
        """``inputs`` with ``pixel_values`` replaced by ``mm_encoder_outputs`` (a new dict; the
        image grid stays, it places the image tokens). ``paths``: the batch's image paths, in the
        order of its images."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        pixels, grid = inputs["pixel_values"], inputs["image_grid_thw"]
        if len(paths) != len(grid):
            raise ValueError(f"{len(paths)} image paths for {len(grid)} images in the batch")
        sizes = grid.prod(-1).tolist()
        starts = [0]
        for n in sizes:
            starts.append(starts[-1] + n)
        found = {p: self.kept[p] for p in paths if p in self.kept}
        missing = [i for i, p in enumerate(paths) if p not in found and paths.index(p) == i]
        if missing:
            chunk = torch.cat([pixels[starts[i]:starts[i + 1]] for i in missing])
            with torch.no_grad():
                out = self.body.get_image_features(chunk, grid[missing], return_dict=True).pooler_output
            self.encoded += len(missing)
            for i, features in zip(missing, out):
                found[paths[i]] = features
                size = features.numel() * features.element_size()
                if self.bytes + size <= self.max_bytes:
                    self.kept[paths[i]] = features
                    self.bytes += size
        self.served += len(paths)
        swapped = {k: v for k, v in inputs.items() if k != "pixel_values"}
        swapped["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(
            pooler_output=tuple(found[p] for p in paths))}
        return swapped
