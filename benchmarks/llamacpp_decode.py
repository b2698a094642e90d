"""llama.cpp's own decode rate at a fixed batch: the ceiling the llama.cpp engine works under.

A bare loop of ``llama_decode`` calls on the context `LlamaCppEngine` builds: every one of
``--batch`` KV streams is prefilled with the same prompt, then each call decodes one token
per stream, the next token being the argmax of its logits (greedy; none of sao's sampler,
stop strings, refill or bookkeeping). Only the decode calls are timed, from the second
(warm) one to the last, so the rate is ``batch x timed calls / seconds``. Streams never
finish, so the batch stays full: unlike `generate_throughput`, nothing drains.

Each weights type the engine can run (``source``: the GGUF as shipped, Q4_1 for the
embedded model; ``f16``; ``bf16``, whose dot products use AVX512-BF16 where the CPU has it;
``q8_0``) is measured at each batch size, interleaved, median of
``--reps``. Each rate is also given as a share of the fp32 compute bound measured in the
same run (`machine.machine_record`: 2 x parameters FLOP per token at the fp32 matmul peak),
a reference for the quantised types rather than their bound.

Usage: python benchmarks/llamacpp_decode.py [--weights source f16 bf16 q8_0] [--batch 1 32 128] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from generate_throughput import make_prompts  # noqa: E402
from machine import compute_bound_tok_s, machine_record  # noqa: E402
from report import write_result  # noqa: E402
from sao.engine.chat_template import encode_prompts  # noqa: E402
from sao.engine.config import EngineSection  # noqa: E402
from sao.engine.factory import build_engine  # noqa: E402


def decode_rate(engine, prompt: list[int], batch: int, tokens: int) -> float:
    """Tokens/s of ``tokens`` greedy decode calls over ``batch`` streams (prefill not timed)."""
    lc, ctx, call = engine.llama_cpp, engine._ctx, engine._batch  # the engine's own context and batch
    lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
    per_call = engine.tokens_per_call

    def submit(rows: list[tuple[int, int, int, bool]]) -> None:  # (token, position, stream, wants logits)
        call.n_tokens = len(rows)
        for n, (token, pos, stream, want) in enumerate(rows):
            call.token[n], call.pos[n], call.n_seq_id[n] = token, pos, 1
            call.seq_id[n][0], call.logits[n] = stream, want
        if lc.llama_decode(ctx, call) != 0:
            raise RuntimeError(f"llama_decode failed ({len(rows)} tokens)")

    def argmax(rows: int) -> list[int]:
        logits = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=(rows, engine.n_vocab))
        return logits.argmax(axis=1).tolist()

    # Prefill: the prompt into every stream, in calls of at most the engine's token budget.
    rows = [(t, i, s, i == len(prompt) - 1) for s in range(batch) for i, t in enumerate(prompt)]
    last = []
    for start in range(0, len(rows), per_call):
        chunk = rows[start : start + per_call]
        submit(chunk)
        last += argmax(sum(want for *_, want in chunk))
    ends = []
    for step in range(tokens):
        submit([(last[s], len(prompt) + step, s, True) for s in range(batch)])
        last = argmax(batch)
        ends.append(time.perf_counter())
    return batch * (len(ends) - 1) / (ends[-1] - ends[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--weights",
        nargs="+",
        default=["source", "f16", "bf16", "q8_0"],
        choices=["source", "f16", "bf16", "q8_0"],
        help="Weights types to measure.",
    )
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 32, 128])
    parser.add_argument("--tokens", type=int, default=64, help="Decode calls per measurement (the first is untimed).")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.tokens < 2:
        parser.error("--tokens: at least 2 (the first decode call is not timed)")
    info = machine_record(args.threads)  # the peak the reference bound comes from, measured first

    engines = {}
    for weights in args.weights:
        settings = {"backend": "llamacpp", "batch_size": max(args.batch)}
        settings["llamacpp"] = {"weights": weights, "n_threads": args.threads, "context_per_sequence": 256}
        engines[weights] = build_engine(args.model, EngineSection.model_validate(settings), progress=False)
    some = next(iter(engines.values()))
    params = some.llama_cpp.llama_model_n_params(some._model)
    prompt = encode_prompts(some.tokenizer, make_prompts(1))[0]
    if len(prompt) + args.tokens > 256:
        parser.error(f"--tokens: the prompt ({len(prompt)} tokens) and {args.tokens} tokens exceed 256 per stream")

    rates: dict[tuple[str, int], list[float]] = {(w, b): [] for w in args.weights for b in args.batch}
    for rep in range(args.reps):  # interleaved: a slow spell of the machine hits every setting alike
        for (weights, batch), measured in rates.items():
            measured.append(decode_rate(engines[weights], prompt, batch, args.tokens))
            print(f"rep {rep} {weights:7s} batch {batch:4d}: {measured[-1]:7.1f} tok/s", flush=True)
    for engine in engines.values():
        engine.close()

    bound = compute_bound_tok_s(info, "float32", params)
    rows = {
        f"{w}/batch{b}": {
            "weights": w,
            "file": engines[w].model_path.name,
            "batch": b,
            "tok_s": round(statistics.median(r), 1),
            "share_of_fp32_bound": round(statistics.median(r) / bound, 3),
        }
        for (w, b), r in rates.items()
    }
    result = {
        "benchmark": "llamacpp_decode",
        "fp32_compute_bound_tok_s": round(bound),
        "rates": rows,
        "machine": info,
        "config": {
            "model": args.model,
            "parameters": params,
            "prompt_tokens": len(prompt),
            "decode_calls": args.tokens,
            "reps": args.reps,
        },
    }
    lines = [
        f"Bare `llama_decode` loop on {args.model} ({params / 1e6:.0f}M parameters): every stream prefilled with the "
        f"same {len(prompt)}-token prompt, then {args.tokens} greedy decode calls of one token per stream (the first "
        f"untimed); median of {args.reps} interleaved runs. fp32 compute bound at this run's peak: {bound:.0f} tok/s.",
        "",
        "| weights | file | batch | tok/s | of fp32 bound |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r['weights']} | {r['file']} | {r['batch']} | {r['tok_s']} | {r['share_of_fp32_bound']:.0%} |"
            for r in rows.values()
        ),
    ]
    path = write_result("llamacpp_decode", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
