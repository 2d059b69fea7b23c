"""experiment.train_runs: runs trained side by side in worker processes (one torch thread each)
come out as the same runs trained one after another in this process."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mmkp_helpers import experiment
from mmkp_helpers.data import Example
from mmkp_helpers.training import SFTSettings


@pytest.fixture(scope="module")
def posts(tmp_path_factory) -> list[Example]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("run_images")
    out = []
    for i, (word, colour) in enumerate([("harbour", (220, 30, 30)), ("garden", (30, 30, 220)), ("concert", (30, 170, 30)),
                                        ("football", (230, 220, 40))] * 2):
        path = folder / f"img{i % 4}.png"
        if not path.exists():
            Image.new("RGB", (56, 56), colour).save(path)
        out.append(Example(f"p{i}", f"post {i} about the {word}", [word, f"colour {i % 4}"], image=str(path)))
    return out


@pytest.mark.slow
def test_side_by_side_equals_one_after_another(tiny_model_dir, posts, tmp_path):
    settings = SFTSettings(learning_rate=3e-3, max_steps=4, batch_size=4, logging_steps=1, save_steps=100, warmup=0,
                           lr_scheduler="constant", seed=0, progress=False)
    rationales = {ex.id: f"the text names {ex.keyphrases[0]}" for ex in posts}
    lora = {"r": 8, "alpha": 16, "dropout": 0.0}
    threads = torch.get_num_threads()

    def runs(folder):
        return {name: dict(model_path=str(tiny_model_dir), train=posts, valid=posts[:2], settings=settings, lora=lora,
                           output_dir=folder / name, rationales=r, seed=0, verbose=False, quantize_4bit=True)
                for name, r in (("direct", None), ("cot", rationales))}

    apart = experiment.train_runs(runs(tmp_path / "apart"), workers=2)
    together = experiment.train_runs(runs(tmp_path / "one_by_one"), workers=1)
    assert apart.keys() == together.keys() == {"direct", "cot"}
    for name in apart:
        assert apart[name].train_losses == together[name].train_losses and apart[name].eval_loss == together[name].eval_loss
        a = load_file(tmp_path / "apart" / name / "adapter" / "adapter_model.safetensors")
        b = load_file(tmp_path / "one_by_one" / name / "adapter" / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert (tmp_path / "apart" / name / "train.log").is_file()  # a worker's log goes to its run folder
    assert apart["cot"].form_counts["cot"] > 0 and apart["direct"].form_counts["cot"] == 0
    assert torch.get_num_threads() == threads  # the workers set their own threads, not this process's
