"""The model's architecture and files: the processor, the sizes of a Qwen2-VL-family model, and
the builder of a model folder with random weights (the tiny model, or the real 2B/7B
architectures for benchmarks). :mod:`mmkp_helpers.tiny_base` pretrains the tiny one;
:mod:`mmkp_helpers.modeling` loads any of them (or a hub id) for training."""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

from .vocab import QWEN2_VL_CHAT_TEMPLATE, build_qwen_tokenizer, vocab_size

BUILDER_VERSION = 4  # bump when build_tiny_vlm makes a different model: cached models are rebuilt
FAMILIES = ("qwen2_vl", "qwen2_5_vl")


def versions() -> dict:
    """Versions of Python and the packages this project's results depend on."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "papermill", "nltk"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def device_info() -> dict:
    """The compute device: GPU name and memory, or the CPU and its core count."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported()}
    out = {"device": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:  # the CPU model and whether it has AVX512-BF16: float32 results differ between CPUs (docs/tiny_profile.md)
        info = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return out
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return out | {"model": model, "avx512_bf16": "avx512_bf16" in flags}


# --------------------------------------------------------------------------------------------
# The tokenizer and processor
# --------------------------------------------------------------------------------------------
def _image_only_processor_class():
    """A Qwen2-VL processor without the video side (the stock one needs torchvision for video)."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        attributes = ["image_processor", "tokenizer"]
        image_processor_class = "AutoImageProcessor"
        tokenizer_class = "AutoTokenizer"

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor


def load_processor(name_or_path: str, min_pixels: int | None = None, max_pixels: int | None = None):
    """The model's processor: the stock ``AutoProcessor`` where it can be built, else (no
    torchvision, so no video processor) an image-only Qwen2-VL processor from the same files.

    ``min_pixels``/``max_pixels`` cap how many image tokens an image becomes."""
    import warnings

    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    kwargs = {}
    if min_pixels is not None:
        kwargs["min_pixels"] = min_pixels
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    processor = None
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except (ImportError, OSError, AttributeError, ValueError, TypeError) as err:
        if isinstance(err, OSError) and not Path(name_or_path).exists() and "video" not in str(err).lower():
            raise  # a hub id that cannot be reached: say so, do not hide it behind a fallback
    if processor is None or not hasattr(processor, "image_processor"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image_processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                                   chat_template=tokenizer.chat_template)
    if processor.chat_template is None:
        processor.chat_template = processor.tokenizer.chat_template
    processor.tokenizer.padding_side = "left"  # generation pads on the left; collate sets its own
    return processor


# --------------------------------------------------------------------------------------------
# The tiny model
# --------------------------------------------------------------------------------------------
@dataclass
class VLMSize:
    """Sizes of a randomly initialised Qwen2-VL-family model.

    bitsandbytes' CPU path needs every Linear's in_features to be a multiple of 64 and
    out_features a multiple of 32; :meth:`check` enforces that. The defaults are the tiny model;
    :data:`QWEN2_VL_2B` is the real Qwen2-VL-2B-Instruct architecture (its public config)."""
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_width: int = 64
    vision_heads: int = 2
    vision_mlp_ratio: int = 2
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 28 * 28 * 16
    # Standard deviation of the language model's random weights (embeddings and projections).
    # 0.02 suits widths in the thousands (it is about 1/sqrt(2500)); a narrow model needs
    # 1/sqrt(width), else its logits stay within about +-1.3 (the loss cannot fall far below
    # ln(151936) = 11.9) and its attention stays uniform, so LoRA takes far longer to learn.
    init_std: float = 0.02

    def check(self):
        head_dim = self.hidden_size // self.num_heads
        kv = head_dim * self.num_kv_heads
        for name, value, mult in [("hidden_size", self.hidden_size, 64), ("vision_width", self.vision_width, 64),
                                  ("intermediate_size", self.intermediate_size, 64), ("kv width", kv, 32)]:
            if value % mult:
                raise ValueError(f"{name}={value} must be a multiple of {mult} (bitsandbytes CPU kernels)")
        if head_dim % 8:
            raise ValueError(f"head_dim={head_dim} must be a multiple of 8 (mrope sections)")


# Qwen/Qwen2-VL-2B-Instruct's config.json: 28 layers, hidden 1536, 12 heads / 2 KV heads,
# MLP 8960; vision tower 32 blocks of width 1280, 16 heads, MLP ratio 4; 56*56..28*28*1280 pixels.
# The tiny profile's model. Measured on the synthetic benchmark (LoRA r 64, lr 3e-3, batch 8, 400
# steps, two seeds): 2 heads of 32 dimensions with weights of std 1/sqrt(64) reach F1@M 0.53-0.56;
# 4 heads of 16 with std 0.02 reached 0.17-0.24 (present keyphrases not yet copied).
TINY = VLMSize(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=128,
               init_std=0.125)
QWEN2_VL_2B = VLMSize(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960,
                      vision_depth=32, vision_width=1280, vision_heads=16, vision_mlp_ratio=4,
                      min_pixels=56 * 56, max_pixels=28 * 28 * 1280)


def _mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2  # temporal, height, width sections sum to head_dim / 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tiny_vlm(path: str | os.PathLike, family: str = "qwen2_vl", seed: int = 0,
                   size: VLMSize | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                   tokenizer=None, save: bool = True):
    """Write a complete, randomly initialised VLM folder that ``load_vlm(path)`` loads.

    The folder holds the config, random weights (safetensors), the tokenizer (by default the real
    Qwen tokenizer; ``tokenizer`` may be another one with the same special tokens and chat
    template, e.g. :func:`mmkp_helpers.vocab.cut_tokenizer`'s, and the vocabulary is then sized to
    it), and an image processor with a small pixel budget. The architecture is the real one
    (Qwen2-VL or Qwen2.5-VL), only narrower and shallower; with ``size=QWEN2_VL_2B`` (built on
    ``device="cuda"`` in bf16, say) it is full-size, for benchmarks. ``save=False`` writes nothing
    and returns ``(model, processor)`` (the tiny base pretrains it before saving it)."""
    from transformers import Qwen2VLImageProcessor

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    size = size or TINY
    size.check()
    path = Path(path)
    tokenizer = tokenizer if tokenizer is not None else build_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    head_dim = size.hidden_size // size.num_heads
    text = dict(
        vocab_size=vocab_size(tokenizer), initializer_range=size.init_std, hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers, num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads, max_position_embeddings=4096, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                         "mrope_section": _mrope_section(head_dim)},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  tie_word_embeddings=True)
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model
        vision = dict(depth=size.vision_depth, embed_dim=size.vision_width, hidden_size=size.hidden_size,
                      num_heads=size.vision_heads, mlp_ratio=size.vision_mlp_ratio, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, in_channels=3)
    else:
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model
        vision = dict(depth=size.vision_depth, hidden_size=size.vision_width, out_hidden_size=size.hidden_size,
                      intermediate_size=size.vision_width * size.vision_mlp_ratio, num_heads=size.vision_heads, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3, window_size=112,
                      fullatt_block_indexes=[size.vision_depth - 1])
    config = Config(text_config=text, vision_config=vision, **common)
    torch.manual_seed(seed)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Model(config).eval()
    finally:
        torch.set_default_dtype(previous_dtype)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    image_processor = Qwen2VLImageProcessor(min_pixels=size.min_pixels, max_pixels=size.max_pixels,
                                            patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                              chat_template=QWEN2_VL_CHAT_TEMPLATE)
    if not save:
        return model, processor
    save_model_folder(model, processor, path, family)
    # Record how the folder was made (read by humans and by resolve_model's freshness check).
    (path / "mmkp_tiny.json").write_text(json.dumps(
        {"family": family, "seed": seed, "size": asdict(size), "builder": BUILDER_VERSION, "versions": versions()},
        indent=2))
    return path


def save_model_folder(model, processor, path: str | os.PathLike, family: str = "qwen2_vl") -> Path:
    """Write ``model`` and ``processor`` as a folder ``load_vlm`` loads (weights as safetensors),
    naming the stock processor class as the hub's folders do: with torchvision installed
    AutoProcessor then builds the stock Qwen2VLProcessor; without it load_processor falls back."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    for name in ("processor_config.json", "tokenizer_config.json"):
        cfg_path = path / name
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            cfg["processor_class"] = "Qwen2VLProcessor" if family == "qwen2_vl" else "Qwen2_5_VLProcessor"
            cfg_path.write_text(json.dumps(cfg, indent=2))
    return path


