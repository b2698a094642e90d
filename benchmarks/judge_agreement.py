"""How well the default model judges, against the "prefer the longer answer" baseline on the same pairs.

There are no per-item human labels on this machine, so the labels are a model-level proxy built from
MT-Bench (FastChat, Apache-2.0): for each first-turn question, the answer of a much stronger model is
labelled better than that of a much weaker one. Published MT-Bench scores (GPT-4 as judge): gpt-4 8.99,
gpt-3.5-turbo 7.94, alpaca-13b 4.53, llama-13b 2.61; the pairs used are gpt-4 vs llama-13b and
gpt-3.5-turbo vs alpaca-13b, gaps of 6.4 and 3.4 points. A few individual answers of the weaker model may
still be better, so even a perfect judge would agree with these labels on somewhat less than 100%.
Which answer sits in slot a is drawn with a fixed seed, so the labels are balanced between a and b.

Writes the labelled pairs and the judge-eval run under benchmarks/results/judge_agreement/, the figures
to benchmarks/results/judge_agreement.json and a table to docs/benchmarks.md.
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
from report import RESULTS, machine_info, write_result  # noqa: E402

DEFAULT_MT_BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt_bench"
MATCHUPS = [("gpt-4", "llama-13b"), ("gpt-3.5-turbo", "alpaca-13b")]


def build_pairs(mt_bench: Path, seed: int = 0) -> list[dict[str, str]]:
    """One labelled pair per question and matchup; the stronger model's answer is the labelled winner."""
    questions = read_instructions(mt_bench / "question.jsonl")
    rng = random.Random(seed)
    rows = []
    for strong, weak in MATCHUPS:
        better = read_outputs(mt_bench / "model_answer" / f"{strong}.jsonl")
        worse = read_outputs(mt_bench / "model_answer" / f"{weak}.jsonl")
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
    parser.add_argument("--mt-bench", type=Path, default=DEFAULT_MT_BENCH, help="FastChat MT-Bench data directory.")
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
        "machine": machine_info(threads=torch.get_num_threads()),
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
            f"labelled better), {data['machine']['date']}, {data['machine']['cpu']}:",
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
