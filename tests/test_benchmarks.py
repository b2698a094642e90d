"""The benchmarks run from a clone (issue 14): their data lies in the repository under its licence,
and every result records the machine it was measured on, with the peaks its bounds come from."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from sao.models import bf16_supported

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.append(str(BENCHMARKS))  # the scripts import each other by module name

# What the judge benchmarks read: MT-Bench questions and the answers of four models.
NEEDED = ["question.jsonl", *(f"model_answer/{m}.jsonl" for m in ("gpt-4", "alpaca-13b", "gpt-3.5-turbo", "llama-13b"))]


@pytest.mark.parametrize("relative", NEEDED)
def test_judge_benchmark_data_is_in_the_repository_with_its_licence(relative):
    from mt_bench_data import mt_bench_file

    found = mt_bench_file(relative)
    assert found.resolve().is_relative_to(ROOT)
    copy = next(p for p in found.parents if p.name == "mt_bench")
    readme = (copy / "README.md").read_text()
    assert "Apache" in readme and "FastChat" in readme, f"{copy}: no source and licence beside the data"


def test_the_hh_rlhf_data_lies_beside_its_source_and_licence():
    folder = BENCHMARKS / "data" / "hh_rlhf"
    readme = (folder / "README.md").read_text()
    assert "MIT" in readme and "anthropics/hh-rlhf" in readme and "MIT License" in (folder / "LICENSE").read_text()
    for name in ("red_team_prompts.jsonl", "harmless_pairs.jsonl"):
        assert len((folder / name).read_text().splitlines()) == 400


def test_no_benchmark_reads_outside_the_repository():
    outside = re.compile(r"""["'](\.\./|/work/)|parents\[2\]""")
    offenders = [p.name for p in BENCHMARKS.glob("*.py") if outside.search(p.read_text())]
    assert not offenders


def test_machine_record_has_the_flags_and_the_peaks_bounds_come_from():
    from machine import CPU_FLAGS, compute_bound_tok_s, machine_record

    record = machine_record()
    assert set(record["flags"]) == set(CPU_FLAGS)
    # Decided as sao decides `dtype: auto`, so a result says which precision its machine computes natively.
    assert record["bf16_native"] == bf16_supported(torch.device("cpu"))
    for dtype in ("float32", "bfloat16"):
        assert record["peak_matmul_gflops"][dtype]["gflops"] > 0
        assert record["peak_matmul_gflops"][dtype]["decode_shape_gflops"] > 0
    # 135M parameters: 2 * 135e6 FLOPs a token, so the bound is the measured peak over that.
    bound = compute_bound_tok_s(record, "float32", 135_000_000)
    assert bound == pytest.approx(record["peak_matmul_gflops"]["float32"]["gflops"] * 1e9 / 2.7e8)


def test_machine_line_names_the_decode_shaped_rate_only_where_it_was_measured():
    from machine import machine_line

    peaks = {"float32": {"gflops": 130.0, "size": 2048}, "bfloat16": {"gflops": 60.0, "size": 1024}}
    record = {
        "date": "2026-11-23",
        "cpu": "AMD EPYC",
        "cores": 2,
        "threads": 2,
        "flags": {"avx2": True},
        "bf16_native": False,
        "peak_matmul_gflops": peaks,
        "python": "3.11.7",
        "packages": {"torch": "2.14.1"},
    }
    assert "batch-32" not in machine_line(record)  # a record from before the decode-shaped rate
    peaks["float32"]["decode_shape_gflops"], peaks["bfloat16"]["decode_shape_gflops"] = 110.0, 40.0
    assert "[32,576]x[576,1536] matmul (batch-32 decoding's shape) 110 fp32 and 40 bf16" in machine_line(record)
