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


@pytest.mark.slow
def test_dynamic_run_and_its_control_side_by_side(tiny_model_dir, posts, tmp_path):
    """experiment.dynamic_with_replay: the Dynamic CoT run and its replay control trained side by side
    (the control reading the run's exposure as it is written) come out as the two trained one after
    another at the workers' thread count (one each here): the same losses, decisions, CoT
    example-visits at every step and adapter weights. (Across thread counts this small model's
    losses can differ in the 7th digit after the decision; the notebooks' runs agreed to the last
    digit: results/bench/cot_seeds_seed0_threads1_cpu2.jsonl.)"""
    from mmkp_helpers.dynamic_cot import PolicySettings

    settings = SFTSettings(learning_rate=3e-3, max_steps=8, batch_size=4, logging_steps=1, save_steps=100, warmup=0,
                           lr_scheduler="constant", seed=0, progress=False)
    rationales = {ex.id: f"the text names {ex.keyphrases[0]}" for ex in posts[:6]}  # two posts stay direct
    policy = PolicySettings(variant="benefit", warmup_epochs=2.0, margin=0.0)
    out, threads = {}, torch.get_num_threads()
    for workers in (2, 1):
        folder = tmp_path / f"workers{workers}"
        torch.set_num_threads(max(1, threads // 2) if workers == 1 else threads)  # the workers' count
        out[workers] = experiment.dynamic_with_replay(
            str(tiny_model_dir), posts, posts[:2], settings, {"r": 8, "alpha": 16, "dropout": 0.0}, folder / "dynamic",
            folder / "control", rationales, policy, seed=0, workers=workers, quantize_4bit=True, verbose=False)
    torch.set_num_threads(threads)
    (r2, p2, l2, c2, f2, cl2), (r1, p1, l1, c1, f1, cl1) = out[2], out[1]
    assert r2.train_losses == r1.train_losses and c2.train_losses == c1.train_losses
    assert [d.step for d in p2.log] == [d.step for d in p1.log] == [4] and p2.cot_share() == p1.cot_share()
    assert l2.history == l1.history and cl2.history == cl1.history
    assert cl2.exposure() == l2.exposure() == f1.schedule == f2.schedule and f2.short == f1.short == 0
    assert sum(l2.exposure().values()) > 0
    for run in ("dynamic", "control"):
        a = load_file(tmp_path / "workers2" / run / "adapter" / "adapter_model.safetensors")
        b = load_file(tmp_path / "workers1" / run / "adapter" / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "workers2" / "control" / "reference_exposure.txt").read_text().splitlines()
    assert lines[-1] == "end" and [int(x.split()[0]) for x in lines[:-1]] == list(range(8))


def test_a_live_schedule_waits_for_the_step_and_stops_with_its_reference(tmp_path):
    """dynamic_cot.LiveSchedule reads what an ExposureFeed writes: a step not written yet is waited
    for; after the end a step without visits is 0; a failed reference stops the reader."""
    import threading
    import time
    from types import SimpleNamespace

    from mmkp_helpers.dynamic_cot import ExposureFeed, LiveSchedule
    from mmkp_helpers.training import LossLedger

    ledger, path = LossLedger(), tmp_path / "feed.txt"
    feed = ExposureFeed(ledger, path)

    def train():
        for step, forms in enumerate((["cot", "direct"], ["direct", "direct"], ["cot", "cot"])):
            time.sleep(0.05)
            ledger.record(step, ["a", "b"], forms, [1.0, 1.0])
            feed.on_step_end(None, SimpleNamespace(global_step=step + 1), None)
        feed.on_train_end(None, None, None)

    thread = threading.Thread(target=train)
    thread.start()
    live = LiveSchedule(path)
    assert [live.get(s) for s in (2, 0, 1, 5)] == [2, 1, 0, 0]  # step 2 is waited for; 5 comes after the end
    thread.join()
    assert dict(live) == {0: 1, 1: 0, 2: 2} == {s: ledger.exposure().get(s, 0) for s in range(3)}
    ExposureFeed(LossLedger(), path)
    ExposureFeed.close(path, failed=True)
    with pytest.raises(RuntimeError, match="stopped with an error"):
        LiveSchedule(path).get(0)
    with pytest.raises(TimeoutError):
        LiveSchedule(tmp_path / "never.txt", timeout=0.05).get(0)
