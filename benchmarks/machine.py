"""The machine a benchmark ran on: CPU, the flags that decide its speed, and matmul peaks measured now.

Machines of this project's kind do not all have the same CPU: some have AVX2 only (bf16 is
then emulated, far slower than float32), others AVX512 with native bf16 (``avx512_bf16``,
and AMX tiles on recent Xeons). A figure means little without knowing which, so every
benchmark stores `machine_record` in its JSON, and any bound it states (the compute bound
on tokens/s, MFU) is computed from the peaks measured here, in the same run.

The peak is the median rate of a square ``torch.mm``, 2048^3 unless that is too slow to
time in a second (emulated bf16 is measured on a smaller product, which flatters it a
little): the practical peak of a dense layer with torch's kernels, below the cores'
theoretical FMA rate. Both dtypes together take a few seconds.

Usage: python benchmarks/machine.py   (prints the record as JSON)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from sao.models import bf16_supported

# The flags that decide which kernels run: AVX2 (every machine here), AVX512, native bf16 dot
# products, and AMX tiles (bf16 matrix multiply units).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
PEAK_SIZE = 2048


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> dict[str, bool]:
    """Which of `CPU_FLAGS` the first CPU lists in /proc/cpuinfo (all False where there is none)."""
    present: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {flag: flag in present for flag in CPU_FLAGS}


def matmul_peak(dtype: torch.dtype, max_size: int = PEAK_SIZE, budget_s: float = 1.0) -> tuple[float, int]:
    """Median FLOP/s of a square matmul in ``dtype``, and the size it was measured on.

    The size doubles from 256 up to ``max_size`` unless the next one (8x the work) would take
    over a quarter of a second a product, so that a slow (emulated) dtype is measured on a
    smaller product instead of taking minutes; products are then timed for about ``budget_s``.
    """
    size = 256
    while True:
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.mm(a, b)  # warm-up: the first call picks and tunes kernels
        start = time.perf_counter()
        torch.mm(a, b)
        one = time.perf_counter() - start
        if size >= max_size or 8 * one > 0.25:
            break
        size *= 2
    rates = []
    for _ in range(max(3, min(20, int(budget_s / max(one, 1e-6))))):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start))
    return statistics.median(rates), size


# The shape of batch-32 decoding's widest matmuls in SmolLM2-135M (hidden 576 -> MLP 1536): a GEMM this
# thin reaches only part of the square peak, which is what a decode step can hope for at that batch.
DECODE_SHAPE = (32, 576, 1536)


def shape_rate(dtype: torch.dtype, shape: tuple[int, int, int] = DECODE_SHAPE, budget_s: float = 0.5) -> float:
    """Median FLOP/s of an [m, k] x [k, n] matmul in ``dtype`` (``shape`` = (m, k, n))."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):  # warm-up
        torch.mm(a, b)
    rates, spent = [], 0.0
    while spent < budget_s or len(rates) < 5:
        start = time.perf_counter()
        torch.mm(a, b)
        elapsed = time.perf_counter() - start
        spent += elapsed
        rates.append(2 * m * k * n / elapsed)
    return statistics.median(rates)


def measure_peaks() -> dict[str, dict[str, Any]]:
    """fp32 and bf16 matmul peaks in GFLOP/s, each with the matrix size it was measured on, and the rate of
    the decode-shaped product `DECODE_SHAPE` beside it."""
    peaks = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        rate, size = matmul_peak(dtype)
        decode = shape_rate(dtype)
        peaks[name] = {"gflops": round(rate / 1e9, 1), "size": size, "decode_shape_gflops": round(decode / 1e9, 1)}
    return peaks


def installed_versions(*packages: str) -> dict[str, str]:
    """Versions of those ``packages`` that are installed (llama-cpp-python is an optional extra)."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def machine_record(threads: int | None = None) -> dict[str, Any]:
    """Date, CPU, flags, threads, versions and the matmul peaks measured now (a few seconds).

    ``threads`` is what the benchmark runs with (default: torch's current setting); the
    peaks are measured with it.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "flags": cpu_flags(),
        "bf16_native": bf16_supported(torch.device("cpu")),  # what `dtype: auto` decides by
        "peak_matmul_gflops": measure_peaks(),
        "python": platform.python_version(),
        "packages": installed_versions("sao", "torch", "transformers", "llama-cpp-python"),
    }


def peak_flops(record: dict[str, Any], dtype: str) -> float:
    """The measured matmul peak of ``dtype`` ('float32' or 'bfloat16') in FLOP/s."""
    return record["peak_matmul_gflops"][dtype]["gflops"] * 1e9


def compute_bound_tok_s(record: dict[str, Any], dtype: str, parameters: int, tokens: float = 1.0) -> float:
    """Tokens/s a dense model of ``parameters`` cannot exceed at the measured ``dtype`` peak.

    A token costs 2 x parameters FLOP in the matmuls (attention's own FLOPs left out, as in
    the usual 2N estimate); ``tokens`` > 1 counts the tokens one unit of work reads (e.g. a
    judge request's prompt), giving units/s.
    """
    return peak_flops(record, dtype) / (2 * parameters * tokens)


def machine_line(record: dict[str, Any]) -> str:
    """One line for the docs: date, CPU, flags, peaks, threads, versions."""
    flags = ", ".join(f for f, on in record["flags"].items() if on) or "none of " + ", ".join(CPU_FLAGS)
    peaks = record["peak_matmul_gflops"]
    bf16 = "native" if record["bf16_native"] else "emulated"
    pkgs = ", ".join(f"{k} {v}" for k, v in record["packages"].items())
    return (
        f"Measured {record['date']} on {record['cpu']} ({record['cores']} cores; {flags}), "
        f"{record['threads']} threads; matmul peak measured in the same run: fp32 {peaks['float32']['gflops']:.0f} "
        f"GFLOP/s, bf16 {peaks['bfloat16']['gflops']:.0f} GFLOP/s ({bf16}){decode_rates(peaks)}; "
        f"Python {record['python']}, {pkgs}."
    )


def decode_rates(peaks: dict[str, dict[str, Any]]) -> str:
    """The decode-shaped rates for `machine_line` ('' in records made before they were measured)."""
    if "decode_shape_gflops" not in peaks["float32"]:
        return ""
    m, k, n = DECODE_SHAPE
    return (
        f"; a [{m},{k}]x[{k},{n}] matmul (batch-{m} decoding's shape) {peaks['float32']['decode_shape_gflops']:.0f} "
        f"fp32 and {peaks['bfloat16']['decode_shape_gflops']:.0f} bf16"
    )


if __name__ == "__main__":
    print(json.dumps(machine_record(), indent=2))
