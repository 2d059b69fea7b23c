"""A post's picture: what to draw (``meta["drawing"]``), the PIL image, and a plain caption of it.

The picture is coarse on purpose: a tiny model sees it as a 4 x 4 grid of 28-pixel tokens.

- The *background* fills the image: a scene's colour, or grey (no scene).
- An *image* post has one large shape in the centre (about the middle 2 x 2 tokens), a square
  or a circle (the form carries no meaning), painted in the object's colour.
- A *composition* post has two shapes side by side (left and right, each over about 2 x 2 tokens
  of its half), each painted in a primary.
- A *combine* post (a study's kind) has one shape in the centre, as an image post, painted in the
  primary that mixes with the one its text names.
- A *text* post has nothing but a grey background.
"""
from __future__ import annotations

import random
from typing import Sequence

from .vocabulary import COLOUR_RGB, NO_SCENE, SCENES, SIDES

#: Centre of each shape as a share of the width (the height's centre is 0.5), and its size as a
#: share of the picture's side (a circle covers less of its box, so it gets a larger one).
SHAPE_CENTRES = {"left": 0.27, "right": 0.73, "centre": 0.5}
SHAPE_SIZES = {("square", False): 0.36, ("circle", False): 0.42, ("square", True): 0.55, ("circle", True): 0.64}


def _jitter(rng: random.Random, rgb: Sequence[int], amount: int) -> list[int]:
    return [min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb]


def draw_plan(rng: random.Random, truth: dict, size: tuple[int, int]) -> dict:
    """What to draw for a post's ``truth``: the background (with a little jitter) and its shapes
    (``shapes``: side, form, colour, fill, box): one in the centre for an image post, two side by
    side for a composition post, none for a text post."""
    width, height = size
    background = SCENES[truth["scene"]][0] if truth.get("scene") else NO_SCENE[0]
    drawing = {"size": [width, height], "background": _jitter(rng, background, 8), "shapes": []}
    single = truth.get("needs") in ("image", "combine")
    sides = ("centre",) if single else SIDES
    colours = ([truth["primaries"][1]] if truth.get("needs") == "combine" else [truth["colour"]] if single
               else (truth.get("primaries") or ()))
    for side, form, colour in zip(sides, truth.get("shapes") or (), colours):
        side_px = round(SHAPE_SIZES[form, single] * min(width, height)) + rng.randint(-2, 2)
        cx = round(SHAPE_CENTRES[side] * width) + rng.randint(-2, 2)
        cy = height // 2 + rng.randint(-3, 3)
        left, top = cx - side_px // 2, cy - side_px // 2
        drawing["shapes"].append({"side": side, "form": form, "colour": colour,
                                  "fill": _jitter(rng, COLOUR_RGB[colour], 12),
                                  "box": [left, top, left + side_px, top + side_px]})
    return drawing


def render_image(drawing: dict):
    """The PIL image of a post's ``meta["drawing"]``."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", tuple(drawing["size"]), tuple(drawing["background"]))
    draw = ImageDraw.Draw(img)
    for shape in drawing.get("shapes") or ():
        box, fill = tuple(shape["box"]), tuple(shape["fill"])
        if shape["form"] == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.ellipse(box, fill=fill)
    return img


def looks(scene: str | None) -> str:
    """How a background is described: the scene's colour words, or ``grey``."""
    return SCENES[scene][1] if scene else NO_SCENE[1]


def caption(truth: dict) -> str:
    """A plain description of the picture, the kind a captioning dataset has (the tiny base's
    pretraining reads it; no keyphrase rule is in it: no scene name, no mixed colour):
    ``a red square on the left and a blue circle on the right, on a dark blue background.``,
    ``a green circle in the centre, on a teal background.`` or ``a plain grey background.``"""
    if truth.get("needs") in ("image", "combine"):
        painted = truth["primaries"][1] if truth.get("needs") == "combine" else truth["colour"]
        shapes = [f"a {painted} {truth['shapes'][0]} in the centre"]
    else:
        shapes = [f"a {c} {f} on the {s}" for s, f, c in zip(SIDES, truth.get("shapes") or (), truth.get("primaries") or ())]
    if not shapes:
        return f"a plain {looks(truth.get('scene'))} background."
    return f"{' and '.join(shapes)}, on a {looks(truth.get('scene'))} background."
