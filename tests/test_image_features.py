"""The run's image-feature cache: the frozen vision tower's output kept per image gives the same
features, the same losses and the same adapter as encoding every image at every visit."""
from __future__ import annotations

import pytest
import torch

from mmkp_helpers import image_features
from mmkp_helpers.collate import ChatCollator, make_records
from mmkp_helpers.data import Example
from mmkp_helpers.training import SFTSettings, train_sft

COLOURS = [(220, 30, 30), (30, 30, 220), (30, 170, 30), (230, 220, 40), (200, 120, 20), (90, 20, 140)]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Example]:
    """Twelve posts over six images of two sizes (so batches mix image grids and repeat images)."""
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("feature_images")
    out = []
    for i in range(12):
        size = (56, 56) if i % 2 else (84, 56)
        path = folder / f"img{i % 6}-{size[0]}.png"
        if not path.exists():
            img = Image.new("RGB", size, COLOURS[i % 6])
            ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=COLOURS[(i + 3) % 6])
            img.save(path)
        out.append(Example(f"ex{i}", f"post {i} about a walk", [f"walk {i % 3}", "sky"], image=str(path)))
    return out


def load(tiny_model_dir, seed=0):
    from mmkp_helpers.modeling import load_vlm

    torch.manual_seed(seed)
    return load_vlm(str(tiny_model_dir), quantize_4bit=True, lora={"r": 8, "alpha": 16, "dropout": 0.0},
                    verbose=False)


@pytest.mark.slow
def test_an_images_features_do_not_depend_on_its_batch(tiny_model_dir, examples):
    model, processor = load(tiny_model_dir)
    assert image_features.applies(model)
    batch = ChatCollator(processor)(make_records(examples[:8]))
    assert batch["image_paths"] == [ex.image for ex in examples[:8]]
    body = image_features._vision_body(model)
    with torch.no_grad():
        together = body.get_image_features(batch["pixel_values"], batch["image_grid_thw"], return_dict=True).pooler_output
    cache = image_features.ImageFeatures(model)
    swapped = cache.swap(dict(batch), batch["image_paths"])
    assert "pixel_values" not in swapped and cache.encoded == 6  # six distinct images among the eight
    kept = swapped["mm_encoder_outputs"]["image"].pooler_output
    assert all(torch.equal(a, b) for a, b in zip(together, kept))
    again = cache.swap(dict(batch), batch["image_paths"])
    assert cache.encoded == 6 and cache.served == 16  # the second batch was served from the cache
    assert all(a is b for a, b in zip(kept, again["mm_encoder_outputs"]["image"].pooler_output))
    with pytest.raises(ValueError, match="image paths"):
        cache.swap(dict(batch), batch["image_paths"][:3])


def _train_both(tiny_model_dir, examples, tmp_path):
    settings = SFTSettings(learning_rate=3e-3, max_steps=6, batch_size=4, logging_steps=1, save_steps=100, warmup=0,
                           lr_scheduler="constant", seed=0, progress=False)
    runs = {}
    for cached in (True, False):
        model, processor = load(tiny_model_dir)
        res = train_sft(model, processor, make_records(examples), make_records(examples[:4]), settings=settings,
                        output_dir=tmp_path / str(cached), cache_image_features=cached)
        lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
        runs[cached] = ([loss for _, loss in res.train_losses], res.eval_loss, lora)
    return runs[True], runs[False]


@pytest.mark.slow
def test_training_with_the_cache_equals_training_without(tiny_model_dir, examples, tmp_path):
    """Images of one size (as the benchmark's, 64 patches each), same seed, same records: the same
    loss at every step, the same valid loss and the same LoRA weights, bit for bit."""
    one_size = [ex for ex in examples if ex.image.endswith("-56.png")]
    (losses_a, eval_a, lora_a), (losses_b, eval_b, lora_b) = _train_both(tiny_model_dir, one_size, tmp_path)
    assert losses_a == losses_b and eval_a == eval_b
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[n], lora_b[n]) for n in lora_a)


@pytest.mark.slow
def test_with_images_of_several_sizes_the_cache_agrees_to_float_rounding(tiny_model_dir, examples, tmp_path):
    """Images of two sizes: a batch's matrix products then change shape with its other images, so a
    kept feature and one encoded again may differ in the last bits; the losses agree to 1e-5."""
    (losses_a, eval_a, _), (losses_b, eval_b, _) = _train_both(tiny_model_dir, examples, tmp_path)
    assert losses_a == pytest.approx(losses_b, rel=1e-5) and eval_a == pytest.approx(eval_b, rel=1e-5)


def test_the_cache_is_off_when_the_tower_trains(tiny_model_dir):
    model, _ = load(tiny_model_dir)
    body = image_features._vision_body(model)
    next(body.visual.parameters()).requires_grad_(True)
    assert not image_features.applies(model)
