"""Parameter counts and memory of the real Qwen2-VL architectures, checked against transformers
(meta device) and against a real 4-bit load of the tiny model."""
import math

import pytest
import torch

from mmkp_helpers import memory


def _part(name: str) -> str:
    if "visual.merger" in name:
        return "merger"
    if "visual" in name:
        return "vision tower"
    if "embed_tokens" in name:
        return "embeddings"
    if "lm_head" in name:
        return "lm_head"
    return "language model layers"


@pytest.mark.parametrize("name, total", [("qwen2_vl-2b", 2_208_985_600), ("qwen2_vl-7b", 8_291_375_616)])
def test_counts_match_transformers_on_the_meta_device(name, total):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    arch = memory.ARCHITECTURES[name]
    config = Qwen2VLConfig(text_config=dict(arch["text_config"], tie_word_embeddings=arch["tie_word_embeddings"]),
                           vision_config=arch["vision_config"], tie_word_embeddings=arch["tie_word_embeddings"])
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    by_part = {p: 0 for p in memory.PARTS}
    for n, p in model.named_parameters():  # tied parameters are listed once
        by_part[_part(n)] += p.numel()
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
    result = memory.architecture_memory(name)
    assert result["parameters"] == by_part | {"total": total}
    assert sum(by_part.values()) == total  # 2.21 B and 8.29 B, as published
    assert result["quantized_parameters"] == linear
    assert result["tied_embeddings"] == (name == "qwen2_vl-2b")
    assert (result["parameters"]["lm_head"] == 0) == result["tied_embeddings"]


def test_memory_arithmetic_2b():
    r = memory.architecture_memory("qwen2_vl-2b")
    total = 2_208_985_600
    assert r["memory"]["bf16"]["total"] == 2 * total
    # LoRA r16 on q,k,v,o,gate,up,down of 28 layers: r * (in + out) per projection
    h, kv, inter = 1536, 256, 8960
    per_layer = 16 * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + inter) + (inter + h))
    assert r["lora_parameters"] == 28 * per_layer == 18_464_768
    assert r["memory"]["lora"]["total"] == 2 * total + 16 * r["lora_parameters"]
    q = r["memory"]["qlora"]
    # NF4: about 0.5 byte + 0.127 bit of constants per quantized weight (QLoRA paper, double quant)
    per_weight = q["Linear weights (NF4 + constants)"] / r["quantized_parameters"]
    assert 0.5 + 0.125 / 8 < per_weight < 0.5 + 0.13 / 8
    assert q["other weights (fp32)"] == 4 * (total - r["quantized_parameters"])
    assert r["memory_gib"]["qlora_rest_bf16"] < r["memory_gib"]["qlora"] < r["memory_gib"]["bf16"]
    rows = memory.memory_rows(r)
    assert [row["regime"] for row in rows] == list(memory.REGIMES)


def test_lora_rank_scales_adapters_only():
    r8, r16 = (memory.architecture_memory("qwen2_vl-7b", lora_r=r) for r in (8, 16))
    assert 2 * r8["lora_parameters"] == r16["lora_parameters"]
    assert r8["memory"]["bf16"] == r16["memory"]["bf16"]


def test_tiny_model_4bit_load_matches_the_inventory(tiny_model_dir):
    """What load_vlm quantizes, keeps and adds (the tiny model, a real 4-bit load on the CPU)."""
    pytest.importorskip("bitsandbytes")
    from mmkp_helpers.modeling import load_vlm

    cfg = memory.config_from_json(tiny_model_dir)
    expected = memory.architecture_memory(cfg, lora_r=16)
    model, _ = load_vlm(str(tiny_model_dir), quantize_4bit=True, lora={"r": 16}, verbose=False)
    total = lora = packed = nf4_bytes = 0
    for n, p in model.named_parameters():
        if "lora_" in n:
            lora += p.numel()
            assert p.dtype == torch.float32
            continue
        if p.__class__.__name__ == "Params4bit":
            numel = math.prod(p.quant_state.shape)
            assert p.numel() * 2 == numel and p.quant_state.blocksize == memory.NF4_BLOCKSIZE
            state2 = p.quant_state.state2
            assert p.quant_state.absmax.dtype == torch.uint8 and state2.blocksize == memory.NESTED_BLOCKSIZE
            nf4_bytes += (p.numel() + p.quant_state.absmax.numel() + 4 * state2.absmax.numel()
                          + 4 * p.quant_state.offset.numel())
            packed += numel
            total += numel
        else:
            assert p.dtype == torch.float32  # prepare_model_for_kbit_training's cast (fp32 on the CPU anyway)
            total += p.numel()
    assert total == expected["parameters"]["total"]
    assert packed == expected["quantized_parameters"]  # vision and merger Linears included
    assert lora == expected["lora_parameters"]
    assert nf4_bytes == expected["memory"]["qlora"]["Linear weights (NF4 + constants)"]
