"""Where a training step's time goes: a torch-profiler trace of a few optimizer steps, its
GPU time sorted into the parts a speed-up could target.

Why: every lever on the training path (no per-step dequantization, another attention
kernel, fused LoRA, larger micro-batches) attacks one part of the step; this says how big
each part is before anyone spends time on it. Kernels are sorted by name, except matrix
multiplications, which are split into the base's and the LoRA layers' by the shapes of the
operator that launched them (a LoRA product has the rank as one of its dimensions).
Idle is the profiled steps' wall time the GPU spent with no kernel running.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

# first match wins: attention before matmul (attention kernels are CUTLASS kernels too)
KERNEL_PARTS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (part, re.compile(pattern, re.IGNORECASE))
    for part, pattern in (
        ("4-bit dequantization", r"dequant"),
        ("optimizer", r"optimizer|adam|multi_tensor_apply"),
        ("attention", r"flash|fmha|attention|attn|sdpa|cutlassF|cutlassB"),
        ("matmul", r"gemm|nvjet|xmma|cublas|cutlass|wgmma|splitK|sm90_|sm80_|ampere_|Kernel2"),
        ("loss", r"cross_entropy|nll_loss|log_softmax|_ce_"),
        ("norms", r"rms|norm"),
        ("rope", r"rope|rotary"),
        ("activations", r"silu|swiglu|gelu|geglu"),
        ("copies", r"memcpy|memset|copy|CatArray|cat_"),
    )
)
OTHER = "elementwise and other"
SYNC_CALLS = re.compile(r"^cuda(Stream|Device|Event)Synchronize$|^cudaMemcpy$|^aten::_local_scalar_dense$")
# the rows of the published table, in the terms
REPORT_ORDER = (
    "4-bit dequantization",
    "base matmuls",
    "LoRA matmuls",
    "matmuls (launcher unknown)",
    "attention",
    "norms, activations, rope, loss",
    "optimizer",
    "copies",
    OTHER,
    "idle (no kernel running)",
)
# kernel parts reported as one row
FOLD = dict.fromkeys(("norms", "activations", "rope", "loss"), "norms, activations, rope, loss")


def kernel_part(name: str) -> str:
    return next((part for part, pattern in KERNEL_PARTS if pattern.search(name)), OTHER)


def is_lora_product(input_shapes: Iterable[Any], rank: int) -> bool:
    """An operator whose tensor inputs have the LoRA rank as a dimension."""
    return any(isinstance(shape, list) and rank in shape for shape in input_shapes)


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Microseconds covered by at least one kernel (overlapping streams counted once)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def breakdown(events: list[Any], lora_rank: int, wall_s: float) -> dict:
    """Share of the profiled steps' wall time per part, from ``prof.events()``: device events
    (kernels, copies) carry names and time ranges; CPU operators carry their launched
    kernels and input shapes, which split the matmuls."""
    from torch.autograd import DeviceType

    device = [e for e in events if e.device_type == DeviceType.CUDA]
    us: dict[str, float] = defaultdict(float)
    for e in device:
        us[kernel_part(e.name)] += e.time_range.end - e.time_range.start
    lora_us = base_us = 0.0
    for op in events:
        if op.device_type != DeviceType.CPU or not op.kernels:
            continue
        launched = sum(k.duration for k in op.kernels if kernel_part(k.name) == "matmul")
        if is_lora_product(op.input_shapes, lora_rank):
            lora_us += launched
        else:
            base_us += launched
    matmul = us.pop("matmul", 0.0)
    parts = {
        "base matmuls": min(base_us, matmul),
        "LoRA matmuls": min(lora_us, max(matmul - base_us, 0.0)),
    }
    parts["matmuls (launcher unknown)"] = max(matmul - parts["base matmuls"] - parts["LoRA matmuls"], 0.0)
    for part, value in us.items():
        row = FOLD.get(part, part)
        parts[row] = parts.get(row, 0.0) + value
    wall_us = wall_s * 1e6
    parts["idle (no kernel running)"] = max(
        wall_us - busy_us([(e.time_range.start, e.time_range.end) for e in device]), 0.0
    )
    syncs = [e for e in events if e.device_type == DeviceType.CPU and SYNC_CALLS.search(e.name)]
    return {
        "wall_seconds": wall_s,
        "seconds": {p: round(parts.get(p, 0.0) / 1e6, 4) for p in REPORT_ORDER},
        "share_of_wall": {p: round(parts.get(p, 0.0) / wall_us, 4) if wall_us else 0.0 for p in REPORT_ORDER},
        "host_syncs": {
            "calls": len(syncs),
            "cpu_seconds": round(sum(e.cpu_time_total for e in syncs) / 1e6, 4),
        },
        "top_kernels": top_kernels(device),
    }


def top_kernels(device: list[Any], n: int = 25) -> list[dict]:
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in device:
        total[e.name][0] += e.time_range.end - e.time_range.start
        total[e.name][1] += 1
    ranked = sorted(total.items(), key=lambda kv: -kv[1][0])[:n]
    return [
        {"kernel": name[:120], "part": kernel_part(name), "seconds": round(t / 1e6, 4), "calls": c}
        for name, (t, c) in ranked
    ]


def markdown(result: dict) -> str:
    lines = ["| part of the step | seconds | share of wall time |", "| --- | --- | --- |"]
    for part in REPORT_ORDER:
        lines.append(f"| {part} | {result['seconds'][part]:.3f} | {result['share_of_wall'][part]:.1%} |")
    syncs = result["host_syncs"]
    lines.append(f"| host syncs (CPU side, {syncs['calls']} calls) | {syncs['cpu_seconds']:.3f} | |")
    lines.append(f"| wall time of the profiled steps | {result['wall_seconds']:.3f} | 100% |")
    return "\n".join(lines)
