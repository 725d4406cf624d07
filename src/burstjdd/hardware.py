"""What the CPU can do, read at run time: its model, its instruction set and whether it runs
bfloat16 natively.

Machines differ (an Intel Xeon with AMX, an AMD EPYC with AVX512-BF16, a laptop with AVX2
only): bfloat16 convolutions are 1.5–2.5× faster than float32 where the CPU has bf16
instructions, and slower where oneDNN must emulate them. So the precision ``auto`` of restore
and training asks :func:`native_bf16` instead of assuming, and every figure a benchmark prints
carries :func:`describe_cpu`.
"""

from __future__ import annotations

import functools
import os
import platform

__all__ = ["cpu_flags", "cpu_model", "describe_cpu", "native_bf16"]

# /proc/cpuinfo flags that mean bfloat16 arithmetic in hardware: x86 AVX512-BF16 and AMX-BF16
# (oneDNN's avx512_core_bf16 / avx512_core_amx ISAs), and the Arm BF16 extension.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# What a figure's reader needs of the ISA, in the order shown.
_ISA_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX512"), ("avx512_bf16", "AVX512-BF16"),
              ("amx_bf16", "AMX-BF16"), ("asimd", "NEON"), ("sve", "SVE"), ("bf16", "BF16"))


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo (Linux); ('', {}) where it cannot be read."""
    name, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "features") and not flags:  # x86 / Arm spelling
                    flags = frozenset(value.split())
    except OSError:
        pass
    return name, flags


def cpu_model() -> str:
    """The CPU's model name ('AMD EPYC', 'Intel(R) Xeon(R) Platinum 8480+', ...), or what
    :mod:`platform` knows where /proc/cpuinfo is missing."""
    return _cpuinfo()[0] or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    return _cpuinfo()[1]


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX512-BF16, AMX-BF16 or Arm BF16).
    Where the flags cannot be read the answer is False: float32 is never the slow choice."""
    return any(flag in cpu_flags() for flag in _BF16_FLAGS)


def describe_cpu(threads: int | None = None) -> str:
    """One line for every reported figure: model, ISA and threads, e.g.
    'AMD EPYC (AVX2 AVX512 AVX512-BF16; torch on 2 of 2 threads)'."""
    import torch

    flags = cpu_flags()
    isa = " ".join(label for flag, label in _ISA_FLAGS if flag in flags) or "ISA unknown"
    threads = torch.get_num_threads() if threads is None else threads
    return f"{cpu_model()} ({isa}; torch on {threads} of {os.cpu_count()} threads)"
