"""Multi-process (DDP) helpers: which device a rank loads onto, who is the main process, and the
effective batch size. ``train_sft`` has no distributed code path of its own: launched with
``accelerate launch`` or ``torchrun``, the transformers ``Trainer`` reads the launcher's
environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), wraps the
model in ``DistributedDataParallel``, shards the DataLoader across ranks and averages gradients.
What this module adds is what happens *before* the Trainer exists (placing each rank's model on
its own GPU in :func:`mmkp_helpers.modeling.load_vlm`) and a few read-outs. See docs/multi_gpu.md.

Nothing here needs ``torch.distributed`` to be initialised: outside a launcher every function
answers as a single process (rank 0 of 1).
"""
from __future__ import annotations

import os

import torch


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, set by torchrun/accelerate; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def global_rank() -> int:
    """This process's index over all machines (``RANK``; 0 outside a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """How many processes train together (``WORLD_SIZE``; 1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0 of the whole run: the one process that should write shared files."""
    return global_rank() == 0


def cuda_device_index(device: str | None = None) -> int:
    """The CUDA device this process should put its model on.

    ``device="cuda:N"`` means N. Otherwise ``LOCAL_RANK`` modulo the number of visible GPUs, the
    same rule accelerate's ``PartialState`` uses for ``accelerator.device``, so the model and the
    Trainer's batches end up on the same GPU (also when a scheduler hands each process a single
    visible GPU through ``CUDA_VISIBLE_DEVICES``: then every rank uses its ``cuda:0``)."""
    if device and ":" in device:
        return int(device.split(":", 1)[1])
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return local_rank() % count if count else 0


def device_map(on_gpu: bool, device: str | None = None) -> dict | None:
    """``from_pretrained``'s ``device_map`` for this process: the whole model on this rank's GPU
    (``{"": index}``), or ``None`` on the CPU (load as usual; nothing changes there)."""
    return {"": cuda_device_index(device)} if on_gpu else None


def effective_batch_size(per_device_batch: int, grad_accum: int = 1, n_processes: int | None = None) -> int:
    """Examples per optimizer step: per-device batch x gradient accumulation x processes."""
    return int(per_device_batch) * int(grad_accum) * int(n_processes if n_processes is not None else world_size())


def backend() -> str | None:
    """The ``torch.distributed`` backend in use (``"nccl"``, ``"gloo"``...), or ``None`` when no
    process group is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return str(torch.distributed.get_backend())
    return None


def gather_ledger(ledger):
    """A :class:`~mmkp_helpers.training.LossLedger` with every rank's records.

    Under DDP each rank's ledger holds only the examples *that rank* trained on (its shard of
    each step). A callback that decides from per-example losses (Dynamic CoT) must see all of
    them, and decide the same on every rank: call this on **every** rank (it is a collective)
    and decide from the result. Records are merged in (step, rank) order. Outside a process group
    the ledger is returned unchanged."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return ledger
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, ledger.to_dict())
    merged = type(ledger)()
    rows = [(int(h[0]), rank, i, h) for rank, part in enumerate(parts) for i, h in enumerate(part["history"])]
    merged.load_state({"history": [h for *_, h in sorted(rows, key=lambda r: r[:3])], "latest": {}})
    for _, example_id, form, loss, _answer in merged.history:  # latest = the last record of each (id, form)
        merged.latest.setdefault(example_id, {})[form] = loss
    return merged
