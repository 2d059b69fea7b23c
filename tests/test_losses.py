"""The fused linear cross-entropy equals torch's cross-entropy, in value and in gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmkp_helpers.losses import fused_parts, linear_cross_entropy


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("weight_trains", [False, True])
def test_values_and_gradients_match_cross_entropy(chunk, weight_trains):
    torch.manual_seed(0)
    hidden = torch.randn(7, 16, dtype=torch.float64).float().requires_grad_()
    weight = (torch.randn(50, 16) * 0.5).requires_grad_(weight_trains)
    targets = torch.randint(0, 50, (7,))
    ours = linear_cross_entropy(hidden, weight, targets, chunk=chunk)
    ref_h = hidden.detach().clone().requires_grad_()
    ref_w = weight.detach().clone().requires_grad_(weight_trains)
    ref = F.cross_entropy(ref_h @ ref_w.T, targets, reduction="none")
    assert torch.allclose(ours, ref, atol=1e-5)
    scale = torch.rand(7) if not weight_trains else torch.full((7,), 0.25)  # a per-row scale reaches hidden
    (ours * scale).sum().backward()
    (ref * scale).sum().backward()
    assert torch.allclose(hidden.grad, ref_h.grad, atol=1e-5)
    if weight_trains:
        assert torch.allclose(weight.grad, ref_w.grad, atol=1e-5)
    else:
        assert weight.grad is None


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes"):
        linear_cross_entropy(torch.zeros(3, 4), torch.zeros(10, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(torch.zeros(3, 4), torch.zeros(10, 4), torch.zeros(2, dtype=torch.long))


def test_only_qwen_vl_models_take_the_fused_path():
    assert fused_parts(torch.nn.Linear(3, 3)) is None


def test_trainer_gradients_are_those_of_the_stock_loss(tiny_model_dir, tmp_path):
    """One training batch through the trainer with and without the fused loss: the same loss and
    the same LoRA gradients (the fused path never builds the logits' gradient)."""
    from PIL import Image

    from mmkp_helpers.collate import ChatCollator, make_records
    from mmkp_helpers.data import Example
    from mmkp_helpers.modeling import load_vlm
    from mmkp_helpers.training import KeyphraseTrainer, RecordDataset, SFTSettings, training_arguments

    Image.new("RGB", (56, 56), (200, 30, 30)).save(tmp_path / "red.png")
    examples = [Example(f"e{i}", f"post {i} about a red car", ["car", "red car"][: 1 + i % 2],
                        image=str(tmp_path / "red.png")) for i in range(4)]
    torch.manual_seed(0)
    model, processor = load_vlm(str(tiny_model_dir), lora={"r": 8, "alpha": 16, "dropout": 0.0}, verbose=False)
    assert fused_parts(model) is not None
    collator = ChatCollator(processor)
    batch = collator(make_records(examples))
    args = training_arguments(SFTSettings(progress=False), tmp_path / "ckpt", has_eval=False)
    grads = {}
    for fused in (True, False):
        trainer = KeyphraseTrainer(model=model, args=args, collator=collator, fused_loss=fused,
                                   train_dataset=RecordDataset(make_records(examples)))
        model.zero_grad()
        model.train()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads[fused] = (float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[True][0] == pytest.approx(grads[False][0], abs=1e-5)
    assert grads[True][1].keys() == grads[False][1].keys() and grads[True][1]
    for name, g in grads[True][1].items():
        assert torch.allclose(g, grads[False][1][name], atol=1e-5, rtol=1e-4), name
