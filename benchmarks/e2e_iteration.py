"""End to end: one full iteration of the quickstart recipe, with each engine, wall time per stage and peak RSS.

The recipe (recipes/quickstart-cpu.yaml: 64 personas -> prompts -> 2 answers of up to 512
tokens -> log-prob judge in both orders -> SimPO, then report samples) runs once per engine
backend, each in a fresh process and a fresh run directory:

- ``transformers``: the engine every stage used before issue 7 (float32 torch);
- ``llamacpp``: the llama.cpp engine (float16 GGUF), which also serves the trained model
  for the "after" samples through sao's GGUF export.

Training is the same in both (transformers + TRL). Stage seconds are those the run records
in its manifests, except that the llama.cpp run's export of the trained model to GGUF, which
happens when the "after" samples first need the engine, is timed on its own and taken out of
"report samples after" (which still includes loading the trained model, in both columns);
peak RSS is the run's own (``usage.json``); wall time is the child process's. Models are
loaded from sao's cache (the one-time conversions are outside the timing). One run per
backend: a full iteration takes minutes, so this figure carries the machine's drift
between the two runs, unlike the interleaved micro-benchmarks.

Usage: python benchmarks/e2e_iteration.py [--backends transformers llamacpp] [--set synth.num_prompts=4 ...]
(``--set`` overrides the recipe, for smoke runs; with it, set ``$SAO_BENCH_OUT`` so that the
published results are not replaced.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from report import ROOT, write_result  # noqa: E402

RECIPE = ROOT / "recipes" / "quickstart-cpu.yaml"
AFTER, EXPORT = "report samples after", "GGUF export of the trained model"


def timed_gguf_export() -> list[float]:
    """Time every GGUF export (`ensure_gguf`, as the llama.cpp engine calls it) from now on; returns the
    list the seconds go to.

    The loop exports the trained model inside the "after" samples' stage (the llama.cpp engine
    is built on first use), so the stage's recorded time would count the export as sampling.
    """
    import sao.engine.llamacpp_engine

    seconds: list[float] = []
    export = sao.engine.llamacpp_engine.ensure_gguf

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003 - passes ensure_gguf's arguments through
        start = time.perf_counter()
        try:
            return export(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    sao.engine.llamacpp_engine.ensure_gguf = timed  # looked up at call time by the engine's served_gguf
    return seconds


def child(backend: str, out: Path, overrides: list[str]) -> None:
    """Run the recipe's first iteration with ``backend`` and write its stage seconds and peak RSS."""
    from sao.loop.config import validate_run
    from sao.loop.report import stage_seconds
    from sao.loop.run import run_loop
    from sao.recipe import apply_overrides, load_yaml

    values = apply_overrides(load_yaml(RECIPE), [*overrides, f"engine.backend={backend}", "iterations=1"])
    config = validate_run(values)
    export_seconds = timed_gguf_export()
    iteration = run_loop(config, out / "run", progress=False)[0]
    stats = iteration.synth.manifest.stages
    stages = dict(stage_seconds(iteration))
    if export_seconds:
        export = round(sum(export_seconds), 1)
        if isinstance(stages[AFTER], int | float):  # a resumed stage's time is a labelled string: left as it is
            stages[AFTER] = round(stages[AFTER] - export, 1)
        stages[EXPORT] = export
    result = {
        "stages": stages,
        "peak_rss_mb": round(iteration.peak_rss_mb),
        "rows": {name: stage.rows for name, stage in stats.items()},
        "pairs": stats["pairs"].rows,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["transformers", "llamacpp"])
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="Recipe override (repeatable), for smoke runs."
    )
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.overrides)
        return
    info = machine_record(os.cpu_count() or 1)
    overrides = [arg for o in args.overrides for arg in ("--set", o)]

    runs = {}
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"sao-e2e-{backend}-") as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child", backend, tmp, *overrides], check=True)
            wall = time.perf_counter() - start
            runs[backend] = json.loads((Path(tmp) / "result.json").read_text()) | {"wall_seconds": round(wall, 1)}
        print(f"{backend}: {runs[backend]['wall_seconds']} s, peak RSS {runs[backend]['peak_rss_mb']} MiB", flush=True)

    base = args.backends[0]
    result = {
        "benchmark": "e2e_iteration",
        "recipe": str(RECIPE.relative_to(ROOT)),
        "recipe_overrides": args.overrides,
        "baseline": base,
        "speedup_wall": {b: round(runs[base]["wall_seconds"] / runs[b]["wall_seconds"], 2) for b in args.backends},
        "runs": runs,
        "machine": info,
    }
    parts = list(dict.fromkeys(part for b in args.backends for part in runs[b]["stages"]))
    changed = f" with {', '.join(f'`{o}`' for o in args.overrides)}" if args.overrides else ""
    lines = [
        f"One iteration of `{result['recipe']}`{changed} per engine backend, one run each (not interleaved). "
        f"'{AFTER}' includes loading the trained model; the llama.cpp run's GGUF export of it is its own row.",
        "",
        "| part | " + " | ".join(f"{b} s" for b in args.backends) + " | speedup |",
        "|---|" + "---:|" * (len(args.backends) + 1),
    ]
    for part in parts:
        cells = [runs[b]["stages"].get(part) for b in args.backends]
        speed = f"{cells[0] / cells[-1]:.2f}x" if all(isinstance(c, int | float) and c for c in cells) else ""
        lines.append(f"| {part} | " + " | ".join("n/a" if c is None else f"{c:.1f}" for c in cells) + f" | {speed} |")
    walls = [runs[b]["wall_seconds"] for b in args.backends]
    lines.append(
        "| **whole run (wall)** | " + " | ".join(f"{w:.1f}" for w in walls) + f" | {walls[0] / walls[-1]:.2f}x |"
    )
    lines.append("| peak RSS (MiB) | " + " | ".join(str(runs[b]["peak_rss_mb"]) for b in args.backends) + " | |")
    lines.append("| pairs kept | " + " | ".join(str(runs[b]["pairs"]) for b in args.backends) + " | |")
    path = write_result("e2e_iteration", result, "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
