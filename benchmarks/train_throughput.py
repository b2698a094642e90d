"""SimPO training throughput on the embedded default model: tokens/s and MFU, on this machine.

What is timed: optimiser steps 2..N of ``trainer.train()`` for sao's SimPO trainer (TRL's
CPOTrainer with sao's tokenisation), from the end of step 1 to the end of step N, so model
loading, tokenisation, the first step's warm-up and checkpoint saving are outside it.
Every pair has the same token counts (no padding), so each step processes the same tokens:
``batch x (2 x prompt + chosen + rejected)``.

MFU = 6 x parameters x tokens/s / peak FLOP/s, with the float32 matmul peak measured in the
same run (`machine.machine_record`: the practical peak of this machine's dense layers, below
the cores' theoretical FMA rate). Attention's own FLOPs are left out of the numerator, as in
the usual 6ND estimate. Training runs in float32 on every machine, so that the figures
compare across CPUs with and without native bf16; the bf16 peak is recorded beside it, and
the MFU against it is given where bf16 is native.

Two variants, measured in one run: gradient checkpointing on (the shipped recipes' setting,
recipes/quickstart-cpu.yaml, and sao's default) against off; their ratio is reported.

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
from sao.models import load_model  # noqa: E402
from sao.recipe import validate  # noqa: E402
from sao.train.config import TrainConfig  # noqa: E402
from sao.train.tokenize import end_of_turn_id  # noqa: E402
from sao.train.trainers import build_trainer, training_arguments  # noqa: E402

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


def measure(config: TrainConfig, pairs: list[dict], steps: int) -> float:
    """Seconds per optimiser step over steps 2..N."""
    import datasets

    loaded = load_model("smollm2-135m", device="cpu", dtype="float32")
    with tempfile.TemporaryDirectory() as out:
        args = training_arguments(config, Path(out), compute=torch.float32, progress=False)
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
    peak_fp32 = peak_flops(info, "float32")
    # Against an emulated bf16 peak (slower than fp32) an MFU would mean nothing: only where it is native.
    peak_bf16 = peak_flops(info, "bfloat16") if info["bf16_native"] else None
    rows = {}
    for name, checkpointing in (("checkpointing_on", True), ("checkpointing_off", False)):
        config = validate(TrainConfig, {**base, "gradient_checkpointing": checkpointing})
        seconds = measure(config, pairs, args.steps)
        tps = tokens_per_step / seconds
        rows[name] = {
            "seconds_per_step": round(seconds, 3),
            "tokens_per_second": round(tps, 1),
            "mfu_vs_fp32_matmul_peak": round(6 * params * tps / peak_fp32, 4),
        }
        if peak_bf16:
            rows[name]["mfu_vs_bf16_matmul_peak"] = round(6 * params * tps / peak_bf16, 4)
    ratio = rows["checkpointing_off"]["tokens_per_second"] / rows["checkpointing_on"]["tokens_per_second"]
    result = {
        "benchmark": "train_throughput",
        "simpo_tokens_per_second": rows["checkpointing_on"]["tokens_per_second"],
        "simpo_mfu": rows["checkpointing_on"]["mfu_vs_fp32_matmul_peak"],
        "speedup_checkpointing_off_vs_on": round(ratio, 2),
        "variants": rows,
        "machine": info,
        "config": {
            "model": "smollm2-135m",
            "parameters": params,
            "dtype": "float32",
            "batch": args.batch,
            "timed_steps": args.steps - 1,
            "tokens_per_step": tokens_per_step,
            "prompt_tokens": PROMPT_TOKENS,
            "response_tokens": RESPONSE_TOKENS,
        },
    }
    bf16_header = " MFU vs bf16 matmul peak |" if peak_bf16 else ""
    lines = [
        "",
        f"SimPO (CPOTrainer) on smollm2-135m, fp32 on every machine, batch {args.batch} pairs of "
        f"{PROMPT_TOKENS}+2x{RESPONSE_TOKENS} tokens, steps 2..{args.steps} timed; MFU = 6 x parameters x tokens/s "
        "over the matmul peak above"
        + ("." if peak_bf16 else " (fp32 only: bf16 is emulated on this CPU, slower than fp32)."),
        "",
        "| variant | s/step | tokens/s | MFU vs fp32 matmul peak |" + bf16_header,
        "|---|---:|---:|---:|" + ("---:|" if peak_bf16 else ""),
        *(
            f"| gradient {name.replace('_', ' ')}{' (shipped recipes)' if name == 'checkpointing_on' else ''} | "
            f"{r['seconds_per_step']} | {r['tokens_per_second']} | {r['mfu_vs_fp32_matmul_peak']:.1%} |"
            + (f" {r['mfu_vs_bf16_matmul_peak']:.1%} |" if peak_bf16 else "")
            for name, r in rows.items()
        ),
        f"| ratio off / on | | {ratio:.2f}x | |" + (" |" if peak_bf16 else ""),
    ]
    path = write_result("train_throughput", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
