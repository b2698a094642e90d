"""Stage 4 with ``judge.signal: sar``: each usable response scored alone by its self-aligned reward under the judge
model (by default the policy itself), chosen the highest and rejected the lowest (issue 18).

There is no judge prompt and no position debiasing: no response is ever shown beside another, so there is no
order to swap. The rows go to the same stage file as the prompted judge's, with the fields the pairs stage
reads (``chosen``, ``rejected``); SAO's prompts carry no reference answer, so responses rank by R_SA alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sao.engine import Engine
from sao.judge.sar import gap_drop_reason, score_answers
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.stages.judge import STAGE
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.ranking import highest_and_lowest


class SARJudgementRow(BaseModel):
    id: str
    schema_version: int = 1
    sar: list[float | None]  # R_SA of each sample; None for one that is not usable, hence not scored
    chosen: int
    rejected: int
    drop_reason: str | None = None


def decide(row_id: str, count: int, usable: list[int], scores: list[float], config: SynthConfig) -> SARJudgementRow:
    """Chosen and rejected among the ``usable`` of ``count`` samples, whose R_SA are ``scores``: the highest
    against the lowest, kept when the chosen one's beats the rejected one's by ``judge.margin`` (a tie never)."""
    best, worst = highest_and_lowest(scores)
    by_sample = {i: round(score, 6) for i, score in zip(usable, scores)}
    return SARJudgementRow(
        id=row_id,
        sar=[by_sample.get(i) for i in range(count)],
        chosen=usable[best],
        rejected=usable[worst],
        drop_reason=gap_drop_reason(scores[best] - scores[worst], config.judge.margin),
    )


def make_rows(engine: Engine, config: SynthConfig, chunk: list[dict[str, Any]]) -> list[SARJudgementRow]:
    """One row per response row, every usable sample of the chunk scored in one engine call."""
    # Each response after the conversation the responses stage asked it in.
    asked = [
        ([{"role": "user", "content": row["prompt"]}], row["samples"][i]["text"])
        for row in chunk
        for i in row["usable"]
    ]
    scores = iter(score_answers(engine, [c for c, _ in asked], [t for _, t in asked]))
    return [
        decide(row["id"], len(row["samples"]), row["usable"], [next(scores) for _ in row["usable"]], config)
        for row in chunk
    ]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def sar_judge_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Drops, responses scored, and the kept pairs' mean R_SA of chosen and rejected."""
    stats = drop_stats(rows)
    pairs = kept(rows)
    stats["scored"] = sum(s is not None for r in rows for s in r["sar"])
    stats["mean_sar_chosen"] = _mean([r["sar"][r["chosen"]] for r in pairs])
    stats["mean_sar_rejected"] = _mean([r["sar"][r["rejected"]] for r in pairs])
    return stats


def run_sar_judgements(
    engine: Engine, config: SynthConfig, store: RunStore, *, chunk_size: int = 32, progress: bool = True
) -> StageResult:
    """Score every kept response row into ``judgements.jsonl`` (resumable) by SAR under ``engine``: the policy's
    for a 'self' judge, else the named judge's (`sao.judge.build.build_judge`)."""
    return run_stage(
        store,
        STAGE,
        kept(store.rows("responses")),
        key=lambda r: r["id"],
        process=lambda chunk: make_rows(engine, config, chunk),
        chunk_size=chunk_size,
        stats=sar_judge_stats,
        progress=progress,
    )
