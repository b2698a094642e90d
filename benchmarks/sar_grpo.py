"""Does SAR help GRPO? Two arms from the same start, on the same prompts, with the same seeds (issue 18).

- ``vr``: GRPO rewarded by correctness alone, r = R_VR;
- ``vr+sar``: GRPO rewarded by r = R_VR + 0.2 R_SA (the self-aligned reward under the current policy).

Both train the embedded SmolLM2-135M-Instruct with sao's ``grpo`` trainer (the paper's settings: 6 answers
per prompt, KL β 0.001, loss ``dr_grpo``, no reward scaling), sao's rollouts, on seeded arithmetic problems
(`sao.rewards.tasks`, kind ``arithmetic``) drawn from another seed than the held-out ones. Before and after
training every model answers the same held-out problems greedily; the table gives accuracy (R_VR alone,
with a 95% Wilson interval) and the mean completion tokens. The paper reports +4% accuracy and -30% length
for SAR against R_VR alone on 1.5-7B models after hundreds of steps; this run is sized for ``make bench`` on
2 cores (about an hour), so read it as what the default model does in that budget, not as a replication.

The learning rate is 1e-5, not the paper's 1e-6: at 1e-6 a few dozen steps leave a 135M model where it
started (measured in the quickstart, docs/methods/sar.md), and the comparison would show nothing but noise.

Usage: python benchmarks/sar_grpo.py [--steps 20] [--prompts 2] [--held-out 40] [--budget 192] [--lr 1e-5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from report import write_result  # noqa: E402
from sao.engine.transformers_engine import TransformersEngine  # noqa: E402
from sao.eval.verifiable import evaluate_verifiable  # noqa: E402
from sao.methods.sar.config import SARConfig  # noqa: E402
from sao.methods.sar.stages import split_tasks, task_rows  # noqa: E402
from sao.models import load_model  # noqa: E402
from sao.recipe import validate  # noqa: E402
from sao.train.config import TrainConfig  # noqa: E402
from sao.train.run import run_train  # noqa: E402

MODEL = "smollm2-135m"
GENERATIONS = 6
TASKS = {"kind": "arithmetic", "steps": 2, "max_operand": 20}  # as recipes/sar-quickstart-cpu.yaml
ARMS = {"vr": ["verifiable"], "vr+sar": ["verifiable", "sar"]}


def held_out_accuracy(model: str, tasks: list, budget: int) -> dict:
    engine = TransformersEngine(load_model(model, dtype="auto"), max_batch_size=32, progress=False)
    result = evaluate_verifiable(engine, tasks, max_new_tokens=budget, progress=False)
    return asdict(result)


def train_arm(rewards: list[str], rows_file: Path, out: Path, args: argparse.Namespace) -> dict:
    config = validate(
        TrainConfig,
        {
            "trainer": "grpo",
            "learning_rate": args.lr,
            "batch_size": args.prompts * GENERATIONS,
            "epochs": 1,
            "seed": 0,
            "report_to": "none",
            "save_steps": 10**6,
            "grpo": {
                "num_generations": GENERATIONS,
                "max_completion_length": args.budget,
                "rewards": rewards,
                "sar_weight": 0.2,
            },
        },
    )
    started = time.perf_counter()
    result = run_train(config, MODEL, rows_file, out, progress=False)
    keys = ("steps", "first_reward", "final_reward", "first_rewards/verifiable/mean", "final_rewards/verifiable/mean")
    keys += ("first_rewards/sar/mean", "final_rewards/sar/mean")
    keys += ("first_completions/mean_length", "final_completions/mean_length")
    curve = {k: result.metrics[k] for k in keys if k in result.metrics}
    return {"model_dir": str(result.model_dir), "train_seconds": round(time.perf_counter() - started, 1), **curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per arm")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (x6 answers)")
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--budget", type=int, default=192, help="max completion tokens, training and eval")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    section = validate(
        SARConfig, {"tasks": TASKS, "prompts_per_iteration": args.steps * args.prompts, "held_out": args.held_out}
    )
    held, train = split_tasks(section, 1)
    info = machine_record(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        rows_file = Path(scratch) / "tasks.jsonl"
        rows_file.write_text("".join(json.dumps(r.model_dump()) + "\n" for r in task_rows(train, section, 1)))
        before = held_out_accuracy(MODEL, held, args.budget)
        print("before", before, flush=True)
        arms = {}
        for name, rewards in ARMS.items():
            arm = train_arm(rewards, rows_file, Path(scratch) / name, args)
            arm["after"] = held_out_accuracy(arm.pop("model_dir"), held, args.budget)
            arms[name] = arm
            print(name, arm, flush=True)
    total = time.perf_counter() - started
    vr, sar = arms["vr"]["after"], arms["vr+sar"]["after"]
    result = {
        "benchmark": "sar_grpo",
        "accuracy_difference_sar_minus_vr": round(sar["accuracy"] - vr["accuracy"], 4),
        "length_ratio_sar_vs_vr": round(sar["mean_tokens"] / vr["mean_tokens"], 3) if vr["mean_tokens"] else None,
        "paper_claim": "+4% accuracy, -30% length against R_VR alone (1.5-7B models, hundreds of steps)",
        "before": before,
        "arms": arms,
        "wall_seconds": round(total, 1),
        "machine": info,
        "config": {
            "model": MODEL,
            "tasks": TASKS,
            "train_prompts": len(train),
            "held_out": len(held),
            "steps_per_arm": args.steps,
            "prompts_per_step": args.prompts,
            "generations": GENERATIONS,
            "max_completion_tokens": args.budget,
            "learning_rate": args.lr,
            "beta": 0.001,
            "loss_type": "dr_grpo",
            "sar_weight": 0.2,
        },
    }

    def row(name: str, acc: dict, arm: dict | None) -> str:
        curve = (
            f"{arm.get('first_rewards/verifiable/mean', '')} → {arm.get('final_rewards/verifiable/mean', '')}"
            if arm
            else ""
        )
        return (
            f"| {name} | {acc['correct']} / {acc['n']} | {acc['accuracy']:.1%} ({acc['low']:.1%} - {acc['high']:.1%}) "
            f"| {acc['mean_tokens']:.1f} | {acc['no_answer']} | {curve} |"
        )

    lines = [
        "",
        f"GRPO on {MODEL}, {len(train)} training problems ({args.steps} steps x {args.prompts} prompts x "
        f"{GENERATIONS} answers, lr {args.lr:g}, {args.budget}-token budget), {len(held)} held-out problems "
        f"answered greedily; accuracy is R_VR alone. Whole run: {total / 60:.0f} min.",
        "",
        "| model | correct | accuracy (95% CI) | mean completion tokens | no answer "
        "| training R_VR first → last step |",
        "|---|---:|---|---:|---:|---|",
        row("start", before, None),
        row("GRPO, R_VR", vr, arms["vr"]),
        row("GRPO, R_VR + 0.2 R_SA", sar, arms["vr+sar"]),
        "",
        f"SAR minus R_VR alone: {result['accuracy_difference_sar_minus_vr']:+.1%} accuracy, length ratio "
        f"{result['length_ratio_sar_vs_vr']} (paper: +4%, 0.70).",
    ]
    path = write_result("sar_grpo", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
