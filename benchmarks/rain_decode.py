"""What RAIN costs against vanilla sampling, on the default model (issue 19).

On the same red-team prompts (HH-RLHF harmless-base test, first human turn; benchmarks/data/hh_rlhf/), each
engine answers every prompt three ways, one after the other:

- ``vanilla``: the engine's own sampling at temperature 1, one request per prompt, all prompts in one call;
- ``rain``: RAIN with the searches of all prompts batched into shared engine calls;
- ``rain, one prompt at a time``: the same searches run one after another (``decoding.rain.batch_prompts``
  off), which shows what batching across prompts buys;
- ``rain, no KV reuse``: batched RAIN with the engine's prefix KV reuse off (the transformers engine's prefix
  cache, `sao.engine.prefix_cache`; llama.cpp's prefix stream), so every ``score`` and ``top_logprobs`` row
  prefills from scratch.

The table gives wall time per answer, its ratio to vanilla (the issue's target: at most 4x on the llama.cpp
engine; the paper reports about 4x on 30B-70B models), committed answer tokens, engine calls per committed
token, inner iterations per committed step, and the share of RAIN's wall time spent in each kind of call.
Both engines reuse the KV of the prefix a ``score`` or ``top_logprobs`` call's rows share (the judge prompt's
instructions and examples, a search's committed prefix) across rows and calls; ``generate`` (rollouts and
sampled sets) still prefills every row from scratch.

A second table gives what the issue asks of RAIN against vanilla on these prompts: how the model's own evaluator
(the one RAIN decodes with, `sao.judge.rain`) judges each arm's answers, their mean length, and how many of
RAIN's answers differ from vanilla's. With a handful of prompts these are counts, not rates.

The RAIN settings are the official ones except where a flag says otherwise; the defaults of this script are
sized for 2 CPU cores (a few prompts, a short answer budget, maxT 50), so read the ratios, not the absolute
times, and compare runs only from the same machine line.

Usage: python benchmarks/rain_decode.py [--prompts 2] [--max-new-tokens 16] [--max-iterations 50]
       [--engines transformers,llamacpp] [--quality-only]
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
from sao.engine.llamacpp_engine import LlamaCppEngine  # noqa: E402
from sao.engine.types import SamplingParams  # noqa: E402
from sao.judge.rain import self_evaluations  # noqa: E402
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


def without_kv_reuse(engine, run):
    """``run(e)`` on ``engine``'s model with its prefix KV reuse off: the transformers engine's prefix cache
    emptied and disabled (`sao.engine.prefix_cache`), or a llama.cpp engine without a prefix stream."""
    if isinstance(engine, LlamaCppEngine):
        plain = LlamaCppEngine(
            engine.model_path,
            engine.tokenizer,
            max_batch_size=engine.max_batch_size,
            context_per_sequence=engine.context_per_sequence,
            prefix_stream=False,
            progress=False,
        )
        plain.eos_ids = engine.eos_ids
        try:
            return run(plain)
        finally:
            plain.close()
    capacity, engine.prefix.capacity = engine.prefix.capacity, 0
    engine.prefix.clear()
    try:
        return run(engine)
    finally:
        engine.prefix.capacity = capacity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-iterations", type=int, default=50, help="maxT (official: 50)")
    parser.add_argument("--min-new-iterations", type=int, default=15, help="official: 15")
    parser.add_argument("--engines", default="transformers,llamacpp")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--quality-only",
        action="store_true",
        help="vanilla and batched RAIN only, for the self-evaluated comparison on more prompts (result: rain_quality)",
    )
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
        }
        if not args.quality_only:
            one_at_a_time = settings.model_copy(update={"batch_prompts": False})
            arms["rain, one prompt at a time"] = rain(engine, prompts, args.max_new_tokens, one_at_a_time)
            arms["rain, no KV reuse"] = without_kv_reuse(
                engine, lambda e: rain(e, prompts, args.max_new_tokens, settings)
            )
        # The model's own judgement of every answer, by the evaluator RAIN decodes with (sao.judge.rain).
        questions = [p[0]["content"] for p in prompts]
        for arm in ("vanilla", "rain"):
            judged = self_evaluations(engine, questions, arms[arm]["texts"])
            arms[arm]["votes"] = [j.vote for j in judged]
            arms[arm]["p_good"] = [round(j.p_good, 4) for j in judged]
        results[backend] = arms
        print(backend, {arm: {k: v for k, v in r.items() if k != "texts"} for arm, r in arms.items()}, flush=True)
        close = getattr(engine, "close", None)
        if close:
            close()

    lines = [
        "",
        f"{MODEL}, {args.prompts} HH-RLHF red-team prompts, {args.max_new_tokens}-token answers, RAIN at maxT "
        f"{args.max_iterations} (other settings official); one run per arm. KV reuse: score and "
        "top_logprobs (not generate).",
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
    lines += [
        "",
        "The answers as the model itself judges them (RAIN's harmlessness evaluation, both option orders), against "
        "vanilla sampling's on the same prompts:",
        "",
        "| engine | decoding | judged harmless (v = +1) | judged harmful (v = -1) | mean p(harmless) | mean tokens "
        "| differs from vanilla |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, arms in results.items():
        for arm in ("vanilla", "rain"):
            r = arms[arm]
            n = len(r["votes"])
            differs = sum(a != b for a, b in zip(r["texts"], arms["vanilla"]["texts"]))
            lines.append(
                f"| {backend} | {arm} | {r['votes'].count(1)} / {n} | {r['votes'].count(-1)} / {n} | "
                f"{sum(r['p_good']) / n:.3f} | {r['tokens'] / n:.1f} | {differs} / {n} |"
            )
    result = {
        "benchmark": "rain_decode",
        "target": "RAIN <= 4x vanilla wall time on llama.cpp",
        "results": results,
        "machine": info,
        "config": {"model": MODEL, **vars(args), "rain": settings.model_dump()},
    }
    path = write_result("rain_quality" if args.quality_only else "rain_decode", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
