"""Generation throughput of the transformers engine against plain ``model.generate``.

All three methods run in one process, on the same prompts and token budget, with the
same model and dtype:

- ``engine``: `TransformersEngine.generate` with its batch size;
- ``batched_generate``: ``model.generate`` on left-padded batches of the same size and order;
- ``naive_loop``: ``model.generate`` on one prompt at a time.

The budget defaults to 256 new tokens, the generate stage's default: answers then end at
their own EOS at different lengths, as SAO's sampled responses do, which is where the
engine's early release of finished rows counts. Tokens counted are those before the
first EOS (pad tokens that ``generate`` keeps producing for finished rows do not count).
Greedy decoding is the headline, so every method should produce the same text and token
count; a sampled run (temperature 0.7, top-p 0.95) of engine and batched generate follows.
Times are medians of ``--reps`` runs, interleaved across methods (the naive loop runs once: it is the slow baseline).

Usage: python benchmarks/generate_throughput.py [--prompts 32 --max-new-tokens 256 --batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from report import machine_info, machine_line, median_time, write_result  # noqa: E402
from sao.engine import SamplingParams  # noqa: E402
from sao.engine.batching import left_pad  # noqa: E402
from sao.engine.chat_template import encode_prompts  # noqa: E402
from sao.engine.transformers_engine import TransformersEngine  # noqa: E402
from sao.models import load_model  # noqa: E402

TOPICS = [
    "the water cycle",
    "how vaccines work",
    "the French revolution",
    "binary search",
    "photosynthesis",
    "compound interest",
    "black holes",
    "the causes of inflation",
    "how to brew coffee",
    "plate tectonics",
    "the rules of chess",
    "machine learning",
    "the Roman empire",
    "climate change",
    "how a bicycle works",
    "the human heart",
    "recursion in programming",
    "supply and demand",
    "the moon landing",
    "volcanoes",
]
STYLES = ["Explain {} to a ten-year-old.", "Write a short paragraph about {}.", "What are three facts about {}?"]


def make_prompts(count: int) -> list[list[dict[str, str]]]:
    texts = [STYLES[i % len(STYLES)].format(TOPICS[i % len(TOPICS)]) for i in range(count)]
    return [[{"role": "user", "content": t}] for t in texts]


def count_until_eos(row: list[int], eos: set[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in eos:
            return row[:i]
    return row


def hf_generate(
    engine: TransformersEngine, prompts: list[list[int]], batch_size: int, max_new: int, sample: bool
) -> list[list[int]]:
    """Plain ``model.generate`` over batches; returns generated tokens per prompt (before EOS)."""
    outputs = []
    extra = dict(do_sample=True, temperature=0.7, top_p=0.95, top_k=0) if sample else dict(do_sample=False)
    for start in range(0, len(prompts), batch_size):
        ids, mask, _ = left_pad(prompts[start : start + batch_size], engine.pad_id, engine.device)
        out = engine.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, pad_token_id=engine.pad_id, **extra
        )
        outputs += [count_until_eos(row, engine.eos_ids) for row in out[:, ids.shape[1] :].tolist()]
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, dtype=args.dtype)
    engine = TransformersEngine(loaded, max_batch_size=args.batch_size, progress=False)
    convs = make_prompts(args.prompts)
    encoded = encode_prompts(engine.tokenizer, convs)
    # Longest first, as the engine's buckets do, so batched generate sees the same batches.
    order = sorted(range(len(convs)), key=lambda i: -len(encoded[i]))
    prompts, convs_sorted = [encoded[i] for i in order], [convs[i] for i in order]
    max_new = args.max_new_tokens
    greedy = SamplingParams(temperature=0, max_new_tokens=max_new)
    sampled = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=max_new, seed=0)

    with torch.inference_mode():
        engine.generate(convs_sorted[:2], greedy)  # warm-up: first calls allocate and tune kernels
        hf_generate(engine, prompts[:2], 2, 8, sample=False)

        def run_engine(params: SamplingParams) -> list[list[int]]:
            return [c.samples[0].token_ids for c in engine.generate(convs_sorted, params)]

        methods = {
            "engine": (lambda: run_engine(greedy), args.reps),
            "batched_generate": (lambda: hf_generate(engine, prompts, args.batch_size, max_new, False), args.reps),
            "naive_loop": (lambda: hf_generate(engine, prompts, 1, max_new, False), 1),
            "engine_sampled": (lambda: run_engine(sampled), args.reps),
            "batched_generate_sampled": (
                lambda: hf_generate(engine, prompts, args.batch_size, max_new, True),
                args.reps,
            ),
        }
        # Interleave the repetitions (A B C A B C ...) so that a slow spell of this shared
        # machine hits every method alike rather than one method's block of runs.
        # Unseeded sampling (plain generate) emits a different number of tokens each run, so
        # the figure is the median of per-run rates, reported with that run's tokens and time.
        runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in methods}
        outputs: dict[str, list[list[int]]] = {}
        for rep in range(args.reps):
            for name, (fn, reps) in methods.items():
                if rep < reps:
                    seconds, outputs[name] = median_time(fn, 1)
                    count = sum(len(t) for t in outputs[name])
                    runs[name].append((count / seconds, count, seconds))
                    print(f"rep {rep} {name:26s} {count:6d} tok {seconds:7.2f} s", flush=True)
        rows = {}
        for name, measured in runs.items():
            rate, count, seconds = sorted(measured)[(len(measured) - 1) // 2]
            rows[name] = {
                "seconds": round(seconds, 3),
                "tokens": count,
                "tok_s": round(rate, 1),
                "reps": len(measured),
                "outputs": outputs[name],
            }
            print(f"{name:26s} {count:6d} tok  {seconds:7.2f} s  {count / seconds:8.1f} tok/s", flush=True)

    same_text = sum(
        a == b == c
        for a, b, c in zip(
            rows["engine"]["outputs"], rows["batched_generate"]["outputs"], rows["naive_loop"]["outputs"]
        )
    )
    for row in rows.values():
        del row["outputs"]
    info = machine_info(args.threads)
    result = {
        "benchmark": "generate_throughput",
        "speedup_vs_naive_loop": round(rows["engine"]["tok_s"] / rows["naive_loop"]["tok_s"], 2),
        "speedup_vs_batched_generate": round(rows["engine"]["tok_s"] / rows["batched_generate"]["tok_s"], 2),
        "speedup_sampled_vs_batched_generate_sampled": round(
            rows["engine_sampled"]["tok_s"] / rows["batched_generate_sampled"]["tok_s"], 2
        ),
        "greedy_outputs_identical": f"{same_text}/{len(prompts)}",
        "machine": info,
        "config": {
            "model": args.model,
            "dtype": str(loaded.model.dtype).removeprefix("torch."),
            "prompts": args.prompts,
            "max_new_tokens": max_new,
            "batch_size": args.batch_size,
        },
        "methods": rows,
    }
    lines = [
        machine_line(info),
        f"Model {args.model} ({result['config']['dtype']}), {args.prompts} prompts, "
        f"max_new_tokens {max_new}, batch size {args.batch_size}; median of {args.reps} interleaved runs "
        f"(naive loop: 1). Greedy outputs identical across the three methods: {same_text}/{len(prompts)} prompts.",
        "",
        "| method | decoding | tokens | seconds | tok/s | engine speedup |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, base in [
        ("engine", None),
        ("batched_generate", "engine"),
        ("naive_loop", "engine"),
        ("engine_sampled", None),
        ("batched_generate_sampled", "engine_sampled"),
    ]:
        r = rows[name]
        speed = f"{rows[base]['tok_s'] / r['tok_s']:.2f}x" if base else "1.00x (reference)"
        mode = "sampled (T 0.7, top-p 0.95)" if name.endswith("sampled") else "greedy"
        cells = [name.removesuffix("_sampled"), mode, r["tokens"], f"{r['seconds']:.2f}", f"{r['tok_s']:.1f}", speed]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    path = write_result("generate_throughput", result, "\n".join(lines))
    print(f"speedup vs naive loop {result['speedup_vs_naive_loop']}x, ", end="")
    print(f"vs batched generate {result['speedup_vs_batched_generate']}x -> {path}")


if __name__ == "__main__":
    main()
