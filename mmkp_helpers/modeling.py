"""Loading a vision-language model (VLM) and its processor, QLoRA, and resolving model names.

One loader serves every profile: ``load_vlm("Qwen/Qwen2-VL-2B-Instruct")`` on a GPU and
``load_vlm(".cache/models/tiny-qwen2_vl")`` on a laptop go through the same ``from_pretrained``
calls. ``resolve_model`` turns a profile's model name into what ``from_pretrained`` takes: the
tiny pretrained base (:mod:`mmkp_helpers.tiny_base`, built on first use), a full-size random
architecture (:func:`build_random_vlm`), or a hub id / folder as it is. The architectures and
the folder builder live in :mod:`mmkp_helpers.architecture`.
"""
from __future__ import annotations

import json
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import progress, quiet
from .paths import cache_dir

quiet.apply()  # known-harmless library warnings, silenced before the libraries load (see quiet.py)
progress.configure()  # mmkp-run's headless kernels: transformers' own bars plain and rare (see progress.py)

from .architecture import (BUILDER_VERSION, FAMILIES, QWEN2_VL_2B, TINY, VLMSize,  # noqa: F401 (re-exported)
                           build_tiny_vlm, device_info, load_processor, save_model_folder, versions)
from .vocab import (QWEN2_VL_CHAT_TEMPLATE, QWEN_PAT_STR, QWEN_VL_SPECIAL_TOKENS,  # noqa: F401 (re-exported)
                    build_qwen_tokenizer)
from . import tiny_base  # noqa: E402
from .tiny_base import TINY_PREFIX  # noqa: E402,F401 (re-exported)

# LoRA goes on the language model's projections only: the vision tower uses qkv/proj/fc1/fc2 in
# Qwen2-VL, but Qwen2.5-VL's vision MLP also has gate/up/down_proj, so anything under `visual`
# is excluded explicitly (a full-match regex, robust to where transformers nests the modules).
LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --------------------------------------------------------------------------------------------
# Reproducibility and environment
# --------------------------------------------------------------------------------------------
def setup(seed: int = 0, verbose: bool = True) -> torch.device:
    """Seed Python, NumPy and torch, print versions and the device, and return the device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        info = device_info()
        print("versions:", ", ".join(f"{k} {v}" for k, v in versions().items()))
        print("device:", ", ".join(f"{k}={v}" for k, v in info.items()), f"| seed={seed}")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Full-size models with random weights: the real architecture for GPU benchmarks and the gpu-smoke
# profile, nothing downloaded. Qwen/Qwen2-VL-7B-Instruct's config.json: 28 layers, hidden 3584,
# 28 heads / 4 KV heads, MLP 18944, the same vision tower as the 2B.
RANDOM_PREFIX = "random-"
QWEN2_VL_7B = VLMSize(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, intermediate_size=18944,
                      vision_depth=32, vision_width=1280, vision_heads=16, vision_mlp_ratio=4,
                      min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
RANDOM_SIZES = {"qwen2_vl-2b": QWEN2_VL_2B, "qwen2_vl-7b": QWEN2_VL_7B}


def build_random_vlm(name: str, seed: int = 0, device: str | None = None) -> Path:
    """Build once, in the project's cache (``.cache/models/<name>``), the randomly initialised
    full-size model ``random-qwen2_vl-2b`` (Qwen2-VL-2B-Instruct's public architecture, 2.21 B
    parameters) or ``random-qwen2_vl-7b``, and return its folder; a folder built with the same
    seed, size and builder version is reused. It is :func:`build_tiny_vlm` with the real sizes
    (the one builder: real Qwen tokenizer, special tokens, chat template), weights in bf16 (as
    released), made on the GPU when there is one (seconds; on a CPU it takes minutes and about
    5 GB (2B) of memory). The 7B keeps the 2B's tied embeddings and 151,936-word vocabulary (the
    released 7B has an untied head over 152,064 words: 0.55 B more parameters, the same FLOPs
    per token but for 0.1%)."""
    import gc

    key = name[len(RANDOM_PREFIX):] if name.startswith(RANDOM_PREFIX) else name
    if key not in RANDOM_SIZES:
        raise ValueError(f"unknown random model {name!r}; valid: {[RANDOM_PREFIX + k for k in RANDOM_SIZES]}")
    size = RANDOM_SIZES[key]
    path = tiny_model_path(RANDOM_PREFIX + key)
    marker = path / "mmkp_tiny.json"
    made = json.loads(marker.read_text()) if marker.exists() else {}
    if (made.get("seed"), made.get("builder"), made.get("size")) == (seed, BUILDER_VERSION, asdict(size)):
        return path
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"building {RANDOM_PREFIX + key} (random weights, seed {seed}) on {device} in {path} ...", flush=True)
    build_tiny_vlm(path, family="qwen2_vl", seed=seed, size=size, device=device, dtype=torch.bfloat16)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return path


def tiny_model_path(name: str) -> Path:
    """The cache folder of a model name such as ``tiny-qwen2_vl`` or ``random-qwen2_vl-2b``."""
    if name.startswith(TINY_PREFIX):
        return cache_dir("models") / tiny_base.folder_name(*tiny_base.parse_name(name))
    return cache_dir("models") / name


def resolve_model(name: str, seed: int = 0) -> str:
    """A model name as given in a profile -> what ``from_pretrained`` takes.

    ``tiny-qwen2_vl`` / ``tiny-qwen2_5_vl`` (with options, see :mod:`mmkp_helpers.tiny_base`) build
    the tiny base on first use (pretrained, in the project's cache) and return its folder;
    ``random-qwen2_vl-2b`` / ``random-qwen2_vl-7b`` likewise build the full-size architecture with
    random weights (:func:`build_random_vlm`); a hub id or a local folder is returned unchanged."""
    if name.startswith(RANDOM_PREFIX):
        return str(build_random_vlm(name, seed=seed))
    if not name.startswith(TINY_PREFIX):
        return name
    import fcntl

    # One builder at a time: two notebooks, or two test workers, may ask for the base at once; the
    # others wait here, then find it built.
    with open(cache_dir("models") / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return str(tiny_base.ensure_tiny_base(name, seed=seed))


# --------------------------------------------------------------------------------------------
# Loading, 4-bit quantization and LoRA
# --------------------------------------------------------------------------------------------
@dataclass
class LoraSettings:
    """LoRA hyper-parameters (QLoRA paper defaults; the DynamicCoT paper does not publish its own)."""
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = field(default_factory=lambda: LANGUAGE_PROJECTIONS)

    def to_peft(self):
        from peft import LoraConfig
        pattern = r"^(?!.*\bvisual\b).*\.(" + "|".join(self.targets) + r")$"
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, bias="none",
                          target_modules=pattern, task_type="CAUSAL_LM")


def quantization_config(on_gpu: bool):
    """NF4 with double quantization; bf16 compute on a GPU, float32 on the CPU."""
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16 if on_gpu else torch.float32)


def fix_bnb_cpu_training(model) -> int:
    """Work around a bitsandbytes CPU bug: after an eval forward or ``generate`` on a CPU with
    AVX512-BF16, the next training step fails ("a view of a leaf Variable that requires grad is
    being used in an in-place operation"). Disabling the repacked bf16 path avoids it.
    Returns how many 4-bit layers were changed."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def count_parameters(model) -> dict:
    """Trainable and total parameters (4-bit weights counted as stored elements x 2)."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total, "share": trainable / max(total, 1)}


def load_vlm(name_or_path: str, quantize_4bit: bool = False, lora: LoraSettings | dict | bool | None = None,
             gradient_checkpointing: bool = False, min_pixels: int | None = None, max_pixels: int | None = None,
             device: str | None = None, verbose: bool = True):
    """Load a VLM and its processor from a hub id or a local folder (the same calls for both).

    - ``quantize_4bit``: NF4 + double quantization (QLoRA); bf16 compute on GPU, float32 on CPU;
      then ``prepare_model_for_kbit_training`` (base frozen, norms in fp32).
    - ``lora``: ``True`` for the defaults, a dict or :class:`LoraSettings`; adapters go on the
      language model's projections only, the vision tower stays frozen.
    - ``device``: ``None`` picks the GPU when there is one; on a GPU the whole model goes to
      ``cuda:LOCAL_RANK`` (modulo the visible GPUs) when launched by accelerate/torchrun, so each
      DDP rank has its own copy (``"cuda:N"`` forces GPU N); on the CPU nothing changes.
    Returns ``(model, processor)``; the model is a ``PeftModel`` when ``lora`` is given."""
    from transformers import AutoModelForImageTextToText

    from .distributed import device_map as rank_device_map

    on_gpu = torch.cuda.is_available() if device is None else device.startswith("cuda")
    # The whole model on this process's GPU: cuda:LOCAL_RANK under accelerate/torchrun (one model
    # per rank, as DDP needs), cuda:0 in a single process, cuda:N for device="cuda:N".
    gpu_map = rank_device_map(on_gpu, device)
    kwargs: dict = {}
    if quantize_4bit:
        kwargs["quantization_config"] = quantization_config(on_gpu)
        kwargs["dtype"] = torch.bfloat16 if on_gpu else torch.float32
        kwargs["device_map"] = gpu_map if on_gpu else "cpu"
    else:
        kwargs["dtype"] = torch.bfloat16 if on_gpu else torch.float32
        if on_gpu:
            kwargs["device_map"] = gpu_map
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
    processor = load_processor(name_or_path, min_pixels=min_pixels, max_pixels=max_pixels)
    if quantize_4bit:
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
        if not on_gpu:
            fix_bnb_cpu_training(model)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        from peft import get_peft_model
        settings = lora if isinstance(lora, LoraSettings) else LoraSettings(**(lora if isinstance(lora, dict) else {}))
        if not quantize_4bit:
            for p in model.parameters():
                p.requires_grad_(False)
        model = get_peft_model(model, settings.to_peft())
        if gradient_checkpointing:
            model.enable_input_require_grads()
    if verbose:
        c = count_parameters(model)
        where = "GPU" if on_gpu else "CPU"
        print(f"loaded {name_or_path} on {where}{' in 4-bit NF4' if quantize_4bit else ''}: "
              f"trainable params {c['trainable']:,} of {c['total']:,} ({100 * c['share']:.3f}%)")
    return model, processor


def model_memory_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers (4-bit weights at their packed size)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def environment_record() -> dict:
    """What a results folder records about the machine and software of a run."""
    return {"versions": versions(), "device": device_info(), "platform": platform.platform(),
            "argv": sys.argv[:1]}


def count_image_tokens(processor, image) -> int:
    """How many ``<|image_pad|>`` tokens an image becomes after the processor resizes it.

    Qwen2-VL cuts the resized image into 14x14 patches and merges 2x2 patches into one token,
    so an image of H x W pixels (after resizing to multiples of 28 within the pixel budget)
    becomes (H/28) * (W/28) tokens."""
    out = processor.image_processor(images=[image], return_tensors="pt")
    t, h, w = (int(x) for x in out["image_grid_thw"][0])
    merge = getattr(processor.image_processor, "merge_size", 2)
    return t * h * w // (merge * merge)


def parameter_groups(model) -> "list[dict]":
    """Parameters by part of the model: vision tower, language model, LoRA adapters, embeddings.

    Each row: group, trainable, frozen, bytes (as stored: 4-bit weights are packed)."""
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            group = "LoRA adapters"
        elif ".visual." in f".{name}" or "visual." in name:
            group = "vision tower"
        elif "embed_tokens" in name or "lm_head" in name:
            group = "embeddings / lm_head"
        else:
            group = "language model"
        row = groups.setdefault(group, {"group": group, "trainable": 0, "frozen": 0, "bytes": 0})
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        row["trainable" if p.requires_grad else "frozen"] += n
        row["bytes"] += p.numel() * p.element_size()
    order = ["vision tower", "language model", "embeddings / lm_head", "LoRA adapters"]
    return [groups[g] for g in order if g in groups]
