"""After the last iteration: does verbose cloning lengthen the answers? Each iteration's starting model, its
engraved model (stage 3, before verbose cloning) and its trained model answer its held-out queries greedily
under the short prompt; the mean lengths go to ``self-align/lengths.json``, ``lengths.png`` and the run
report. Generation is a resumable stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sao.atomic import write_text_atomic
from sao.engine import SamplingParams
from sao.methods.self_align.rows import short_prompt
from sao.methods.self_align.stages import engraved_dir
from sao.stage import run_stage
from sao.store import RunStore

STAGE = "answers"


class LengthRow(BaseModel):
    id: str
    schema_version: int = 1
    iteration: int
    model: str  # "before" (the iteration's starting model), "engraved" (stage 3's) or "after" (its trained model)
    query: str
    answer: str
    num_tokens: int
    finish_reason: str


def _answer(engine: Any, section: Any, items: list[dict[str, Any]], store: RunStore, progress: bool) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=section.verbose.length_tokens)

    def process(chunk: list[dict[str, Any]]) -> list[LengthRow]:
        done = engine.generate([short_prompt(section, r["query"]) for r in chunk], params)
        return [
            LengthRow(
                **r,
                answer=c.samples[0].text,
                num_tokens=c.samples[0].num_tokens,
                finish_reason=c.samples[0].finish_reason,
            )
            for r, c in zip(chunk, done)
        ]

    run_stage(store, STAGE, items, key=lambda r: r["id"], process=process, chunk_size=8, progress=progress)


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean characters and tokens per (iteration, before/after), keyed 'iter-<i>/<model>'."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(f"iter-{row['iteration']}/{row['model']}", []).append(row)
    return {
        key: {
            "answers": len(g),
            "mean_chars": round(sum(len(r["answer"]) for r in g) / len(g), 1),
            "mean_tokens": round(sum(r["num_tokens"] for r in g) / len(g), 1),
            "hit_budget": sum(r["finish_reason"] == "length" for r in g),
        }
        for key, g in groups.items()
    }


def plot(summary: dict[str, dict[str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(keys)), 3.2))
    colours = [{"before": "tab:grey", "engraved": "tab:orange"}.get(k.rsplit("/", 1)[-1], "tab:blue") for k in keys]
    ax.bar(range(len(keys)), [summary[k]["mean_tokens"] for k in keys], color=colours)
    ax.set_xticks(range(len(keys)), keys, rotation=20, ha="right")
    ax.set_ylabel("mean answer tokens (greedy)")
    ax.set_title("Held-out queries under the short prompt")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compare_lengths(config: Any, out_dir: Path, iterations: list[Any], *, progress: bool = True) -> str | None:
    """The method's `finish`: answer lengths before and after every iteration; markdown for the run report."""
    from sao.engine.lazy import lazy_engine

    root = Path(out_dir) / "self-align"
    store = RunStore.open(root, {"synth": config.synth.model_dump(), "engine": config.engine.model_dump()})
    for it in iterations:
        held = it.synth.rows("held_out")
        if not held:
            continue
        models = (("before", it.model_in), ("engraved", str(engraved_dir(it.synth.root))), ("after", str(it.model_out)))
        for label, model in models:
            items = [
                {"id": f"iter-{it.index}-{label}-{r['id']}", "iteration": it.index, "model": label,
                 "query": r["prompt"][-1]["content"]}
                for r in held
            ]  # fmt: skip
            engine = lazy_engine(
                model,
                config.engine,
                trust_remote_code=config.trust_remote_code,
                progress=progress,
                base_model=config.model,
            )
            _answer(engine, config.synth, items, store, progress)
            engine.release()
    rows = store.rows(STAGE) if store.stage_path(STAGE).is_file() else []
    if not rows:
        return None
    summary = summarise(rows)
    write_text_atomic(root / "lengths.json", json.dumps(summary, indent=2))
    png = plot(summary, root / "lengths.png")
    table = ["| | answers | mean chars | mean tokens | hit the budget |", "|---|---|---|---|---|"]
    table += [
        f"| {k} | {v['answers']} | {v['mean_chars']} | {v['mean_tokens']} | {v['hit_budget']} |"
        for k, v in summary.items()
    ]
    return (
        "\n## Answer length under the short prompt (held-out queries, greedy)\n\n"
        + "\n".join(table)
        + f"\n\n![answer lengths](self-align/{png.name})\n"
    )
