"""Does a seeded sample depend on what shares its batch? The transformers engine, per dtype.

Each sequence draws its random numbers from its own generator (`sao.engine.sampler`), so the
draws never depend on the batch; the logits they are compared with are computed in the
batch, padded to its longest prompt. This measures what that leaves: ``--prompts`` prompts
generated together in one batch against each generated alone, with the same seed (sampled,
temperature 0.7, top-p 0.95) and greedy, over ``--max-new-tokens`` tokens, for each dtype in
``--dtypes`` that this machine runs natively (bf16 is skipped where it is emulated). The
figure is how many samples are token-for-token identical, and where the others part.

This is what a resumed stage meets: the rows left after a kill are batched differently from
the uninterrupted run's (docs/engine.md, "What a seed guarantees").

Usage: python benchmarks/batch_invariance.py [--prompts 8 --max-new-tokens 48 --dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from generate_throughput import common_prefix, make_prompts  # noqa: E402
from machine import machine_record  # noqa: E402
from report import write_result  # noqa: E402
from sao.engine import SamplingParams  # noqa: E402
from sao.engine.transformers_engine import TransformersEngine  # noqa: E402
from sao.models import load_model  # noqa: E402


def compare(engine: TransformersEngine, prompts: list, params: SamplingParams) -> dict:
    """Identical samples (batched vs alone) and the common prefix of each pair, in tokens."""
    batched = [c.samples[0].token_ids for c in engine.generate(prompts, params)]
    alone = [engine.generate([p], params)[0].samples[0].token_ids for p in prompts]
    return {
        "identical": sum(a == b for a, b in zip(batched, alone)),
        "common_prefix_tokens": [common_prefix(a, b) for a, b in zip(batched, alone)],
        "tokens_batched": [len(a) for a in batched],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    info = machine_record(args.threads)

    prompts = make_prompts(args.prompts)
    decodings = {
        "sampled": SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0),
        "greedy": SamplingParams(temperature=0, max_new_tokens=args.max_new_tokens),
    }
    rows = {}
    for dtype in args.dtypes:
        if dtype == "bfloat16" and not info["bf16_native"]:
            print("bfloat16: emulated on this CPU, skipped", flush=True)
            continue
        engine = TransformersEngine(load_model(args.model, dtype=dtype), max_batch_size=args.prompts, progress=False)
        for name, params in decodings.items():
            rows[f"{dtype}/{name}"] = {"dtype": dtype, "decoding": name, **compare(engine, prompts, params)}
            r = rows[f"{dtype}/{name}"]
            print(f"{dtype} {name}: {r['identical']}/{args.prompts} identical, prefixes {r['common_prefix_tokens']}")

    result = {
        "benchmark": "batch_invariance",
        "identical": {k: f"{r['identical']}/{args.prompts}" for k, r in rows.items()},
        "rows": rows,
        "machine": info,
        "config": {"model": args.model, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens},
    }
    lines = [
        f"Transformers engine on {args.model}: {args.prompts} prompts generated in one batch against each alone, "
        f"same seed, up to {args.max_new_tokens} new tokens; sampled at temperature 0.7, top-p 0.95.",
        "",
        "| dtype | decoding | identical samples | common prefix, tokens (each prompt) |",
        "|---|---|---:|---|",
        *(
            f"| {r['dtype']} | {r['decoding']} | {r['identical']}/{args.prompts} | "
            f"{', '.join(map(str, r['common_prefix_tokens']))} |"
            for r in rows.values()
        ),
    ]
    path = write_result("batch_invariance", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
