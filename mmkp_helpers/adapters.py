"""LoRA adapters after training: what base they need, loading them back, merging them.

- :func:`write_training_record` (called by :func:`mmkp_helpers.training.train_sft` when it saves
  the adapter) writes ``mmkp_training.json`` beside peft's ``adapter_config.json``: the base
  model, whether it was loaded in 4-bit NF4, and the dtype it computed in.
- :func:`load_adapter` loads the base the adapter was trained on, **the way it was trained**
  (4-bit when the record says so, unless ``quantize_4bit`` is given), and attaches the adapter.
  ``adapter`` is a local folder or a Hugging Face Hub id (downloaded with
  ``huggingface_hub.snapshot_download``; with ``HF_HUB_OFFLINE=1`` only a cached copy works, and
  a missing one is a clear error).
- :func:`merge_adapter` writes a plain model + processor folder (no peft needed) that
  :func:`mmkp_helpers.modeling.load_vlm` loads. The base is loaded in bf16 (GPU) or float32
  (CPU), never merged into NF4 (re-quantizing the merged weights would be lossy). For an adapter
  trained on a 4-bit base the merged weights are the **dequantized NF4 base + the LoRA delta**:
  what the adapter was trained against (and what base + adapter computes), not the original
  full-precision base + delta.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .modeling import load_processor, load_vlm, quantization_config

TRAINING_RECORD = "mmkp_training.json"
MERGE_RECORD = "mmkp_merged.json"


def adapter_base(adapter_dir: str | os.PathLike) -> str | None:
    """The base model an adapter was trained on (from peft's ``adapter_config.json``)."""
    cfg = Path(adapter_dir) / "adapter_config.json"
    return json.loads(cfg.read_text()).get("base_model_name_or_path") if cfg.exists() else None


def attach_adapter(model, adapter_dir: str | os.PathLike, trainable: bool = False):
    """Put a saved LoRA adapter on an already loaded base model (``PeftModel.from_pretrained``)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def base_precision(model) -> dict:
    """How a (peft-wrapped) model's base was loaded: ``{"quantize_4bit", "compute_dtype"}``
    (``compute_dtype`` as a string such as ``"torch.float32"``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    qc = getattr(getattr(base, "config", None), "quantization_config", None)
    if isinstance(qc, dict):
        four_bit, dtype = bool(qc.get("load_in_4bit")), qc.get("bnb_4bit_compute_dtype")
    else:
        four_bit = bool(getattr(qc, "load_in_4bit", False)) or bool(getattr(base, "is_loaded_in_4bit", False))
        dtype = getattr(qc, "bnb_4bit_compute_dtype", None) if qc is not None else None
    if dtype is None:
        dtype = next((p.dtype for p in base.parameters() if p.is_floating_point()), None)
    if isinstance(dtype, str) and not dtype.startswith("torch."):
        dtype = f"torch.{dtype}"
    return {"quantize_4bit": four_bit, "compute_dtype": None if dtype is None else str(dtype)}


def write_training_record(model, adapter_dir: str | os.PathLike, **extra) -> Path:
    """Write ``mmkp_training.json`` into ``adapter_dir``: the base (as peft recorded it), its
    precision (:func:`base_precision`) and anything in ``extra``."""
    path = Path(adapter_dir) / TRAINING_RECORD
    record = {"base": adapter_base(adapter_dir), **base_precision(model), **extra}
    path.write_text(json.dumps(record, indent=2))
    return path


def training_record(adapter_dir: str | os.PathLike) -> dict | None:
    """What :func:`write_training_record` wrote (``None`` for an adapter saved without it)."""
    path = Path(adapter_dir) / TRAINING_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def resolve_adapter(adapter: str | os.PathLike) -> Path:
    """A local adapter folder as it is; a Hub id (``owner/name``) downloaded (or taken from the
    cache) with ``huggingface_hub.snapshot_download``. Offline (``HF_HUB_OFFLINE=1``) an id that
    is not cached is an ``OSError`` that says so."""
    path = Path(adapter).expanduser()
    if path.is_dir():
        if not (path / "adapter_config.json").exists():
            raise FileNotFoundError(f"{path} has no adapter_config.json: not a saved LoRA adapter")
        return path
    text = str(adapter)
    if text.startswith((".", "/", "~")) or text.count("/") != 1 or os.sep == "\\" and "\\" in text:
        raise FileNotFoundError(f"no adapter folder {text!r} (and it is not a Hub id such as 'owner/name')")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=text))
    except Exception as error:  # noqa: BLE001 - the hub raises many kinds; all mean "not available"
        if _offline():
            raise OSError(f"adapter {text!r} is not a local folder and is not in the Hugging Face cache; "
                          f"HF_HUB_OFFLINE=1 forbids downloading it. Unset HF_HUB_OFFLINE (online) to "
                          f"download it once, or pass a local adapter folder.") from error
        raise OSError(f"could not download adapter {text!r} from the Hugging Face Hub: {error}") from error


def load_adapter(adapter: str | os.PathLike, base: str | None = None, quantize_4bit: bool | None = None,
                 trainable: bool = False, **load_kwargs):
    """Load the base model (the one recorded in the adapter unless ``base`` is given) the way
    training did, attach the adapter, and return ``(model, processor)`` ready for
    :func:`mmkp_helpers.inference.generate`.

    ``adapter``: a local folder or a Hub id (see :func:`resolve_adapter`). ``quantize_4bit=None``
    follows the adapter's ``mmkp_training.json`` (4-bit NF4 when it was trained on a 4-bit base;
    full precision for an adapter without the record). ``load_kwargs`` go to
    :func:`mmkp_helpers.modeling.load_vlm`."""
    folder = resolve_adapter(adapter)
    record = training_record(folder) or {}
    base = base or adapter_base(folder)
    if base is None:
        raise ValueError(f"{folder} does not record its base model: pass base=")
    if quantize_4bit is None:
        quantize_4bit = bool(record.get("quantize_4bit", False))
    load_kwargs.setdefault("verbose", False)
    model, processor = load_vlm(base, quantize_4bit=quantize_4bit, lora=None, **load_kwargs)
    return attach_adapter(model, folder, trainable=trainable), processor


def merge_adapter(adapter: str | os.PathLike, out_dir: str | os.PathLike, base: str | None = None,
                  from_4bit: bool | None = None, dtype: torch.dtype | None = None, device: str | None = None) -> Path:
    """Merge a LoRA adapter into its base and save model + processor to ``out_dir`` (a folder
    :func:`mmkp_helpers.modeling.load_vlm` loads like any other; peft is not needed to use it).

    - ``from_4bit=None`` follows the adapter's ``mmkp_training.json``. For a 4-bit-trained
      adapter the base is loaded in NF4 as in training, then dequantized to ``dtype`` and the
      LoRA delta added: the merged weights are the dequantized base + delta (never re-quantized).
    - ``dtype``: the merged weights' dtype; default bf16 on a GPU, float32 on the CPU.
    Returns ``out_dir``; a ``mmkp_merged.json`` there records the adapter, base and precision."""
    from transformers import AutoModelForImageTextToText

    folder = resolve_adapter(adapter)
    record = training_record(folder) or {}
    base = base or adapter_base(folder)
    if base is None:
        raise ValueError(f"{folder} does not record its base model: pass base=")
    from_4bit = bool(record.get("quantize_4bit", False)) if from_4bit is None else from_4bit
    on_gpu = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
    device_map = (device if device and ":" in device else "cuda:0") if on_gpu else "cpu"
    if from_4bit:
        model = AutoModelForImageTextToText.from_pretrained(
            base, quantization_config=quantization_config(on_gpu), dtype=dtype, device_map=device_map)
        model = model.dequantize(dtype=dtype)
    else:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype, device_map=device_map)
    model = model.to(dtype)
    merged = attach_adapter(model, folder).merge_and_unload()
    if getattr(merged.config, "quantization_config", None) is not None:
        del merged.config.quantization_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    load_processor(base).save_pretrained(out_dir)
    (out_dir / MERGE_RECORD).write_text(json.dumps(
        {"adapter": str(adapter), "base": base, "from_4bit": from_4bit, "dtype": str(dtype),
         "weights": "dequantized NF4 base + LoRA delta" if from_4bit else "base + LoRA delta"}, indent=2))
    return out_dir
