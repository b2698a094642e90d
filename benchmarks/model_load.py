"""Load time of the embedded default model: first use (GGUF dequantisation + HF save) vs cached.

Both are measured in one run, in this process: the conversion into a fresh temporary
``$SAO_CACHE``, then ``--reps`` loads of the cached copy (median). Import time of torch
and transformers is excluded from both: it is paid once per process whatever the model.

Usage: python benchmarks/model_load.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (import cost outside the timings)

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from report import median_time, write_result  # noqa: E402
from sao.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["SAO_CACHE"] = cache
        start = time.perf_counter()
        load_model("smollm2-135m")  # converts, then loads the fresh copy
        first = time.perf_counter() - start
        cached, _ = median_time(lambda: load_model("smollm2-135m"), args.reps)

    info = machine_record(args.threads)
    result = {
        "benchmark": "model_load",
        "first_use_seconds": round(first, 2),
        "cached_load_seconds": round(cached, 3),
        "speedup_cached_vs_first_use": round(first / cached, 1),
        "machine": info,
        "config": {"model": "smollm2-135m", "reps": args.reps},
    }
    table = "\n".join(
        [
            "",
            "| load of smollm2-135m | seconds |",
            "|---|---:|",
            f"| first use: GGUF dequantise + save HF copy + load | {first:.2f} |",
            f"| cached HF copy (median of {args.reps}) | {cached:.3f} |",
            f"| speedup | {first / cached:.1f}x |",
        ]
    )
    path = write_result("model_load", result, table)
    print(f"first use {first:.1f}s, cached {cached:.2f}s -> {path}")


if __name__ == "__main__":
    main()
