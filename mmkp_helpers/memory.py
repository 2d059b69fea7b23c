"""Parameters and parameter memory of the real Qwen2-VL-2B / 7B architectures, computed from their
public configs (nothing downloaded, nothing allocated).

:func:`architecture_memory` answers notebook 00's question "what does it take to hold the real
model for full bf16 inference, for LoRA and for QLoRA training?" for the architectures in
:data:`ARCHITECTURES`, the config values of ``Qwen/Qwen2-VL-2B-Instruct`` and
``Qwen/Qwen2-VL-7B-Instruct`` (``config.json`` on the hub, URLs in ``source``). The count is
exact: tests build each model on the meta device with transformers and compare part by part
(2B: 2,208,985,600 parameters, embeddings tied to the output layer; 7B: 8,291,375,616, an untied
output layer over 152,064 words).

What each regime holds, as this project's :func:`mmkp_helpers.modeling.load_vlm` sets it up
(activations, the CUDA context and allocator slack are not counted):

- ``bf16``: every parameter in bf16 (2 bytes), no training state (inference, or the weights a
  full fine-tune starts from).
- ``lora``: the bf16 base, frozen, plus LoRA adapters (rank ``r``, default 16 as
  :class:`~mmkp_helpers.modeling.LoraSettings`) on the language model's q, k, v, o, gate, up
  and down projections (not the vision tower), in fp32 (peft's ``autocast_adapter_dtype``),
  with their fp32 gradients and AdamW's two fp32 moments: 16 bytes per adapter parameter.
- ``qlora``: every ``nn.Linear`` weight of the language model **and of the vision tower and
  merger** in NF4 (transformers' bitsandbytes quantizer skips only the output layer; the tiny
  model's 4-bit load shows the vision Linears as ``Linear4bit``): 0.5 byte per weight, plus
  block-wise absmax constants (blocks of 64, double quantization: an 8-bit absmax per block and
  an fp32 absmax per 256 blocks, and one fp32 offset per matrix); the shared 16- and 256-entry
  lookup tables are not counted. Everything else (embeddings, an untied output layer, biases,
  norms, the patch convolution) is **fp32**: ``peft.prepare_model_for_kbit_training``, which
  ``load_vlm`` calls, casts every non-4-bit bf16/fp16 parameter to fp32. Adapters as for LoRA.
- ``qlora_rest_bf16``: the same, but the non-4-bit parameters left in bf16 (what the memory
  would be without that cast: the embedding matrix alone is 0.43 GiB of the difference for 2B).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PARTS = ("vision tower", "merger", "language model layers", "embeddings", "lm_head")
REGIMES = ("bf16", "lora", "qlora", "qlora_rest_bf16")
NF4_BLOCKSIZE = 64            # bitsandbytes' default block size for 4-bit weights
NESTED_BLOCKSIZE = 256        # double quantization: the absmax values quantized in blocks of 256
GIB = 1024 ** 3

# The public config values (the fields that set parameter counts) of the two released models, with
# the address of each config.json: a data file beside this module.
ARCHITECTURES = json.loads((Path(__file__).with_name("qwen2_vl_architectures.json")).read_text())


def config_from_json(path: str | os.PathLike) -> dict:
    """The fields :func:`parameter_inventory` needs, from a Qwen2-VL ``config.json`` (a model
    folder or the file), e.g. the tiny model's."""
    path = Path(path)
    cfg = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    text, vision = cfg["text_config"], cfg["vision_config"]
    keys_t = ARCHITECTURES["qwen2_vl-2b"]["text_config"]
    keys_v = ARCHITECTURES["qwen2_vl-2b"]["vision_config"]
    return {"source": str(path), "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings"))),
            "text_config": {k: text[k] for k in keys_t}, "vision_config": {k: vision[k] for k in keys_v}}


def _linear(part: str, name: str, n_in: int, n_out: int, bias: bool, lora: bool = False) -> list[dict]:
    rows = [{"part": part, "name": f"{name}.weight", "numel": n_in * n_out, "linear": True,
             "lora": (n_in, n_out) if lora else None}]
    if bias:
        rows.append({"part": part, "name": f"{name}.bias", "numel": n_out, "linear": False, "lora": None})
    return rows


def _other(part: str, name: str, numel: int) -> dict:
    return {"part": part, "name": name, "numel": numel, "linear": False, "lora": None}


def parameter_inventory(config: dict) -> list[dict]:
    """Every parameter tensor of a Qwen2-VL model (one entry for a stack of identical layers,
    with ``count``): ``part``, ``name``, ``numel`` (per layer), ``count``, ``linear`` (an
    ``nn.Linear`` weight, which 4-bit loading quantizes) and ``lora`` ((in, out) where a LoRA
    adapter goes, else None)."""
    t, v = config["text_config"], config["vision_config"]
    h, inter = t["hidden_size"], t["intermediate_size"]
    head = h // t["num_attention_heads"]
    kv = head * t["num_key_value_heads"]
    vw = v["embed_dim"]
    merged = vw * v["spatial_merge_size"] ** 2
    rows: list[tuple[list[dict], int]] = []
    # vision tower: patch embedding (Conv3d, no bias), then blocks of LayerNorm, attention, MLP
    patch = v["in_channels"] * v["temporal_patch_size"] * v["patch_size"] ** 2 * vw
    rows.append(([_other("vision tower", "visual.patch_embed.proj.weight", patch)], 1))
    block = [_other("vision tower", "visual.blocks.norm1.weight", vw), _other("vision tower", "visual.blocks.norm1.bias", vw),
             _other("vision tower", "visual.blocks.norm2.weight", vw), _other("vision tower", "visual.blocks.norm2.bias", vw)]
    block += _linear("vision tower", "visual.blocks.attn.qkv", vw, 3 * vw, True)
    block += _linear("vision tower", "visual.blocks.attn.proj", vw, vw, True)
    block += _linear("vision tower", "visual.blocks.mlp.fc1", vw, vw * v["mlp_ratio"], True)
    block += _linear("vision tower", "visual.blocks.mlp.fc2", vw * v["mlp_ratio"], vw, True)
    rows.append((block, v["depth"]))
    # merger: LayerNorm, then 2x2 patches -> MLP -> the language model's width
    merger = [_other("merger", "visual.merger.ln_q.weight", vw), _other("merger", "visual.merger.ln_q.bias", vw)]
    merger += _linear("merger", "visual.merger.mlp.0", merged, merged, True)
    merger += _linear("merger", "visual.merger.mlp.2", merged, v["hidden_size"], True)
    rows.append((merger, 1))
    # language model: decoder layers (q, k, v with bias; o and the MLP without), final norm
    layer = [_other("language model layers", "layers.input_layernorm.weight", h),
             _other("language model layers", "layers.post_attention_layernorm.weight", h)]
    for name, n_in, n_out, bias in (("q_proj", h, h, True), ("k_proj", h, kv, True), ("v_proj", h, kv, True),
                                    ("o_proj", h, h, False), ("gate_proj", h, inter, False),
                                    ("up_proj", h, inter, False), ("down_proj", inter, h, False)):
        prefix = "layers.self_attn." if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "layers.mlp."
        layer += _linear("language model layers", prefix + name, n_in, n_out, bias, lora=True)
    rows.append((layer, t["num_hidden_layers"]))
    rows.append(([_other("language model layers", "norm.weight", h)], 1))
    rows.append(([_other("embeddings", "embed_tokens.weight", t["vocab_size"] * h)], 1))
    if not config["tie_word_embeddings"]:
        # an untied output layer is an nn.Linear, but the quantizer keeps the output embeddings
        rows.append(([{"part": "lm_head", "name": "lm_head.weight", "numel": t["vocab_size"] * h, "linear": False,
                       "lora": None}], 1))
    return [dict(r, count=count) for group, count in rows for r in group]


def _quantized_bytes(numel: int) -> float:
    """Bytes of one NF4 matrix: packed weights, 8-bit absmax per 64-block, fp32 absmax per 256
    absmax values (double quantization) and one fp32 offset."""
    blocks = math.ceil(numel / NF4_BLOCKSIZE)
    return numel / 2 + blocks + 4 * math.ceil(blocks / NESTED_BLOCKSIZE) + 4


def architecture_memory(name: str | dict, lora_r: int = 16) -> dict:
    """Parameter counts by part and parameter memory per regime of ``name`` (a key of
    :data:`ARCHITECTURES`, or a config dict as :func:`config_from_json` returns).

    Returns ``{"name", "source", "tied_embeddings", "parameters": {part: count, "total"},
    "lora_parameters", "memory": {regime: {item: bytes, "total"}}, "memory_gib": {regime: GiB}}``
    (regimes in :data:`REGIMES`, described in the module docstring; with tied embeddings the
    ``lm_head`` part is 0, it is the embedding matrix)."""
    config = ARCHITECTURES[name] if isinstance(name, str) else name
    inventory = parameter_inventory(config)
    params = {p: 0 for p in PARTS}
    for r in inventory:
        params[r["part"]] += r["numel"] * r["count"]
    params["total"] = sum(params[p] for p in PARTS)
    lora = sum(lora_r * sum(r["lora"]) * r["count"] for r in inventory if r["lora"])
    train_state = {"LoRA adapters (fp32)": 4 * lora, "LoRA gradients (fp32)": 4 * lora,
                   "AdamW moments (2 x fp32)": 8 * lora}
    quantized = sum(r["numel"] * r["count"] for r in inventory if r["linear"])
    nf4 = sum(_quantized_bytes(r["numel"]) * r["count"] for r in inventory if r["linear"])
    rest = params["total"] - quantized
    memory = {
        "bf16": {"weights (bf16)": 2 * params["total"]},
        "lora": {"base weights (bf16)": 2 * params["total"]} | train_state,
        "qlora": {"Linear weights (NF4 + constants)": nf4, "other weights (fp32)": 4 * rest} | train_state,
        "qlora_rest_bf16": {"Linear weights (NF4 + constants)": nf4, "other weights (bf16)": 2 * rest} | train_state,
    }
    for items in memory.values():
        items["total"] = sum(items.values())
    return {"name": name if isinstance(name, str) else config.get("source", "config"), "source": config.get("source"),
            "tied_embeddings": bool(config["tie_word_embeddings"]), "parameters": params, "lora_r": lora_r,
            "lora_parameters": lora, "quantized_parameters": quantized,
            "memory": memory, "memory_gib": {k: v["total"] / GIB for k, v in memory.items()}}


def memory_rows(result: dict) -> list[dict]:
    """A table for a notebook: one row per regime with each item in GiB and the total."""
    rows = []
    for regime, items in result["memory"].items():
        rows.append({"regime": regime} | {k: round(v / GIB, 3) for k, v in items.items()})
    return rows
