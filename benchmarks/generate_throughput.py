"""Generation throughput of sao's engines against plain ``model.generate``, in one run.

Every method runs in one process, on the same prompts and token budget:

- ``llamacpp``: `LlamaCppEngine.generate` on the embedded model's own GGUF (Q4_1), with
  continuous refill of finished rows (extra ``sao[llamacpp]``);
- ``engine``: `TransformersEngine.generate` (float32 here), rows released as they finish;
- ``batched_generate``: ``model.generate`` on left-padded batches of the same size and order;
- ``naive_loop``: ``model.generate`` on one prompt at a time, over the first ``--naive-prompts``
  prompts (greedy, run once: the slow baseline; its rate does not depend on how many prompts);
- ``*_single``: the two engines with batch size 1, over the first ``--single-prompts``
  prompts: the single-stream rate.

The budget defaults to 256 new tokens, the generate stage's default: answers then end at
their own EOS at different lengths, as SAO's sampled responses do. Tokens counted are those
before the first EOS (pad tokens that ``generate`` keeps producing for finished rows do not
count). Greedy runs check correctness: the transformers engine, batched and naive generate
should give identical text; llama.cpp runs the quantised weights with 8-bit activations, so
its greedy text is compared by common-prefix length. Sampled runs use temperature 0.7,
top-p 0.95. Times are medians of ``--reps`` runs, interleaved across methods.

Headline fields: ``speedup_vs_batched_generate`` and ``speedup_vs_naive_loop`` are the
fastest engine's sampled rate at the full batch over sampled batched ``generate`` and over
the naive loop. ``compute_bound_tok_s`` is what 2 x parameters FLOP per token allows at the
fp32 and bf16 matmul peaks measured at the start of the same run (`machine.machine_record`);
each row's "of bound" is its rate over the bound of the dtype it computes in.

Usage: python benchmarks/generate_throughput.py [--prompts 32 --max-new-tokens 256 --batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from machine import compute_bound_tok_s, machine_record  # noqa: E402
from report import median_time, write_result  # noqa: E402
from sao.engine import SamplingParams  # noqa: E402
from sao.engine.batching import left_pad  # noqa: E402
from sao.engine.chat_template import encode_prompts  # noqa: E402
from sao.engine.config import EngineSection  # noqa: E402
from sao.engine.factory import build_engine  # noqa: E402
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


def median_rate(measured: list[tuple[float, int, float]]) -> tuple[float, int, float]:
    """The run with the median rate: (tok/s, tokens, seconds)."""
    return sorted(measured)[(len(measured) - 1) // 2]


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--single-prompts", type=int, default=4)
    parser.add_argument("--naive-prompts", type=int, default=8)
    parser.add_argument("--refill-prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    info = machine_record(args.threads)  # the matmul peaks the compute bound comes from, measured first

    loaded = load_model(args.model, dtype=args.dtype)
    engine = TransformersEngine(loaded, max_batch_size=args.batch_size, progress=False)
    single = TransformersEngine(loaded, max_batch_size=1, progress=False)
    llama_settings = {"backend": "llamacpp", "llamacpp": {"n_threads": args.threads}}
    llama = build_engine(args.model, EngineSection.model_validate(llama_settings | {"batch_size": args.batch_size}))
    llama_single = build_engine(args.model, EngineSection.model_validate(llama_settings | {"batch_size": 1}))
    q8 = {"backend": "llamacpp", "batch_size": 1, "llamacpp": {"n_threads": args.threads, "weights": "q8_0"}}
    llama_single_q8 = build_engine(args.model, EngineSection.model_validate(q8))
    llamas = [llama, llama_single, llama_single_q8]
    for e in llamas:
        e.progress = False
    convs = make_prompts(args.prompts)
    encoded = encode_prompts(engine.tokenizer, convs)
    # Longest first, as the engine's buckets do, so batched generate sees the same batches.
    order = sorted(range(len(convs)), key=lambda i: -len(encoded[i]))
    prompts, convs_sorted = [encoded[i] for i in order], [convs[i] for i in order]
    singles = convs_sorted[: args.single_prompts]
    # More prompts than the batch holds: the transformers engine runs length buckets one after
    # the other, each draining to its longest row; llama.cpp refills a finished row's stream.
    refill = make_prompts(args.refill_prompts)
    max_new = args.max_new_tokens
    greedy = SamplingParams(temperature=0, max_new_tokens=max_new)
    sampled = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=max_new, seed=0)

    def run(e, conversations, params: SamplingParams) -> list[list[int]]:
        return [c.samples[0].token_ids for c in e.generate(conversations, params)]

    with torch.inference_mode():
        for e in (engine, llama):  # warm-up: first calls allocate and tune kernels
            e.generate(convs_sorted[:2], SamplingParams(temperature=0, max_new_tokens=8))
        hf_generate(engine, prompts[:2], 2, 8, sample=False)

        # name: (function, repetitions, decoding)
        methods = {
            "llamacpp": (lambda: run(llama, convs_sorted, greedy), args.reps, "greedy"),
            "engine": (lambda: run(engine, convs_sorted, greedy), args.reps, "greedy"),
            "batched_generate": (
                lambda: hf_generate(engine, prompts, args.batch_size, max_new, False),
                args.reps,
                "greedy",
            ),
            "naive_loop": (
                lambda: hf_generate(engine, prompts[: args.naive_prompts], 1, max_new, False),
                1,
                "greedy",
            ),
            "llamacpp_sampled": (lambda: run(llama, convs_sorted, sampled), args.reps, "sampled"),
            "engine_sampled": (lambda: run(engine, convs_sorted, sampled), args.reps, "sampled"),
            "batched_generate_sampled": (
                lambda: hf_generate(engine, prompts, args.batch_size, max_new, True),
                args.reps,
                "sampled",
            ),
            "llamacpp_refill": (lambda: run(llama, refill, sampled), args.reps, f"sampled, {len(refill)} prompts"),
            "engine_refill": (lambda: run(engine, refill, sampled), args.reps, f"sampled, {len(refill)} prompts"),
            "llamacpp_single": (lambda: run(llama_single, singles, sampled), args.reps, "sampled, batch 1"),
            "llamacpp_single_q8_0": (lambda: run(llama_single_q8, singles, sampled), args.reps, "sampled, batch 1"),
            "engine_single": (lambda: run(single, singles, sampled), args.reps, "sampled, batch 1"),
        }
        # Interleave the repetitions (A B C A B C ...) so that a slow spell of this shared
        # machine hits every method alike rather than one method's block of runs.
        # Unseeded sampling (plain generate) emits a different number of tokens each run, so
        # the figure is the median of per-run rates, reported with that run's tokens and time.
        runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in methods}
        outputs: dict[str, list[list[int]]] = {}
        for rep in range(args.reps):
            for name, (fn, reps, _) in methods.items():
                if rep < reps:
                    seconds, outputs[name] = median_time(fn, 1)
                    count = sum(len(t) for t in outputs[name])
                    runs[name].append((count / seconds, count, seconds))
                    print(f"rep {rep} {name:26s} {count:6d} tok {seconds:7.2f} s", flush=True)
    for e in llamas:
        e.close()

    rows = {}
    for name, measured in runs.items():
        rate, count, seconds = median_rate(measured)
        rows[name] = {"seconds": round(seconds, 3), "tokens": count, "tok_s": round(rate, 1), "reps": len(measured)}
    same_text = sum(a == b for a, b in zip(outputs["engine"], outputs["batched_generate"]))
    same_naive = sum(a == b for a, b in zip(outputs["engine"], outputs["naive_loop"]))
    prefixes = sorted(common_prefix(a, b) for a, b in zip(outputs["llamacpp"], outputs["engine"]))
    llama_identical = sum(a == b for a, b in zip(outputs["llamacpp"], outputs["engine"]))
    best = max(("llamacpp_sampled", "engine_sampled"), key=lambda n: rows[n]["tok_s"])

    def ratio(a: str, b: str) -> float:
        return round(rows[a]["tok_s"] / rows[b]["tok_s"], 2)

    # The bound: 2 x parameters FLOP per token at the measured matmul peak of the torch dtype
    # (llama.cpp rows against the fp32 one: x86 CPUs without AVX512-FP16 multiply its float16 weights in float32).
    params = sum(p.numel() for p in loaded.model.parameters())
    dtype = str(loaded.model.dtype).removeprefix("torch.")
    bounds = {d: round(compute_bound_tok_s(info, d, params)) for d in ("float32", "bfloat16")}
    bound = bounds.get(dtype, bounds["float32"])
    result = {
        "benchmark": "generate_throughput",
        "fastest_engine": best.removesuffix("_sampled"),
        "sampled_tok_s": rows[best]["tok_s"],
        "speedup_vs_batched_generate": ratio(best, "batched_generate_sampled"),
        "speedup_vs_naive_loop": ratio(best, "naive_loop"),
        "single_stream_tok_s": {
            "llamacpp_f16": rows["llamacpp_single"]["tok_s"],
            "llamacpp_q8_0": rows["llamacpp_single_q8_0"]["tok_s"],
        },
        "speedup_single_stream_llamacpp_vs_transformers_engine": {
            "f16": ratio("llamacpp_single", "engine_single"),
            "q8_0": ratio("llamacpp_single_q8_0", "engine_single"),
        },
        "speedup_refill_llamacpp_vs_transformers_engine": ratio("llamacpp_refill", "engine_refill"),
        "speedup_transformers_engine_vs_batched_generate": {
            "greedy": ratio("engine", "batched_generate"),
            "sampled": ratio("engine_sampled", "batched_generate_sampled"),
        },
        "greedy_outputs_identical_engine_vs_batched_generate": f"{same_text}/{len(prompts)}",
        "greedy_outputs_identical_engine_vs_naive_loop": f"{same_naive}/{len(outputs['naive_loop'])}",
        "greedy_llamacpp_vs_engine": {
            "identical": f"{llama_identical}/{len(prompts)}",
            "median_common_prefix_tokens": prefixes[len(prefixes) // 2],
            "min_common_prefix_tokens": prefixes[0],
        },
        "compute_bound_tok_s": bounds,
        "sampled_share_of_bound": round(
            rows[best]["tok_s"] / (bounds["float32"] if best.startswith("llamacpp") else bound), 3
        ),
        "machine": info,
        "config": {
            "model": args.model,
            "parameters": params,
            "dtype": dtype,
            "llamacpp_weights": Path(llama.model_path).name,
            "prompts": args.prompts,
            "single_stream_prompts": args.single_prompts,
            "naive_loop_prompts": args.naive_prompts,
            "max_new_tokens": max_new,
            "batch_size": args.batch_size,
        },
        "methods": rows,
    }
    lines = [
        f"Model {args.model}: transformers in {result['config']['dtype']}, llama.cpp on "
        f"{result['config']['llamacpp_weights']}. {args.prompts} prompts, max_new_tokens {max_new}, batch size "
        f"{args.batch_size} (refill rows: {args.refill_prompts} prompts; single-stream rows: batch 1, first "
        f"{args.single_prompts} prompts; llama.cpp runs float16 weights except the q8_0 row); median of "
        f"{args.reps} interleaved runs (naive loop: 1 run over the first {args.naive_prompts} prompts). Greedy text "
        f"of the transformers engine identical to batched generate on {same_text}/{len(prompts)} prompts and to "
        f"the naive loop on {same_naive}/{len(outputs['naive_loop'])}; llama.cpp vs transformers engine: "
        f"{llama_identical}/{len(prompts)} identical, median common prefix {prefixes[len(prefixes) // 2]} tokens. "
        f"Compute bound from this run's matmul peaks (2 x {params / 1e6:.0f}M FLOP per token): fp32 "
        f"{bounds['float32']} tok/s, bf16 {bounds['bfloat16']} tok/s; 'of bound' is against the {dtype} bound "
        f"for the transformers rows and the fp32 one for llama.cpp's.",
        "",
        "| method | decoding | tokens | seconds | tok/s | of bound | vs batched generate | vs naive loop |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = {"greedy": "batched_generate", "sampled": "batched_generate_sampled"}
    for name, (_, _, mode) in methods.items():
        r = rows[name]
        vs_batched = f"{ratio(name, baseline[mode])}x" if mode in baseline else "n/a (other prompts)"
        of_bound = r["tok_s"] / (bounds["float32"] if name.startswith("llamacpp") else bound)
        cells = [name, mode, r["tokens"], f"{r['seconds']:.2f}", f"{r['tok_s']:.1f}", f"{of_bound:.0%}", vs_batched]
        cells.append(f"{ratio(name, 'naive_loop')}x")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    path = write_result("generate_throughput", result, "\n".join(lines))
    print(
        f"{best}: {rows[best]['tok_s']} tok/s sampled; {result['speedup_vs_batched_generate']}x batched generate, ",
        end="",
    )
    print(
        f"{result['speedup_vs_naive_loop']}x naive loop; single stream {result['single_stream_tok_s']} tok/s -> {path}"
    )


if __name__ == "__main__":
    main()
