"""Mixed precision: bfloat16 autocast where the processor computes bfloat16 natively, float32 elsewhere.

On a CPU without bfloat16 instructions (AVX-512 BF16 or AMX), PyTorch emulates bfloat16: measured on an AVX2-only
AMD EPYC, a 2048 x 2048 matmul took 115 s in bfloat16 against 0.29 s in float32 (`python benchmarks/speed.py`
shows the ratio of the machine at hand). So `bf16=True` everywhere in lwgen means "bfloat16 where it is fast".
`LWGEN_BF16=1` or `0` overrides the detection.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_native() -> bool:
    """Whether this CPU has bfloat16 instructions (from /proc/cpuinfo; False where that cannot be read)."""
    forced = os.environ.get("LWGEN_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in NATIVE_FLAGS)


def bf16_active(bf16: bool, device: str | torch.device = "cpu") -> bool:
    """Whether asking for bfloat16 on this device will really use it."""
    kind = torch.device(device).type
    return bool(bf16) and (kind != "cpu" or cpu_bf16_native())


def autocast(bf16: bool, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` when `bf16` and the device computes it natively; else a no-op."""
    kind = torch.device(device).type
    if not bf16_active(bf16, kind):
        return contextlib.nullcontext()
    return torch.autocast(kind, dtype=torch.bfloat16)
