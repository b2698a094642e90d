"""What RAIN costs against vanilla sampling, on the default model (issue 19).

On the same red-team prompts (HH-RLHF harmless-base test, first human turn; benchmarks/data/hh_rlhf/), each
engine answers every prompt three ways, one after the other:

- ``vanilla``: the engine's own sampling at temperature 1, one request per prompt, all prompts in one call;
- ``rain``: RAIN with the searches of all prompts batched into shared engine calls;
- ``rain, one prompt at a time``: the same searches run one after another (``decoding.rain.batch_prompts``
  off), which shows what batching across prompts buys;
- ``rain, no KV reuse`` (transformers only): batched RAIN with the engine's shared-prefix KV cache off
  (`sao.engine.prefix_cache`), so every ``score`` and ``top_logprobs`` row prefills from scratch.

The table gives wall time per answer, its ratio to vanilla (the issue's target: at most 4x on the llama.cpp
engine; the paper reports about 4x on 30B-70B models), committed answer tokens, engine calls per committed
token, inner iterations per committed step, and the share of RAIN's wall time spent in each kind of call.
The transformers engine reuses the KV of each batch's shared prefix (the judge prompt's instructions and
examples, a search's committed prefix) in ``score`` and ``top_logprobs``; its ``generate`` (rollouts and
sampled sets) and every llama.cpp call still prefill from scratch.

The RAIN settings are the official ones except where a flag says otherwise; the defaults of this script are
sized for 2 CPU cores (a few prompts, a short answer budget, maxT 50), so read the ratios, not the absolute
times, and compare runs only from the same machine line.

Usage: python benchmarks/rain_decode.py [--prompts 4] [--max-new-tokens 24] [--max-iterations 50]
       [--engines transformers,llamacpp]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from report import write_result  # noqa: E402
from sao.engine.config import EngineSection  # noqa: E402
from sao.engine.factory import build_engine  # noqa: E402
from sao.engine.types import SamplingParams  # noqa: E402
from sao.rain.config import RainSection  # noqa: E402
from sao.rain.engine import RainEngine  # noqa: E402

MODEL = "smollm2-135m"
PROMPTS = Path(__file__).parent / "data" / "hh_rlhf" / "red_team_prompts.jsonl"


def red_team_prompts(count: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines()[:count]]
    return [[{"role": "user", "content": row["prompt"]}] for row in rows]


def vanilla(engine, prompts, budget: int) -> dict:
    start = time.perf_counter()
    completions = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=budget, seed=0))
    seconds = time.perf_counter() - start
    tokens = sum(c.samples[0].num_tokens for c in completions)
    return {"seconds": seconds, "tokens": tokens, "engine_calls": 1, "texts": [c.samples[0].text for c in completions]}


def rain(engine, prompts, budget: int, settings: RainSection) -> dict:
    decoder = RainEngine(engine, settings, progress=True)
    start = time.perf_counter()
    completions = decoder.generate(prompts, SamplingParams(max_new_tokens=budget, seed=0))
    seconds = time.perf_counter() - start
    stats = decoder.last
    tokens = sum(c.samples[0].num_tokens for c in completions)
    steps = sum(len(a.steps) for a in stats.answers)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "engine_calls": stats.counts.engine_calls,
        "engine_requests": dict(stats.counts.requests),
        "calls_by_kind": dict(stats.counts.calls),
        "seconds_by_kind": {kind: round(t, 2) for kind, t in stats.counts.seconds.items()},
        "iterations_per_step": round(sum(a.iterations for a in stats.answers) / max(steps, 1), 2),
        "evaluations": sum(a.evaluations for a in stats.answers),
        "cached_evaluations": sum(a.cached_evaluations for a in stats.answers),
        "texts": [c.samples[0].text for c in completions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--max-iterations", type=int, default=50, help="maxT (official: 50)")
    parser.add_argument("--min-new-iterations", type=int, default=15, help="official: 15")
    parser.add_argument("--engines", default="transformers,llamacpp")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = red_team_prompts(args.prompts)
    settings = RainSection(max_iterations=args.max_iterations, min_new_iterations=args.min_new_iterations)
    info = machine_record(args.threads)
    results: dict[str, dict] = {}
    for backend in args.engines.split(","):
        engine = build_engine(MODEL, EngineSection(backend=backend), progress=False)
        arms = {
            "vanilla": vanilla(engine, prompts, args.max_new_tokens),
            "rain": rain(engine, prompts, args.max_new_tokens, settings),
            "rain, one prompt at a time": rain(
                engine, prompts, args.max_new_tokens, settings.model_copy(update={"batch_prompts": False})
            ),
        }
        prefix = getattr(engine, "prefix", None)  # the transformers engine's shared-prefix KV (sao.engine.prefix_cache)
        if prefix is not None:
            capacity, prefix.capacity = prefix.capacity, 0
            prefix.clear()
            arms["rain, no KV reuse"] = rain(engine, prompts, args.max_new_tokens, settings)
            prefix.capacity = capacity
        results[backend] = arms
        print(backend, {arm: {k: v for k, v in r.items() if k != "texts"} for arm, r in arms.items()}, flush=True)
        close = getattr(engine, "close", None)
        if close:
            close()

    lines = [
        "",
        f"{MODEL}, {args.prompts} HH-RLHF red-team prompts, {args.max_new_tokens}-token answers, RAIN at maxT "
        f"{args.max_iterations} (other settings official); one run per arm. KV reuse: the transformers "
        "engine's score and top_logprobs only.",
        "",
        "| engine | decoding | s / answer | vs vanilla | answer tokens | engine calls / token | iterations / step "
        "| time in score / generate / top-k / embed |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for backend, arms in results.items():
        base = arms["vanilla"]["seconds"]
        for arm, r in arms.items():
            per_token = r["engine_calls"] / max(r["tokens"], 1)
            kinds = r.get("seconds_by_kind")
            shares = (
                " / ".join(
                    f"{kinds.get(k, 0) / r['seconds']:.0%}" for k in ("score", "generate", "top_logprobs", "embed")
                )
                if kinds
                else ""
            )
            lines.append(
                f"| {backend} | {arm} | {r['seconds'] / args.prompts:.1f} | {r['seconds'] / base:.1f}x | "
                f"{r['tokens']} | {per_token:.2f} | {r.get('iterations_per_step', '')} | {shares} |"
            )
    result = {
        "benchmark": "rain_decode",
        "target": "RAIN <= 4x vanilla wall time on llama.cpp",
        "results": results,
        "machine": info,
        "config": {"model": MODEL, **vars(args), "rain": settings.model_dump()},
    }
    path = write_result("rain_decode", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
