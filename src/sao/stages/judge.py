"""Stage 4: the judge ranks each prompt's responses (by default the policy itself: SAO's self-judgement),
with optional position debiasing, and SAO's pair filter decides what is kept.

The verdicts are `sao.judge.verdict`'s; this stage builds the round-robin requests, combines the two
orders of each pair and picks chosen and rejected.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sao.engine import Engine
from sao.judge.config import SynthJudgeSection
from sao.judge.cut import Cut, answer_cut
from sao.judge.verdict import Judgement, JudgeRequest, run_judge
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.ranking import (
    best_and_worst,
    build_judge_prompt,
    debiased_probability,
    orders_agree,
    round_robin,
    verdict_drop_reason,
)

STAGE = "judgements"


class PairComparison(BaseModel):
    a: int
    b: int
    p_a: float | None  # P(a better than b), debiased over both orders in swap mode
    consistent: bool | None  # swap mode: both orders preferred the same response


class JudgementRow(BaseModel):
    id: str
    schema_version: int = 1
    judgements: list[Judgement]
    comparisons: list[PairComparison]
    chosen: int | None
    rejected: int | None
    p_chosen: float | None
    drop_reason: str | None = None


def judge_requests(rows: list[dict[str, Any]], judge: SynthJudgeSection, cut: Cut = list) -> list[JudgeRequest]:
    """Round-robin over each row's usable samples, in one order or both; ``cut`` shortens the answers
    (`sao.judge.cut`: ``judge.max_answer_tokens``)."""
    requests = []
    for r, row in enumerate(rows):
        texts = dict(zip(row["usable"], cut([row["samples"][i]["text"] for i in row["usable"]])))
        for x, y in round_robin(len(row["usable"])):
            a, b = row["usable"][x], row["usable"][y]
            orders = [(a, b), (b, a)] if judge.order == "swap" else [(a, b)]
            for first, second in orders:
                text = build_judge_prompt(row["prompt"], [texts[first], texts[second]], judge.template)
                requests.append(JudgeRequest(r, first, second, [{"role": "user", "content": text}]))
    return requests


def compare(a: int, b: int, judgements: list[Judgement]) -> PairComparison:
    """P(a better than b) from the judgements of this pair (one order, or both)."""
    forward = next(j for j in judgements if (j.first, j.second) == (a, b))
    swapped = next((j for j in judgements if (j.first, j.second) == (b, a)), None)
    if forward.p_first is None or (swapped is not None and swapped.p_first is None):
        return PairComparison(a=a, b=b, p_a=None, consistent=None)
    if swapped is None:
        return PairComparison(a=a, b=b, p_a=forward.p_first, consistent=None)
    return PairComparison(
        a=a,
        b=b,
        p_a=debiased_probability(forward.p_first, swapped.p_first),
        consistent=orders_agree(forward.p_first, swapped.p_first),
    )


def decide(row_id: str, usable: list[int], judgements: list[Judgement], judge: SynthJudgeSection) -> JudgementRow:
    """Pick chosen and rejected: best and worst by round-robin wins, kept if the judge was decisive."""
    comparisons = [compare(usable[x], usable[y], judgements) for x, y in round_robin(len(usable))]
    p_better = {(usable.index(c.a), usable.index(c.b)): 0.5 if c.p_a is None else c.p_a for c in comparisons}
    best, worst, _ = best_and_worst(len(usable), p_better)
    a, b = sorted((usable[best], usable[worst]))
    final = next(c for c in comparisons if (c.a, c.b) == (a, b))
    row = dict(id=row_id, judgements=judgements, comparisons=comparisons)
    if final.p_a is None:
        return JudgementRow(**row, chosen=None, rejected=None, p_chosen=None, drop_reason="parse_failure")
    chosen, rejected, p = (a, b, final.p_a) if final.p_a >= 0.5 else (b, a, 1 - final.p_a)
    reason = verdict_drop_reason(p, final.consistent, judge.swap_rule, judge.margin)
    return JudgementRow(**row, chosen=chosen, rejected=rejected, p_chosen=round(p, 6), drop_reason=reason)


def make_rows(engine: Engine, config: SynthConfig, chunk: list[dict[str, Any]]) -> list[JudgementRow]:
    requests = judge_requests(chunk, config.judge, answer_cut(engine, config.judge.max_answer_tokens))
    judgements = run_judge(engine, requests, config.judge.mode, config.judge.max_new_tokens)
    per_row: list[list[Judgement]] = [[] for _ in chunk]
    for q, j in zip(requests, judgements):
        per_row[q.row].append(j)
    return [decide(row["id"], row["usable"], js, config.judge) for row, js in zip(chunk, per_row)]


def judge_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Drops, plus the judge's position bias: consistency across orders and first-slot wins."""
    stats = drop_stats(rows)
    judgements = [j for r in rows for j in r["judgements"]]
    parsed = [j["p_first"] for j in judgements if j["p_first"] is not None]
    swapped = [c["consistent"] for r in rows for c in r["comparisons"] if c["consistent"] is not None]
    decided = [r["p_chosen"] for r in rows if r["p_chosen"] is not None]
    stats["judgements"] = len(judgements)
    stats["logprob_fallbacks"] = sum(bool(j.get("fallback")) for j in judgements)
    stats["parse_failure_rate"] = round(1 - len(parsed) / len(judgements), 4) if judgements else 0.0
    stats["first_position_win_share"] = round(sum(p > 0.5 for p in parsed) / len(parsed), 4) if parsed else None
    stats["position_consistency"] = round(sum(swapped) / len(swapped), 4) if swapped else None
    stats["mean_p_chosen"] = round(sum(decided) / len(decided), 4) if decided else None
    return stats


def run_judgements(
    engine: Engine, config: SynthConfig, store: RunStore, *, chunk_size: int = 32, progress: bool = True
) -> StageResult:
    """Judge every kept response row into ``judgements.jsonl`` (resumable), by ``config.judge``'s settings.

    ``engine`` is whatever judges: the policy's own engine for a 'self' judge, else the engine of the
    judge `sao.judge.build.build_judge` made from ``config.judge``.
    """
    return run_stage(
        store,
        STAGE,
        kept(store.rows("responses")),
        key=lambda r: r["id"],
        process=lambda chunk: make_rows(engine, config, chunk),
        chunk_size=chunk_size,
        stats=judge_stats,
        progress=progress,
    )
