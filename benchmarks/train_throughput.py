"""SimPO training throughput on the embedded default model: tokens/s and MFU, on this machine.

What is timed: optimiser steps 2..N of ``trainer.train()`` for sao's SimPO trainer (TRL's
CPOTrainer with sao's tokenisation), from the end of step 1 to the end of step N, so model
loading, tokenisation, the first step's warm-up and checkpoint saving are outside it.
Every pair has the same token counts (no padding), so each step processes the same tokens:
``batch x (2 x prompt + chosen + rejected)``.

MFU = 6 x parameters x tokens/s / peak FLOP/s, against the matmul peak of the precision the step
computes in (fp32, or bf16 under autocast), both measured in the same run (`machine.machine_record`:
the practical peak of this machine's dense layers, below the cores' theoretical FMA rate). Attention's
own FLOPs are left out of the numerator, as in the usual 6ND estimate.

Variants, measured in one run:

- precision: float32, and bfloat16 autocast with float32 master weights (what ``train.dtype: auto``
  runs where bf16 is native, `sao.train.trainers.weights_dtype`). bf16 is measured on every CPU: where
  it is emulated the figure shows why ``auto`` picks float32 there;
- gradient checkpointing on (the shipped recipes' setting, recipes/quickstart-cpu.yaml, and sao's
  default) against off, in the precision ``auto`` picks.

``auto_is_fastest`` says whether the precision ``train.dtype: auto`` picks on this machine was the
faster of the two here.

Usage: python benchmarks/train_throughput.py [--steps 8] [--batch 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(__file__))
from machine import machine_record, peak_flops  # noqa: E402
from report import write_result  # noqa: E402
from sao.models import load_model, pick_dtype  # noqa: E402
from sao.recipe import validate  # noqa: E402
from sao.train.config import TrainConfig  # noqa: E402
from sao.train.tokenize import end_of_turn_id  # noqa: E402
from sao.train.trainers import build_trainer, training_arguments, weights_dtype  # noqa: E402

PROMPT_TOKENS, RESPONSE_TOKENS = 48, 200


def fixed_length_pairs(tokenizer, n: int) -> list[dict[str, list[int]]]:
    """Pairs of real words, cut to exact token counts so that every step does the same work."""
    words = ("the model writes a careful answer about gardens rivers music and code " * 200).split()
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    end = end_of_turn_id(tokenizer)
    header = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    prompt_head = tokenizer(header, add_special_tokens=False)["input_ids"]
    prompt = (prompt_head + ids)[:PROMPT_TOKENS]
    return [
        {
            "prompt_ids": prompt,
            "chosen_ids": ids[i : i + RESPONSE_TOKENS - 1] + [end],
            "rejected_ids": ids[i + 7 : i + 7 + RESPONSE_TOKENS - 1] + [end],
        }
        for i in range(n)
    ]


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - transformers' callback signature
        self.ends.append(time.perf_counter())


def measure(config: TrainConfig, pairs: list[dict], steps: int, compute: torch.dtype) -> float:
    """Seconds per optimiser step over steps 2..N, computing in ``compute`` as `sao.train.run` sets it up."""
    import datasets

    weights = weights_dtype(compute, lora=False, sharded=False)
    loaded = load_model("smollm2-135m", device="cpu", dtype=str(weights).removeprefix("torch."))
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(config, Path(out), compute=compute, progress=False)
        args.max_steps = steps
        clock = StepClock()
        trainer = build_trainer(
            config, loaded.model, loaded.tokenizer, datasets.Dataset.from_list(pairs), args, [clock]
        )
        trainer.train()
    return (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model("smollm2-135m", device="cpu", dtype="float32")
    params = sum(p.numel() for p in loaded.model.parameters())
    pairs = fixed_length_pairs(loaded.tokenizer, args.batch * args.steps)
    tokens_per_step = args.batch * (2 * PROMPT_TOKENS + 2 * RESPONSE_TOKENS)
    base = dict(
        trainer="simpo", learning_rate=1e-6, batch_size=args.batch, max_length=512, report_to="none", save_steps=10**6
    )
    info = machine_record(args.threads)  # the peaks, measured before training allocates anything
    auto = str(pick_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    # (name, precision, gradient checkpointing): both precisions as the recipes train, then the
    # checkpointing lever in the precision `auto` picks here.
    variants = [
        ("float32", "float32", True),
        ("bfloat16", "bfloat16", True),
        (f"{auto}, checkpointing off", auto, False),
    ]
    rows = {}
    for name, precision, checkpointing in variants:
        config = validate(TrainConfig, {**base, "gradient_checkpointing": checkpointing, "dtype": precision})
        seconds = measure(config, pairs, args.steps, getattr(torch, precision))
        tps = tokens_per_step / seconds
        rows[name] = {
            "precision": precision,
            "gradient_checkpointing": checkpointing,
            "seconds_per_step": round(seconds, 3),
            "tokens_per_second": round(tps, 1),
            "mfu": round(6 * params * tps / peak_flops(info, precision), 4),
            "mfu_vs_fp32_matmul_peak": round(6 * params * tps / peak_flops(info, "float32"), 4),
        }
        print(f"{name}: {seconds:.2f} s/step, {tps:.1f} tok/s", flush=True)
    fastest = max(("float32", "bfloat16"), key=lambda n: rows[n]["tokens_per_second"])
    ckpt_ratio = rows[f"{auto}, checkpointing off"]["tokens_per_second"] / rows[auto]["tokens_per_second"]
    bf16_ratio = rows["bfloat16"]["tokens_per_second"] / rows["float32"]["tokens_per_second"]
    result = {
        "benchmark": "train_throughput",
        "auto_dtype": auto,
        "auto_is_fastest": fastest == auto,
        "simpo_tokens_per_second": rows[auto]["tokens_per_second"],
        "simpo_mfu": rows[auto]["mfu"],
        "speedup_bf16_vs_fp32": round(bf16_ratio, 2),
        "speedup_checkpointing_off_vs_on": round(ckpt_ratio, 2),
        "variants": rows,
        "machine": info,
        "config": {
            "model": "smollm2-135m",
            "parameters": params,
            "batch": args.batch,
            "timed_steps": args.steps - 1,
            "tokens_per_step": tokens_per_step,
            "prompt_tokens": PROMPT_TOKENS,
            "response_tokens": RESPONSE_TOKENS,
        },
    }
    bf16 = "native" if info["bf16_native"] else "emulated"
    lines = [
        "",
        f"SimPO (CPOTrainer) on smollm2-135m, batch {args.batch} pairs of {PROMPT_TOKENS}+2x{RESPONSE_TOKENS} "
        f"tokens, steps 2..{args.steps} timed; bf16 is autocast over float32 master weights ({bf16} on this CPU). "
        "MFU = 6 x parameters x tokens/s over the matmul peak, above, of the precision the step computes in. "
        f"`train.dtype: auto` picks {auto} here; the faster precision was {fastest} ({bf16_ratio:.2f}x bf16 / fp32).",
        "",
        "| variant | s/step | tokens/s | MFU (own precision's peak) | MFU vs fp32 peak |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name}{', checkpointing on' if r['gradient_checkpointing'] else ''}"
            f"{' (auto)' if r['precision'] == auto and r['gradient_checkpointing'] else ''} | "
            f"{r['seconds_per_step']} | {r['tokens_per_second']} | {r['mfu']:.1%} | "
            f"{r['mfu_vs_fp32_matmul_peak']:.1%} |"
            for name, r in rows.items()
        ),
        f"| ratio checkpointing off / on ({auto}) | | {ckpt_ratio:.2f}x | | |",
    ]
    path = write_result("train_throughput", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
