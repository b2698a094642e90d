"""Shared by every benchmark: timing, the JSON result file, and its section of docs/benchmarks.md.

``$SAO_BENCH_OUT`` sends the JSON and a copy of the updated page to that directory instead,
for smoke runs whose small figures must not replace the published ones.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import machine_line

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED_DOC = ROOT / "docs" / "benchmarks.md"
_OUT = os.environ.get("SAO_BENCH_OUT")
RESULTS = Path(_OUT) if _OUT else ROOT / "benchmarks" / "results"
DOC = RESULTS / "benchmarks.md" if _OUT else PUBLISHED_DOC


def median_time(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median wall time of ``reps`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def write_result(name: str, data: dict[str, Any], table: str) -> Path:
    """Write ``results/<name>.json`` and replace the ``name`` section of docs/benchmarks.md.

    The section opens with the machine line rendered from ``data["machine"]`` (a
    `machine.machine_record`): date, CPU, flags and the matmul peaks of the same run.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = table.strip()
    gap = "\n\n" if body.startswith("|") else "\n"  # a table needs a blank line before it
    block = f"{start}\n{machine_line(data['machine'])}{gap}{body}\n{end}"
    source = DOC if DOC.exists() else PUBLISHED_DOC
    doc = source.read_text() if source.exists() else "# Benchmarks\n"
    if start in doc:
        doc = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + f"\n\n## {name}\n\n{block}\n"
    DOC.write_text(doc)
    return path
