"""Pairwise judging of two answers to the same prompt, in both orders, as a resumable stage.

Used by ``sao eval`` (candidate A against baseline B) and ``sao judge-eval`` (response_a against
response_b of a labelled pair). The judge prompt and the verdicts are the synthesis judge's
(`sao.judge.verdict`, `sao.synth.ranking`), so a judge validated with judge-eval is the judge that
SAO trains on. With ``judge.signal: sar`` (judge-eval only) each answer is scored alone by SAR
(`sao.judge.sar`), as synthesis scores it, and the higher score is preferred: there is no order to judge.
``judge.signal: rain`` judges each answer alone with RAIN's self-evaluation (`sao.judge.rain`), and the answer
likelier to meet its criterion is preferred.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sao.engine import Engine
from sao.eval.metrics import position_consistency
from sao.judge import rain
from sao.judge.config import PROMPT, RAIN, SAR, JudgeSection
from sao.judge.cut import answer_cut
from sao.judge.sar import preference, score_answers
from sao.judge.verdict import JudgeRequest, run_judge
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.store import RunStore
from sao.synth.ranking import build_judge_prompt, debiased_probability

log = logging.getLogger(__name__)

STAGE = "verdicts"
# The stage's name before issue 15, the synthesis judge stage's too; directories written then resume under STAGE.
OLD_STAGE = "judgements"
A, B = 0, 1  # slot indices of JudgeRequest.first / .second


@dataclass(frozen=True)
class PairItem:
    """Two answers to one prompt. ``prompt`` is the text the judge sees as the user's request."""

    id: str
    prompt: str
    a: str
    b: str


class PairVerdict(BaseModel):
    id: str
    schema_version: int = 1
    p_slot1_a_first: float | None  # P(slot 1 wins) with A shown first; None when unparsable
    p_slot1_b_first: float | None  # P(slot 1 wins) with B shown first
    preference: float | None  # P(A better than B), averaged over both orders
    len_a: int  # characters, as AlpacaEval measures length
    len_b: int
    outputs: list[str] | None = None  # the two generated rankings (mode 'generate', or a fallback)
    fallback: bool = False  # mode 'logprob', but the engine could not score: judged by generated rankings
    drop_reason: str | None = None


class SARVerdict(BaseModel):
    """A pair judged by SAR: each answer's R_SA after the prompt, scored alone (no order shown, nothing to parse)."""

    id: str
    schema_version: int = 1
    sar_a: float
    sar_b: float
    preference: float  # 1.0: A scored higher, 0.0: B did, 0.5: equal (within sao.judge.sar.TIE)
    len_a: int  # characters, as for PairVerdict
    len_b: int


class RainVerdict(BaseModel):
    """A pair judged by RAIN's self-evaluation: each answer alone, in both option orders (`sao.judge.rain`)."""

    id: str
    schema_version: int = 1
    vote_a: int  # v in {-1, 0, 1}
    vote_b: int
    p_good_a: float  # the probability the evaluator gives the good option, over both orders
    p_good_b: float
    preference: float  # 1.0: A the likelier good, 0.0: B, 0.5: equal
    len_a: int  # characters, as for PairVerdict
    len_b: int


def items_digest(items: list[PairItem]) -> str:
    """A hash of every judged text, so that a resumed run with changed answers is refused, not mixed."""
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps([item.id, item.prompt, item.a, item.b]).encode())
    return "sha256:" + h.hexdigest()[:16]


def judge_chunk(engine: Engine, items: list[PairItem], judge: JudgeSection) -> list[PairVerdict]:
    """Both orders of every item, judged in one engine call, averaged into P(A better)."""
    requests = []
    cut = answer_cut(engine, judge.max_answer_tokens)
    for r, item in enumerate(items):
        a, b = cut([item.a, item.b])
        for first, second, texts in ((A, B, [a, b]), (B, A, [b, a])):
            content = build_judge_prompt(item.prompt, texts, judge.template)
            requests.append(JudgeRequest(r, first, second, [{"role": "user", "content": content}]))
    judgements = run_judge(engine, requests, judge.mode, judge.max_new_tokens)
    verdicts = []
    for r, item in enumerate(items):
        a_first, b_first = judgements[2 * r], judgements[2 * r + 1]
        parsed = a_first.p_first is not None and b_first.p_first is not None
        verdicts.append(
            PairVerdict(
                id=item.id,
                p_slot1_a_first=a_first.p_first,
                p_slot1_b_first=b_first.p_first,
                preference=debiased_probability(a_first.p_first, b_first.p_first) if parsed else None,
                len_a=len(item.a),
                len_b=len(item.b),
                outputs=None if a_first.output is None else [a_first.output, b_first.output or ""],
                fallback=a_first.fallback,
                drop_reason=None if parsed else "parse_failure",
            )
        )
    return verdicts


def sar_chunk(engine: Engine, items: list[PairItem]) -> list[SARVerdict]:
    """Both answers of every item scored by SAR in one engine call, the prompt as the user's turn."""
    conversations = [[{"role": "user", "content": item.prompt}] for item in items for _ in (A, B)]
    scores = score_answers(engine, conversations, [text for item in items for text in (item.a, item.b)])
    return [
        SARVerdict(
            id=item.id,
            sar_a=round(a, 6),
            sar_b=round(b, 6),
            preference=preference(a, b),
            len_a=len(item.a),
            len_b=len(item.b),
        )
        for item, a, b in zip(items, scores[::2], scores[1::2])
    ]


def rain_chunk(engine: Engine, items: list[PairItem], criterion: str) -> list[RainVerdict]:
    """Both answers of every item judged by RAIN's self-evaluation in one engine call."""
    judged = rain.self_evaluations(
        engine,
        [item.prompt for item in items for _ in (A, B)],
        [t for item in items for t in (item.a, item.b)],
        criterion,
    )
    return [
        RainVerdict(
            id=item.id,
            vote_a=a.vote,
            vote_b=b.vote,
            p_good_a=round(a.p_good, 6),
            p_good_b=round(b.p_good, 6),
            preference=rain.preference(a, b),
            len_a=len(item.a),
            len_b=len(item.b),
        )
        for item, a, b in zip(items, judged[::2], judged[1::2])
    ]


def chunk_judge(engine: Engine, judge: JudgeSection) -> Any:
    """What judges a chunk of items under ``judge.signal``."""
    if judge.signal == SAR:
        return lambda chunk: sar_chunk(engine, chunk)
    if judge.signal == RAIN:
        return lambda chunk: rain_chunk(engine, chunk, judge.rain_criterion)
    return lambda chunk: judge_chunk(engine, chunk, judge)


def orders(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per kept row, the preference for A with A shown first and with A shown second."""
    rows = kept(rows)
    return [r["p_slot1_a_first"] for r in rows], [1.0 - r["p_slot1_b_first"] for r in rows]


def verdict_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Drops (unparsable rankings), and the judge's position bias over the kept rows."""
    stats = drop_stats(rows)
    stats["logprob_fallbacks"] = sum(bool(r.get("fallback")) for r in rows)
    first, swapped = orders(rows)
    if first:
        slot1 = [r["p_slot1_a_first"] for r in kept(rows)] + [r["p_slot1_b_first"] for r in kept(rows)]
        stats["position_consistency"] = round(position_consistency(first, swapped), 4)
        stats["first_slot_win_share"] = round(sum(p > 0.5 for p in slot1) / len(slot1), 4)
    return stats


def run_pairwise(
    engine: Engine,
    items: list[PairItem],
    judge: JudgeSection,
    out_dir: Any,
    *,
    model_info: dict[str, Any] | None = None,
    chunk_size: int = 8,
    force: bool = False,
    progress: bool = True,
) -> tuple[RunStore, StageResult]:
    """Judge (or resume judging) ``items`` into ``out_dir``/verdicts.jsonl with ``engine``, the judge's, by
    ``judge.signal`` (`PairVerdict` rows, `SARVerdict` rows for SAR, `RainVerdict` rows for RAIN); rows follow
    the items' ids.
    ``model_info`` is the judge's, for the manifest."""
    config = {"judge": judge.model_dump(), "items": len(items), "items_digest": items_digest(items)}
    store = RunStore.open(out_dir, config, model_info, force=force)
    if store.stage_path(OLD_STAGE).exists():
        store.rename_stage(OLD_STAGE, STAGE)
        log.info("%s: renamed stage '%s' to '%s', its name since issue 15; resuming it", out_dir, OLD_STAGE, STAGE)
    result = run_stage(
        store,
        STAGE,
        items,
        key=lambda item: item.id,
        process=chunk_judge(engine, judge),
        chunk_size=chunk_size,
        # SAR and RAIN show no order: no position statistics
        stats=verdict_stats if judge.signal == PROMPT else drop_stats,
        progress=progress,
    )
    return store, result
