"""Judge throughput: the log-prob judge against the generate judge, on the same pairs and engine.

The pairs are real: MT-Bench first-turn questions (FastChat, Apache-2.0; the files are in the
repository, tests/data/mt_bench and benchmarks/data/mt_bench) with the answers of
gpt-3.5-turbo and alpaca-13b, judged in both orders as the SAO judge stage does (``order:
swap``), so every pair is two judge requests. Long answers make long judge prompts; the
answers are cut to ``--answer-chars`` characters to keep the run short.

Methods, timed in one process on the same judge requests:

- ``logprob``: `sao.judge.verdict.run_judge` in mode ``logprob``: one scoring pass per request,
  the continuations ending in "1" and "2" sharing it (`sao.engine.scoring`);
- ``logprob_unshared``: the same two continuations scored in separate calls, i.e. two passes
  per request, as before the shared pass existed (the lever's own ratio);
- ``generate``: mode ``generate``: a greedy ranking of up to ``max_new_tokens`` (the judge
  config's default, 16) decoded and parsed;
- ``logprob_no_reuse``: the log-prob judge with the engines' prefix KV reuse off (the transformers
  engine's prefix cache, llama.cpp's prefix stream): the judge as it was when issue 21 was filed. The
  judge prompts of one batch share the instructions (and both orders of a pair the question too), which
  the reuse computes once;
- ``logprob_cut``: the log-prob judge on answers cut to ``--cut-tokens`` tokens
  (``judge.max_answer_tokens``, `sao.judge.cut`): what cutting long answers saves;
- ``logprob_<dtype>`` (transformers only): the engine in the precision ``dtype: auto`` does not pick
  here, with how far its verdicts lie from the chosen precision's (``verdicts_vs_other_dtype``).

Both in-process engines are measured (transformers, and llama.cpp when installed). Figures
are pairs/s, medians of ``--reps`` interleaved runs. The compute bound beside them is the
pairs/s at which the judge prompts alone (2 x parameters FLOP per token) would take all of
the matmul peak measured in the same run (`machine.machine_record`): the peak of the
transformers engine's dtype (bf16 where native), and the fp32 one for llama.cpp (its
float16 weights are multiplied in float32 on x86 CPUs without AVX512-FP16).

Usage: python benchmarks/judge_throughput.py [--pairs 12 --answer-chars 1200 --reps 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from machine import compute_bound_tok_s, machine_record  # noqa: E402
from mt_bench_data import answers_file, mt_bench_file  # noqa: E402
from rain_decode import without_kv_reuse  # noqa: E402
from report import median_time, write_result  # noqa: E402
from sao.engine.config import EngineSection  # noqa: E402
from sao.engine.factory import build_engine  # noqa: E402
from sao.eval.formats import read_instructions, read_outputs  # noqa: E402
from sao.judge.config import JudgeSection  # noqa: E402
from sao.judge.cut import Cut, answer_cut  # noqa: E402
from sao.judge.verdict import JudgeRequest, run_judge  # noqa: E402
from sao.synth.ranking import RANKING_PREFIX, build_judge_prompt  # noqa: E402


def judge_requests(mt_bench: Path | None, pairs: int, answer_chars: int, cut: Cut = list) -> list[JudgeRequest]:
    """Both orders of ``pairs`` answer pairs, as the judge stage builds them (``mt_bench``: see `mt_bench_file`),
    the answers cut to ``answer_chars`` characters and then by ``cut`` (`sao.judge.cut`)."""
    questions = read_instructions(mt_bench_file("question.jsonl", mt_bench))
    a = read_outputs(answers_file("gpt-3.5-turbo", mt_bench))
    b = read_outputs(answers_file("alpaca-13b", mt_bench))
    chosen = random.Random(0).sample(questions, pairs)
    requests = []
    for row, q in enumerate(chosen):
        answers = cut([a[q.id].text[:answer_chars], b[q.id].text[:answer_chars]])
        for first, second in ((0, 1), (1, 0)):
            text = build_judge_prompt(q.messages[0]["content"], [answers[first], answers[second]])
            requests.append(JudgeRequest(row, first, second, [{"role": "user", "content": text}]))
    return requests


class Timed(tuple):
    """(seconds, verdicts) of a run timed inside its method."""


def timed_without_reuse(engine, requests: list[JudgeRequest], max_new: int) -> Timed:
    def judge(plain) -> Timed:
        elapsed, verdicts = median_time(lambda: run_judge(plain, requests, "logprob", max_new), 1)
        return Timed((elapsed, verdicts))

    return without_kv_reuse(engine, judge)


def unshared(engine, requests: list[JudgeRequest]) -> list:
    """The log-prob judge's two continuations scored in separate calls: no pass is shared."""
    convs = [q.conversation for q in requests]
    return engine.score(convs, [f"{RANKING_PREFIX} 1"] * len(convs)) + engine.score(
        convs, [f"{RANKING_PREFIX} 2"] * len(convs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--mt-bench", type=Path, default=None, help="FastChat MT-Bench data directory (default: the repository's)."
    )
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--answer-chars", type=int, default=1200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cut-tokens", type=int, default=128, help="judge.max_answer_tokens of the cut row")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    info = machine_record(args.threads)  # the matmul peaks the bound comes from, measured first

    requests = judge_requests(args.mt_bench, args.pairs, args.answer_chars)
    max_new = JudgeSection().max_new_tokens
    backends = ["transformers"]
    try:
        import llama_cpp  # noqa: F401

        backends.append("llamacpp")
    except ImportError:
        print("llama-cpp-python is not installed: measuring the transformers engine only", flush=True)

    engines = {b: build_engine(args.model, EngineSection(backend=b), progress=False) for b in backends}
    prompt_tokens = [
        len(t) for t in engines["transformers"].tokenizer([q.conversation[0]["content"] for q in requests])["input_ids"]
    ]
    cut = {
        b: judge_requests(args.mt_bench, args.pairs, args.answer_chars, answer_cut(e, args.cut_tokens))
        for b, e in engines.items()
    }
    chosen = str(engines["transformers"].model.dtype).removeprefix("torch.")
    other = "float32" if chosen == "bfloat16" else "bfloat16"
    other_engine = build_engine(args.model, EngineSection(dtype=other), progress=False)
    methods = {
        f"{b}/{m}": fn
        for b, engine in engines.items()
        for m, fn in {
            "logprob": lambda e=engine: run_judge(e, requests, "logprob", max_new),
            "logprob_no_reuse": lambda e=engine: timed_without_reuse(e, requests, max_new),
            "logprob_unshared": lambda e=engine: unshared(e, requests),
            "logprob_cut": lambda e=engine, b=b: run_judge(e, cut[b], "logprob", max_new),
            "generate": lambda e=engine: run_judge(e, requests, "generate", max_new),
        }.items()
    }
    methods[f"transformers/logprob_{other}"] = lambda: run_judge(other_engine, requests, "logprob", max_new)
    for engine in (*engines.values(), other_engine):  # warm-up: first calls allocate and tune kernels
        run_judge(engine, requests[:2], "generate", 4)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    verdicts: dict[str, list] = {}
    for rep in range(args.reps):
        for name, fn in methods.items():
            elapsed, verdicts[name] = median_time(fn, 1)
            if isinstance(verdicts[name], Timed):  # the time of the judging alone, not of setting reuse off
                elapsed, verdicts[name] = verdicts[name]
            seconds[name].append(elapsed)
            print(f"rep {rep} {name:30s} {elapsed:7.2f} s", flush=True)

    pairs = len(requests) // 2
    rows = {}
    for name, times in seconds.items():
        median = sorted(times)[(len(times) - 1) // 2]
        rows[name] = {"seconds": round(median, 3), "pairs_per_s": round(pairs / median, 3), "reps": len(times)}
    p_chosen = [j.p_first for j in verdicts["transformers/logprob"]]
    p_other = [j.p_first for j in verdicts[f"transformers/logprob_{other}"]]
    versus = {
        "dtype": other,
        "max_abs_p_first_diff": round(max(abs(a - b) for a, b in zip(p_chosen, p_other)), 4),
        "same_side_of_half": f"{sum((a > 0.5) == (b > 0.5) for a, b in zip(p_chosen, p_other))}/{len(p_chosen)}",
    }
    parsed = {b: sum(j.p_first is not None for j in verdicts[f"{b}/generate"]) / len(requests) for b in backends}
    ratios = {
        b: {
            "logprob_vs_generate": round(rows[f"{b}/logprob"]["pairs_per_s"] / rows[f"{b}/generate"]["pairs_per_s"], 2),
            "shared_vs_unshared": round(
                rows[f"{b}/logprob"]["pairs_per_s"] / rows[f"{b}/logprob_unshared"]["pairs_per_s"], 2
            ),
            "kv_reuse_vs_none": round(
                rows[f"{b}/logprob"]["pairs_per_s"] / rows[f"{b}/logprob_no_reuse"]["pairs_per_s"], 2
            ),
            "cut_vs_whole": round(rows[f"{b}/logprob_cut"]["pairs_per_s"] / rows[f"{b}/logprob"]["pairs_per_s"], 2),
        }
        for b in backends
    }
    fastest = max(backends, key=lambda b: rows[f"{b}/logprob"]["pairs_per_s"])
    params = sum(p.numel() for p in engines["transformers"].model.parameters())
    dtype = str(engines["transformers"].model.dtype).removeprefix("torch.")
    bound_dtype = {"transformers": dtype if dtype in ("float32", "bfloat16") else "float32", "llamacpp": "float32"}
    bounds = {
        b: round(compute_bound_tok_s(info, bound_dtype[b], params, tokens=sum(prompt_tokens) / pairs), 3)
        for b in backends
    }
    result = {
        "benchmark": "judge_throughput",
        "speedup_logprob_vs_generate_judge": ratios["transformers"]["logprob_vs_generate"],
        # issue 21's target: the log-prob judge now over the one filed against (no KV reuse), fastest engine
        "speedup_vs_judge_without_kv_reuse": ratios[fastest]["kv_reuse_vs_none"],
        "ratios": ratios,
        "speedup_llamacpp_logprob_vs_transformers_generate_judge": (
            round(rows["llamacpp/logprob"]["pairs_per_s"] / rows["transformers/generate"]["pairs_per_s"], 2)
            if "llamacpp" in backends
            else None
        ),
        "fastest_logprob_engine": fastest,
        "transformers_auto_dtype": chosen,
        "transformers_auto_is_fastest": rows["transformers/logprob"]["seconds"]
        <= rows[f"transformers/logprob_{other}"]["seconds"],
        "verdicts_vs_other_dtype": versus,
        "generate_judge_parse_rate": {b: round(v, 3) for b, v in parsed.items()},
        "compute_bound_pairs_per_s": bounds,
        "machine": info,
        "config": {
            "model": args.model,
            "pairs": pairs,
            "requests": len(requests),
            "answer_chars": args.answer_chars,
            "judge_prompt_tokens_median": sorted(prompt_tokens)[len(prompt_tokens) // 2],
            "parameters": params,
            "transformers_dtype": dtype,
            "generate_max_new_tokens": max_new,
            "cut_tokens": args.cut_tokens,
        },
        "methods": rows,
    }
    lines = [
        f"{pairs} MT-Bench answer pairs (gpt-3.5-turbo vs alpaca-13b, answers cut to {args.answer_chars} characters), "
        f"both orders: {len(requests)} judge requests, median prompt {result['config']['judge_prompt_tokens_median']} "
        f"tokens; generate judge up to {max_new} tokens; 'logprob_cut': answers cut to {args.cut_tokens} tokens "
        f"(judge.max_answer_tokens); median of {args.reps} interleaved runs. Compute bound of "
        "the judge prompts alone at the matmul peak above: "
        + ", ".join(f"{b} ({bound_dtype[b]}) {bounds[b]:.2f} pairs/s" for b in backends)
        + ".",
        "",
        "| engine | judge | seconds | pairs/s | log-prob judge's speedup over this row |",
        "|---|---|---:|---:|---:|",
    ]
    for b in backends:
        base = rows[f"{b}/logprob"]["pairs_per_s"]
        extra = (f"logprob_{other}",) if b == "transformers" else ()
        for m in ("logprob", "logprob_no_reuse", "logprob_unshared", "logprob_cut", *extra, "generate"):
            r = rows[f"{b}/{m}"]
            speed = "1.00x (reference)" if m == "logprob" else f"{base / r['pairs_per_s']:.2f}x"
            lines.append(f"| {b} | {m} | {r['seconds']:.2f} | {r['pairs_per_s']:.3f} | {speed} |")
    lines.append("")
    lines.append(
        f"The transformers engine judges in {chosen} (`dtype: auto`); in {other} its P(slot 1) moved by up to "
        f"{versus['max_abs_p_first_diff']}, on the same side of 0.5 for {versus['same_side_of_half']} requests."
    )
    lines.append("")
    lines.append(
        "Generated rankings that parsed: "
        + ", ".join(f"{b} {parsed[b]:.0%}" for b in backends)
        + " (the log-prob judge always gives a verdict)."
    )
    path = write_result("judge_throughput", result, "\n".join(lines))
    print(f"wrote {path}")
    for engine in engines.values():
        if hasattr(engine, "close"):
            engine.close()


if __name__ == "__main__":
    main()
