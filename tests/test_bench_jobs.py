"""The sweeps' job runner: jobs run in spawned workers that start clean (a worker forked from a
parent that had run torch hung on the parent's OpenMP pool), and a failed job does not stop the others."""


def _torch_loaded(job):
    import sys

    if job == "fail":
        raise ValueError("a failing job")
    return job, "torch" in sys.modules


def test_workers_are_spawned_clean_and_failures_reported(capsys):
    import torch

    from mmkp_helpers.bench import run_jobs

    torch.ones(64, 64) @ torch.ones(64, 64)  # the parent has run torch, as after pretraining the tiny base
    out = run_jobs(_torch_loaded, ["a", "fail", "b"])
    assert sorted(out) == [("a", False), ("b", False)]
    assert "a failing job" in capsys.readouterr().err
