"""GRPO on a CPU is bound by its rollouts: sao's rollouts against TRL's ``model.generate``, in one run.

Both arms are the same ``grpo`` trainer on the embedded default model (SmolLM2-135M-Instruct) and the same
seeded arithmetic prompts; only ``train.grpo.rollouts`` differs:

- ``trl``: TRL's own path, ``model.generate`` on the left-padded batch, which keeps decoding padding for
  the rows that finished until the longest is done (or the budget);
- ``sao``: sao's transformers engine on the same live weights, whose decode loop drops finished rows.

What is timed, per optimiser step (steps 2..N; step 1 warms up): the rollout call itself
(``_generate_single_turn``: rollout tokens / its seconds = rollout tokens/s) and the whole step (TRL's
``step_time``: rollouts, both rewards, the policy's and the reference's forward passes, backward and
the optimiser). The two arms sample different tokens (different samplers), so the lengths differ a
little: tokens/s is the like-for-like figure, and the mean completion length is reported beside it.
Precision is sao's ``dtype: auto`` (bf16 autocast where the CPU has native bf16, else float32), as a user
gets it; the machine record says which.

Usage: python benchmarks/grpo_rollouts.py [--steps 4] [--prompts 2] [--budget 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record  # noqa: E402
from report import write_result  # noqa: E402
from sao.methods.sar.config import SARConfig  # noqa: E402
from sao.methods.sar.stages import split_tasks, task_rows  # noqa: E402
from sao.models import load_model, pick_device, pick_dtype  # noqa: E402
from sao.recipe import validate  # noqa: E402
from sao.train.config import TrainConfig  # noqa: E402
from sao.train.grpo import grpo_trainer  # noqa: E402
from sao.train.table import TRAINERS  # noqa: E402
from sao.train.trainers import build_trainer, training_arguments  # noqa: E402

GENERATIONS = 6


class RolloutClock:
    """Wraps the trainer class's rollout call: seconds and completion tokens of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def install(self, cls: type) -> None:
        inner = cls._generate_single_turn
        clock = self

        def timed(self, *args, **kwargs):  # noqa: ANN001, ANN202 - TRL's signature
            start = time.perf_counter()
            completion_ids, logprobs = inner(self, *args, **kwargs)
            clock.calls.append((time.perf_counter() - start, sum(len(c) for c in completion_ids)))
            return completion_ids, logprobs

        cls._generate_single_turn = timed
        self.restore = lambda: setattr(cls, "_generate_single_turn", inner)


def run_arm(rollouts: str, rows: list[dict], args: argparse.Namespace) -> dict:
    """One GRPO run of ``args.steps`` steps with ``rollouts``; per-step figures from step 2 on."""
    import datasets

    config = validate(
        TrainConfig,
        {
            "trainer": "grpo",
            "batch_size": args.prompts * GENERATIONS,
            "report_to": "none",
            "save_steps": 10**6,
            "logging_steps": 1,
            "seed": 0,
            "grpo": {"num_generations": GENERATIONS, "max_completion_length": args.budget, "rollouts": rollouts},
        },
    )
    compute = pick_dtype(config.dtype, pick_device("auto"))
    loaded = load_model("smollm2-135m", device="cpu", dtype="float32")
    reference = load_model("smollm2-135m", device="cpu", dtype="float32").model
    examples = TRAINERS["grpo"].examples(loaded.tokenizer, rows, config).examples
    cls = grpo_trainer()
    clock = RolloutClock()
    clock.install(cls)
    try:
        with tempfile.TemporaryDirectory() as out:
            targs = training_arguments(config, Path(out), compute=compute, progress=False)
            targs.max_steps = args.steps
            trainer = build_trainer(
                config, loaded.model, loaded.tokenizer, datasets.Dataset.from_list(examples), targs, ref_model=reference
            )
            trainer.train()
    finally:
        clock.restore()
    steps = [h for h in trainer.state.log_history if "step_time" in h][1:]
    timed = clock.calls[1:]
    seconds, tokens = sum(s for s, _ in timed), sum(t for _, t in timed)
    return {
        "rollout_tokens_per_second": round(tokens / seconds, 1),
        "rollout_seconds_per_step": round(seconds / len(timed), 2),
        "step_seconds": round(statistics.mean(h["step_time"] for h in steps), 2),
        "mean_completion_tokens": round(statistics.mean(h["completions/mean_length"] for h in steps), 1),
        "clipped_ratio": round(statistics.mean(h["completions/clipped_ratio"] for h in steps), 3),
        "timed_steps": len(steps),
        "compute_dtype": str(compute).removeprefix("torch."),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (x6 generations)")
    parser.add_argument("--budget", type=int, default=256, help="max completion tokens")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each arm, interleaved trl, sao, trl, sao")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    section = validate(SARConfig, {"prompts_per_iteration": args.prompts * args.steps, "held_out": 1})
    _, train = split_tasks(section, 1)
    rows = [r.model_dump() for r in task_rows(train, section, 1)]
    info = machine_record(args.threads)
    runs: dict[str, list[dict]] = {"trl": [], "sao": []}
    for _ in range(args.rounds):
        for arm in ("trl", "sao"):
            runs[arm].append(run_arm(arm, rows, args))
            print(arm, runs[arm][-1], flush=True)

    def median(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[arm])

    keys = ("rollout_tokens_per_second", "rollout_seconds_per_step", "step_seconds", "mean_completion_tokens")
    summary = {arm: {k: median(arm, k) for k in keys} for arm in runs}
    tok_ratio = summary["sao"]["rollout_tokens_per_second"] / summary["trl"]["rollout_tokens_per_second"]
    step_ratio = summary["trl"]["step_seconds"] / summary["sao"]["step_seconds"]
    result = {
        "benchmark": "grpo_rollouts",
        "rollout_tokens_per_second_ratio_sao_vs_trl": round(tok_ratio, 2),
        "step_time_ratio_trl_vs_sao": round(step_ratio, 2),
        "target": ">= 2x",
        "summary": summary,
        "runs": runs,
        "machine": info,
        "config": {
            "model": "smollm2-135m",
            "prompts_per_step": args.prompts,
            "generations": GENERATIONS,
            "max_completion_tokens": args.budget,
            "steps": args.steps,
            "timed_steps": args.steps - 1,
            "rounds": args.rounds,
            "compute_dtype": runs["sao"][0]["compute_dtype"],
        },
    }
    lines = [
        "",
        f"GRPO on smollm2-135m, {args.prompts} arithmetic prompts x {GENERATIONS} rollouts per step, "
        f"{args.budget}-token budget, compute {result['config']['compute_dtype']}; steps 2..{args.steps} timed, "
        f"median of {args.rounds} interleaved runs per arm.",
        "",
        "| rollouts | rollout tok/s | rollout s/step | GRPO s/step | mean completion tokens |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {arm} | {s['rollout_tokens_per_second']} | {s['rollout_seconds_per_step']} | {s['step_seconds']} | "
            f"{s['mean_completion_tokens']} |"
            for arm, s in summary.items()
        ),
        f"| ratio sao vs trl | {tok_ratio:.2f}x | | {step_ratio:.2f}x faster | |",
    ]
    path = write_result("grpo_rollouts", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
