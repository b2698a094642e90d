"""Which prompts the answer stages get, and which answers are held back: pure functions of earlier rows."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from pydantic import BaseModel

from sao.dedup import NearDuplicateIndex
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.content import QuestionType, SeedTask

TGRT, SELF_INSTRUCT = "tgrt", "self_instruct"


class PromptRow(BaseModel):
    id: str
    schema_version: int = 1
    source: str  # "tgrt" or "self_instruct"
    type: str | None  # TGRT's question type and topic
    topic: str | None
    query: str
    drop_reason: str | None = None


def _word_problem(text: str, min_words: int, max_words: int) -> str | None:
    words = len(text.split())
    return "too_short" if words < min_words else "too_long" if words > max_words else None


def candidates(
    section: SelfAlignConfig,
    question_rows: list[dict[str, Any]],
    task_rows: list[dict[str, Any]],
    kinds: list[QuestionType],
    seeds: list[SeedTask],
) -> list[PromptRow]:
    """Every TGRT question and plain task, with a drop reason where it fails: ``duplicate_hint`` (a later
    question for a (type, topic) already served), ``too_short``/``too_long``, ``near_duplicate`` (of an
    earlier prompt, a seed question or a seed task; sao's MinHash index)."""
    q = section.questions
    index = NearDuplicateIndex(q.dedup_threshold)
    for kind in kinds:
        index.add(f"seed-question-{kind.name}", kind.seed_question)
    for seed in seeds:
        index.add(f"seed-task-{seed.id}", seed.instruction)
    rows, served = [], set()
    for row in question_rows:
        for j, x in enumerate(row["questions"]):
            reason = "duplicate_hint" if x["hint"] in served else _word_problem(x["question"], q.min_words, q.max_words)
            pid = f"tgrt-{row['id']}-{j}"
            if reason is None and index.claim(pid, x["question"]) is not None:
                reason = "near_duplicate"
            if reason is None:
                served.add(x["hint"])
            rows.append(
                PromptRow(
                    id=pid, source=TGRT, type=x["type"], topic=x["topic"], query=x["question"], drop_reason=reason
                )
            )
    for row in task_rows:
        pid = f"si-{row['id']}"
        reason = "near_duplicate" if index.claim(pid, row["task"]) is not None else None
        rows.append(
            PromptRow(id=pid, source=SELF_INSTRUCT, type=None, topic=None, query=row["task"], drop_reason=reason)
        )
    return rows


def quotas(total: int, share: float, tgrt: int, plain: int) -> tuple[int, int]:
    """How many TGRT and plain prompts to keep: ``share`` of ``total`` from TGRT, the rest plain, either side
    filling up with the other's when it has too few."""
    want_tgrt = round(total * share)
    take_tgrt = min(tgrt, want_tgrt)
    take_plain = min(plain, total - take_tgrt)
    take_tgrt = min(tgrt, total - take_plain)
    return take_tgrt, take_plain


def select_prompts(section: SelfAlignConfig, rows: list[PromptRow]) -> list[PromptRow]:
    """`candidates`' rows, with the survivors beyond each side's quota dropped as ``over_quota`` (a seeded draw)."""
    m = section.prompts
    alive = {
        source: [r.id for r in rows if r.source == source and r.drop_reason is None] for source in (TGRT, SELF_INSTRUCT)
    }
    n_tgrt, n_plain = quotas(m.total, m.tgrt_share, len(alive[TGRT]), len(alive[SELF_INSTRUCT]))
    keep: set[str] = set()
    for source, n in ((TGRT, n_tgrt), (SELF_INSTRUCT, n_plain)):
        keep.update(random.Random(f"{m.seed}-{source}").sample(alive[source], n))
    return [
        r if r.drop_reason is not None or r.id in keep else r.model_copy(update={"drop_reason": "over_quota"})
        for r in rows
    ]


def split_held_out(
    rows: list[dict[str, Any]], count: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``count`` rows held back, the rest), both in input order; which rows is a seeded hash of their ids, so
    that the choice does not move when rows are added or reordered."""

    def rank(row: dict[str, Any]) -> str:
        return hashlib.sha256(f"{seed}:{row['id']}".encode()).hexdigest()

    held = {r["id"] for r in sorted(rows, key=rank)[: min(count, len(rows))]}
    return [r for r in rows if r["id"] in held], [r for r in rows if r["id"] not in held]
