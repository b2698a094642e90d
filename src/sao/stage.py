"""The resumable stage loop shared by every stage: skip done ids, process in chunks, append."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from tqdm.auto import tqdm

from sao.store import RunStore

log = logging.getLogger(__name__)

Item = TypeVar("Item")


@dataclass
class StageResult:
    stage: str
    total: int  # rows the stage file holds now
    written: int  # rows this call appended
    skipped: int  # items found already done on resume


def run_stage(
    store: RunStore,
    stage: str,
    items: Sequence[Item],
    key: Callable[[Item], str],
    process: Callable[[list[Item]], Sequence[BaseModel]],
    *,
    chunk_size: int,
    stats: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    progress: bool = True,
) -> StageResult:
    """Run ``process`` over the items whose ``key`` is not yet in the stage file.

    Rows are appended after each chunk, so a killed run loses at most the chunk in
    flight, and a rerun picks up there with nothing duplicated. ``stats`` summarises
    all the stage's rows into the manifest when the stage is done.
    """
    store.stage_started(stage)
    written = 0
    with store.writer(stage) as writer:
        todo = [item for item in items if key(item) not in writer.done_ids]
        skipped = len(items) - len(todo)
        if skipped:
            log.info("%s: resuming, %d of %d rows already done", stage, skipped, len(items))
        with tqdm(total=len(items), initial=skipped, unit="row", desc=stage, disable=not progress) as bar:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                written += writer.write(process(chunk))
                bar.update(len(chunk))
        total = len(writer.done_ids)
    store.stage_done(stage, rows=total, stats=stats(store.rows(stage)) if stats else None)
    return StageResult(stage, total, written, skipped)


def drop_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows in and kept, and dropped rows counted by reason (rows carry ``drop_reason``)."""
    reasons: dict[str, int] = {}
    for row in rows:
        if row.get("drop_reason"):
            reasons[row["drop_reason"]] = reasons.get(row["drop_reason"], 0) + 1
    return {"rows_in": len(rows), "kept": len(rows) - sum(reasons.values()), "dropped": reasons}


def kept(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a stage passes on to the next."""
    return [r for r in rows if r.get("drop_reason") is None]
