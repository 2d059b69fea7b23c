"""Reading ``bench.qlora_step``'s records: the table, the issue's goals, the levers (split from
``qlora_step`` so that each module reads in one sitting)."""
from __future__ import annotations

import json
from pathlib import Path

GOAL_QLORA_PEAK_BYTES = 4e9
GOAL_MFU = {"lora": 0.25, "qlora": 0.15}


def _gib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**30, 3)


def _fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def summarize(rows: list[dict]) -> str:
    """A table of the records, the issue's goals against them, and each lever's measured effect."""
    ok = [r for r in rows if not r.get("error")]
    lines = [f"{'config':<34} {'peak GiB':>8} {'static':>7} {'s/step':>7} {'tok/s':>8} {'TFLOP/s':>8} "
             f"{'MFU':>6} {'MFU4N':>6} {'seq':>5} {'lab':>4}  loss first->last"]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['config']:<34} ERROR {r['error'][:90]}")
            continue
        peak = r["peak_memory_allocated_gib"] if r["peak_memory_allocated_gib"] is not None \
            else r["peak_memory_bytes"] / 2**30
        mfu = None if r["mfu"] is None else 100 * r["mfu"]
        mfu4 = None if r["mfu_4n"] is None else 100 * r["mfu_4n"]
        losses = r.get("losses") or [None]
        lines.append(f"{r['config']:<34} {peak:>8.2f} {_fmt(r['static_memory_gib']):>7} {r['seconds_per_step']:>7.3f} "
                     f"{r['tokens_per_second']:>8.0f} {r['achieved_tflops']:>8.1f} {_fmt(mfu, '.1f'):>6} "
                     f"{_fmt(mfu4, '.1f'):>6} {r['seq_len_mean']:>5.0f} {r['labelled_tokens_mean']:>4.0f}  "
                     f"{_fmt(losses[0], '.3f')} -> {_fmt(losses[-1], '.3f')}")
    if any(r["peak_memory_allocated_gib"] is None for r in ok):
        lines.append("(CPU: 'peak GiB' is the process's peak resident memory so far, not the configuration's)")
    by = {r["config"]: r for r in ok}
    cuda = [r for r in ok if r["peak_memory_allocated_gib"] is not None]
    lines.append("")
    lines.append("goals (from the issue):")
    small = min((r["batch"] for r in ok), default=None)
    q4 = [r for r in cuda if r["quant"] == "qlora" and r["batch"] == small and r["answer"] == "direct"
          and not r["config"].endswith("eager")]
    if q4:
        best = min(q4, key=lambda r: r["peak_memory_bytes"])
        lines.append(f"  QLoRA peak <= 4 GB at batch {small} x {best['seq_len_mean']:.0f}: "
                     f"{'MET' if best['peak_memory_bytes'] <= GOAL_QLORA_PEAK_BYTES else 'NOT MET'}, lowest "
                     f"{best['peak_memory_bytes'] / 1e9:.2f} GB ({best['config']}); "
                     + ", ".join(f"{r['config']} {r['peak_memory_bytes'] / 1e9:.2f} GB" for r in q4 if r is not best))
    for r in cuda:
        if r["quant"] != "qlora":
            continue
        twin = by.get("lora" + r["config"][len("qlora"):])
        if twin and twin["peak_memory_allocated_gib"] is not None:
            ratio = r["peak_memory_bytes"] / twin["peak_memory_bytes"]
            lines.append(f"  QLoRA <= half of bf16 LoRA's peak, {r['config'][6:]}: {'MET' if ratio <= 0.5 else 'NOT MET'} "
                         f"({r['peak_memory_bytes'] / 1e9:.2f} vs {twin['peak_memory_bytes'] / 1e9:.2f} GB, ratio {ratio:.2f})")
    for quant, goal in GOAL_MFU.items():
        cands = [r for r in ok if r["quant"] == quant and r["mfu"] is not None]
        if cands:
            best = max(cands, key=lambda r: r["mfu"])
            lines.append(f"  MFU >= {goal:.0%} for {'bf16 LoRA' if quant == 'lora' else 'QLoRA'}: "
                         f"{'MET' if best['mfu'] >= goal else 'NOT MET'}, best {best['mfu']:.1%} ({best['config']})")
    if not cuda:
        lines.append("  (not checked: no GPU measurements)")
    lines.append("")
    lines.append("levers (one setting changed, the rest equal: A -> B, B's s/step and peak as a multiple of A's):")
    swaps = [("no gradient checkpointing", "-gc-", "-nogc-"), ("fused loss", "-answer-", "-fused-"),
             ("fused loss", "-full-", "-fused-"), ("answer-position logits", "-full-", "-answer-"),
             ("LoRA on a 16/32-bit base", "qlora-", "lora-"), ("CoT answers", "-direct", "-cot")]
    pairs = [(label, name, name.replace(a, b, 1)) for label, a, b in swaps for name in by
             if (name.startswith(a) if a == "qlora-" else a in name)]
    pairs += [(f"{by[n[:-len('-eager')]]['attn_implementation']} instead of eager", n, n[:-len("-eager")])
              for n in by if n.endswith("-eager")]
    for label, a, b in pairs:
        if b in by:
            ra, rb = by[a], by[b]
            peak = (f", peak x{rb['peak_memory_bytes'] / ra['peak_memory_bytes']:.2f}"
                    if ra["peak_memory_allocated_gib"] is not None and rb["peak_memory_allocated_gib"] is not None else "")
            lines.append(f"  {label:<27} {a} -> {b}: s/step x{rb['seconds_per_step'] / ra['seconds_per_step']:.2f}{peak}")
    groups: dict[tuple, list[dict]] = {}
    for r in ok:
        groups.setdefault((r["quant"], r["loss"], r["answer"], r["attn_implementation"]), []).append(r)
    for key, rs in groups.items():
        if len({r["batch"] for r in rs}) > 1:
            best = max(rs, key=lambda r: r["tokens_per_second"])
            lines.append(f"  batch size ({'/'.join(str(k) for k in key)}): best tokens/s at batch {best['batch']} "
                         f"({best['config']}, {best['tokens_per_second']:.0f} tok/s)")
    lines.append("  not measured here: flash-attention 2 (the flash_attn package; transformers' hub kernels need a "
                 "network), fused AdamW (optim adamw_torch_fused), torch.compile, keeping QLoRA's embeddings in bf16 "
                 "(prepare_model_for_kbit_training makes them float32)")
    return "\n".join(lines)


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
