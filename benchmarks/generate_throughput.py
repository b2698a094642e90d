"""Generation throughput of sao's engines against plain ``model.generate``, in one run.

Every method runs in one process, on the same prompts and token budget:

- ``llamacpp``: `LlamaCppEngine.generate` on the embedded model's own GGUF (Q4_1), with
  continuous refill of finished rows (extra ``sao[llamacpp]``);
- ``engine``: `TransformersEngine.generate` (float32 here), rows released as they finish;
- ``batched_generate``: ``model.generate`` on left-padded batches of the same size and order;
- ``naive_loop``: ``model.generate`` on one prompt at a time, over the first ``--naive-prompts``
  prompts (greedy, run once: the slow baseline; its rate does not depend on how many prompts);
- ``*_single``: the two engines with batch size 1, over the first ``--single-prompts``
  prompts: the single-stream rate;
- ``*_large_batch``: both engines at ``--large-batch`` (128) sequences over as many prompts, sampled:
  a batch that large reads the weights once for four times the tokens of batch 32;
- ``engine_sampled_<dtype>``: the transformers engine in the precision ``dtype: auto`` does not
  pick on this CPU (float32 where bf16 is native, bf16 where it is emulated), and
  ``llamacpp_sampled_bf16``: llama.cpp on bf16 weights (``engine.llamacpp.weights: bf16``): the
  rows that show whether the default choices were the fast ones.

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
fp32 and bf16 matmul peaks measured at the start of the same run (`machine.machine_record`).
The machine's bound (``bound_tok_s``, issue 21) is the bf16 one where bf16 is native and the
fp32 one elsewhere, whatever an engine computes in: the best any dense path on this CPU could
do. ``share_of_bound`` is the fastest engine's sampled rate over it, and every row's "of bound"
is its rate over the same figure. ``decode_shape_bound_tok_s`` is the bound at the rate of a
batch-32 decode-shaped matmul (`machine.DECODE_SHAPE`), for reading how far the thin GEMMs of
decoding sit below the square peak.

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
    """Plain ``model.generate`` over batches, with transformers' own SDPA attention (the engine switched the
    model to `sao.engine.attention`'s); returns generated tokens per prompt (before EOS)."""
    outputs = []
    extra = dict(do_sample=True, temperature=0.7, top_p=0.95, top_k=0) if sample else dict(do_sample=False)
    engines_attention = engine.model.config._attn_implementation
    engine.model.set_attn_implementation("sdpa")
    try:
        for start in range(0, len(prompts), batch_size):
            ids, mask, _ = left_pad(prompts[start : start + batch_size], engine.pad_id, engine.device)
            out = engine.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new, pad_token_id=engine.pad_id, **extra
            )
            outputs += [count_until_eos(row, engine.eos_ids) for row in out[:, ids.shape[1] :].tolist()]
    finally:
        engine.model.set_attn_implementation(engines_attention)
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
    parser.add_argument("--large-batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    info = machine_record(args.threads)  # the matmul peaks the compute bound comes from, measured first

    loaded = load_model(args.model, dtype=args.dtype)
    engine = TransformersEngine(loaded, max_batch_size=args.batch_size, progress=False)
    single = TransformersEngine(loaded, max_batch_size=1, progress=False)
    dtype = str(loaded.model.dtype).removeprefix("torch.")
    other = "float32" if dtype == "bfloat16" else "bfloat16"  # the precision not chosen, measured beside it
    engine_other = TransformersEngine(
        load_model(args.model, dtype=other), max_batch_size=args.batch_size, progress=False
    )
    llama_settings = {"backend": "llamacpp", "llamacpp": {"n_threads": args.threads}}
    llama = build_engine(args.model, EngineSection.model_validate(llama_settings | {"batch_size": args.batch_size}))
    bf16_settings = {"backend": "llamacpp", "batch_size": args.batch_size}
    bf16_settings["llamacpp"] = {"n_threads": args.threads, "weights": "bf16"}
    llama_bf16 = build_engine(args.model, EngineSection.model_validate(bf16_settings))
    llama_single = build_engine(args.model, EngineSection.model_validate(llama_settings | {"batch_size": 1}))
    q8 = {"backend": "llamacpp", "batch_size": 1, "llamacpp": {"n_threads": args.threads, "weights": "q8_0"}}
    llama_single_q8 = build_engine(args.model, EngineSection.model_validate(q8))
    engine_large = TransformersEngine(loaded, max_batch_size=args.large_batch, progress=False)
    large = {"backend": "llamacpp", "batch_size": args.large_batch, "llamacpp": {"n_threads": args.threads}}
    llama_large = build_engine(args.model, EngineSection.model_validate(large))
    llamas = [llama, llama_bf16, llama_large, llama_single, llama_single_q8]
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
    many = make_prompts(args.large_batch)
    max_new = args.max_new_tokens
    greedy = SamplingParams(temperature=0, max_new_tokens=max_new)
    sampled = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=max_new, seed=0)

    def run(e, conversations, params: SamplingParams) -> list[list[int]]:
        return [c.samples[0].token_ids for c in e.generate(conversations, params)]

    with torch.inference_mode():
        for e in (engine, engine_other, llama, llama_bf16):  # warm-up: first calls allocate and tune kernels
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
            "llamacpp_sampled_bf16": (lambda: run(llama_bf16, convs_sorted, sampled), args.reps, "sampled"),
            "engine_sampled": (lambda: run(engine, convs_sorted, sampled), args.reps, "sampled"),
            f"engine_sampled_{other}": (lambda: run(engine_other, convs_sorted, sampled), args.reps, "sampled"),
            "batched_generate_sampled": (
                lambda: hf_generate(engine, prompts, args.batch_size, max_new, True),
                args.reps,
                "sampled",
            ),
            "llamacpp_refill": (lambda: run(llama, refill, sampled), args.reps, f"sampled, {len(refill)} prompts"),
            "engine_refill": (lambda: run(engine, refill, sampled), args.reps, f"sampled, {len(refill)} prompts"),
            "llamacpp_large_batch": (
                lambda: run(llama_large, many, sampled),
                args.reps,
                f"sampled, batch {args.large_batch}",
            ),
            "engine_large_batch": (
                lambda: run(engine_large, many, sampled),
                args.reps,
                f"sampled, batch {args.large_batch}",
            ),
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
    # Sampled at a batch of 32 or more: the rows the issue-21 target is about.
    full_batch = ("llamacpp_sampled", "llamacpp_sampled_bf16", "engine_sampled", f"engine_sampled_{other}")
    best = max((*full_batch, "llamacpp_large_batch", "engine_large_batch"), key=lambda n: rows[n]["tok_s"])

    def ratio(a: str, b: str) -> float:
        return round(rows[a]["tok_s"] / rows[b]["tok_s"], 2)

    # The bound: 2 x parameters FLOP per token at the measured matmul peak of the machine's fastest
    # native precision (bf16 where native, else fp32), the same figure for every row.
    params = sum(p.numel() for p in loaded.model.parameters())
    bounds = {d: round(compute_bound_tok_s(info, d, params)) for d in ("float32", "bfloat16")}
    bound_dtype = "bfloat16" if info["bf16_native"] else "float32"
    bound = bounds[bound_dtype]
    decode_peak = info["peak_matmul_gflops"][bound_dtype]["decode_shape_gflops"]
    auto_rows = {"engine_sampled": dtype, f"engine_sampled_{other}": other}
    result = {
        "benchmark": "generate_throughput",
        "fastest_engine": best,
        "fastest_batch_size": args.large_batch if best.endswith("large_batch") else args.batch_size,
        "sampled_tok_s": rows[best]["tok_s"],
        "share_of_bound": round(rows[best]["tok_s"] / bound, 3),
        "bound_tok_s": bound,
        "bound_dtype": bound_dtype,
        "bound_peak_gflops": info["peak_matmul_gflops"][bound_dtype]["gflops"],
        "decode_shape_bound_tok_s": round(decode_peak * 1e9 / (2 * params)),
        # `dtype: auto` for the transformers engine, and the default f16 weights for llama.cpp: the faster ones?
        "transformers_auto_dtype": dtype,
        "transformers_auto_is_fastest": max(auto_rows, key=lambda n: rows[n]["tok_s"]) == "engine_sampled",
        "llamacpp_default_f16_is_fastest": rows["llamacpp_sampled"]["tok_s"] >= rows["llamacpp_sampled_bf16"]["tok_s"],
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
            "large_batch": args.large_batch,
        },
        "methods": rows,
    }
    lines = [
        f"Model {args.model}: transformers in {result['config']['dtype']}, llama.cpp on "
        f"{result['config']['llamacpp_weights']}. {args.prompts} prompts, max_new_tokens {max_new}, batch size "
        f"{args.batch_size} (refill rows: {args.refill_prompts} prompts; large-batch rows: batch and prompts "
        f"{args.large_batch}; single-stream rows: batch 1, first {args.single_prompts} prompts; llama.cpp runs "
        f"float16 weights except the bf16 and q8_0 rows; the transformers engine runs {dtype}, `dtype: auto`'s "
        f"pick, except the {other} row); median of "
        f"{args.reps} interleaved runs (naive loop: 1 run over the first {args.naive_prompts} prompts). Greedy text "
        f"of the transformers engine identical to batched generate on {same_text}/{len(prompts)} prompts and to "
        f"the naive loop on {same_naive}/{len(outputs['naive_loop'])}; llama.cpp vs transformers engine: "
        f"{llama_identical}/{len(prompts)} identical, median common prefix {prefixes[len(prefixes) // 2]} tokens. "
        f"Compute bound from this run's matmul peaks (2 x {params / 1e6:.0f}M FLOP per token): fp32 "
        f"{bounds['float32']} tok/s, bf16 {bounds['bfloat16']} tok/s; 'of bound' is against the {bound_dtype} "
        f"bound ({bound} tok/s, this CPU's fastest native precision) for every row; at the batch-32 decode-shaped "
        f"matmul's rate the bound would be {result['decode_shape_bound_tok_s']} tok/s. Fastest at the full batch: "
        f"{best}, {result['share_of_bound']:.0%} of the bound.",
        "",
        "| method | decoding | tokens | seconds | tok/s | of bound | vs batched generate | vs naive loop |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = {"greedy": "batched_generate", "sampled": "batched_generate_sampled"}
    for name, (_, _, mode) in methods.items():
        r = rows[name]
        vs_batched = f"{ratio(name, baseline[mode])}x" if mode in baseline else "n/a (other prompts)"
        of_bound = r["tok_s"] / bound
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
