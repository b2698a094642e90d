"""How well the default model judges, against the "prefer the longer answer" baseline on the same pairs.

There are no per-item human labels on this machine, so the labels are a model-level proxy built from
MT-Bench (FastChat, Apache-2.0; the files are in the repository, tests/data/mt_bench and
benchmarks/data/mt_bench, each with its README): for each first-turn question, the answer of a much
stronger model is labelled better than that of a much weaker one. Published MT-Bench scores (GPT-4 as
judge): gpt-4 8.99, gpt-3.5-turbo 7.94, alpaca-13b 4.53, llama-13b 2.61; the pairs used are gpt-4 vs llama-13b and
gpt-3.5-turbo vs alpaca-13b, gaps of 6.4 and 3.4 points. A few individual answers of the weaker model may
still be better, so even a perfect judge would agree with these labels on somewhat less than 100%.
Which answer sits in slot a is drawn with a fixed seed, so the labels are balanced between a and b.

Writes the labelled pairs and the judge-eval run under benchmarks/results/judge_agreement/, the figures
to benchmarks/results/judge_agreement.json and a table to docs/benchmarks.md.

Usage: python benchmarks/judge_agreement.py [--judge smollm2-135m] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

from sao.eval.config import JudgeEvalConfig
from sao.eval.formats import read_instructions, read_outputs
from sao.eval.judge_eval import run_judge_eval

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from mt_bench_data import answers_file, mt_bench_file  # noqa: E402
from report import RESULTS, write_result  # noqa: E402

MATCHUPS = [("gpt-4", "llama-13b"), ("gpt-3.5-turbo", "alpaca-13b")]


def build_pairs(mt_bench: Path | None = None, seed: int = 0) -> list[dict[str, str]]:
    """One labelled pair per question and matchup; the stronger model's answer is the labelled winner.

    ``mt_bench`` is a FastChat MT-Bench data directory; default: the repository's copies.
    """
    questions = read_instructions(mt_bench_file("question.jsonl", mt_bench))
    rng = random.Random(seed)
    rows = []
    for strong, weak in MATCHUPS:
        better = read_outputs(answers_file(strong, mt_bench))
        worse = read_outputs(answers_file(weak, mt_bench))
        for q in questions:
            strong_first = rng.random() < 0.5
            a, b = (better, worse) if strong_first else (worse, better)
            rows.append(
                {
                    "id": f"{q.id}-{strong}-vs-{weak}",
                    "prompt": q.messages[0]["content"],
                    "response_a": a[q.id].text,
                    "response_b": b[q.id].text,
                    "label": "a" if strong_first else "b",
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mt-bench", type=Path, default=None, help="FastChat MT-Bench data directory (default: the repository's)."
    )
    parser.add_argument("--judge", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=None, help="Judge only the first N pairs.")
    args = parser.parse_args()

    out = RESULTS / "judge_agreement"
    out.mkdir(parents=True, exist_ok=True)
    pairs_file = out / "labelled_pairs.jsonl"
    pairs_file.write_text("".join(json.dumps(row) + "\n" for row in build_pairs(args.mt_bench)))
    config = JudgeEvalConfig(pairs=str(pairs_file), judge={"model": args.judge}, limit=args.limit)
    start = time.perf_counter()
    result = run_judge_eval(config, out / "run")
    seconds = time.perf_counter() - start
    ratio = result.judge.rate / result.longer.rate if result.longer.rate else None
    data = {
        "machine": machine_record(torch.get_num_threads()),
        "judge": args.judge,
        "matchups": MATCHUPS,
        "seconds": round(seconds, 1),
        "agreement_ratio_judge_vs_longer": ratio and round(ratio, 3),
        **result.to_dict(),
    }
    matchups = ", ".join(" vs ".join(m) for m in MATCHUPS)
    ratio_text = data["agreement_ratio_judge_vs_longer"]
    table = "\n".join(
        [
            f"Judge agreement on {result.pairs} MT-Bench proxy-labelled pairs ({matchups}; stronger model's answer "
            f"labelled better), {seconds / 60:.1f} min:",
            "",
            "| judge | agreement | 95% CI | position consistency | ratio to 'prefer longer' |",
            "|---|---:|---|---:|---:|",
            f"| {args.judge} (logprob, both orders) | {result.judge.rate:.1%} | {result.judge.low:.1%} - "
            f"{result.judge.high:.1%} | {result.position_consistency:.1%} | {ratio_text} |",
            f"| prefer the longer response | {result.longer.rate:.1%} | {result.longer.low:.1%} - "
            f"{result.longer.high:.1%} | - | 1.0 |",
        ]
    )
    write_result("judge_agreement", data, table)
    print(table)


if __name__ == "__main__":
    main()
