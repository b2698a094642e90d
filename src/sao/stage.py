"""The resumable stage loop shared by every stage: skip done ids, process in chunks, append."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from tqdm.auto import tqdm

from sao.errors import ResumeConflictError
from sao.store import RunStore

log = logging.getLogger(__name__)

Item = TypeVar("Item")


@dataclass
class StageResult:
    stage: str
    total: int  # rows the stage file holds now
    written: int  # rows this call appended
    skipped: int  # items found already done on resume


def _plain(item: Any) -> Any:
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json")
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return item


def item_digest(item: Any) -> str:
    """sha256 of an item's canonical JSON (a pydantic model, a dataclass or a plain row), shortened.

    The default input digest of `run_stage`: every field of the item counts, so an item is
    the same input only if it is equal field by field.
    """
    canonical = json.dumps(_plain(item), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _input_conflict(path: Any, row_id: str, recorded: str | None) -> ResumeConflictError:
    if recorded is None:
        why = "was written by an older sao that recorded no input digest, so its input cannot be checked"
    else:
        why = "was made from a different input than this run gives it"
    return ResumeConflictError(
        f"{path}: the row for id '{row_id}' {why}; rerun with --force to redo the stage "
        "(old files are kept under superseded/) or choose another output directory"
    )


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
    input_digest: Callable[[Item], str] = item_digest,
) -> StageResult:
    """Run ``process`` over the items whose ``key`` is not yet in the stage file.

    Rows are appended after each chunk, so a killed run loses at most the chunk in
    flight, and a rerun picks up there with nothing duplicated. Each row records
    ``input_digest(item)`` (default: a hash of the whole item, `item_digest`); a rerun
    whose item for an id already written has another digest raises ResumeConflictError
    naming the stage file and the first such id, unless the store was opened with
    ``force``, which moves the stage file to ``superseded/`` and redoes the stage. A row
    without a digest (written by an older sao) is refused the same way.

    The wall time of every call that writes rows is added to the stage's ``seconds`` in
    the manifest after each chunk, so a resumed stage reports its earlier attempts too.
    ``stats`` summarises all the stage's rows into the manifest when the stage is done.
    """
    digests = {key(item): input_digest(item) for item in items}
    written = 0
    writer = store.writer(stage)
    try:
        if (changed := writer.changed_input(digests)) is not None:
            if not store.force:
                raise _input_conflict(writer.path, *changed)
            writer.close()
            moved = store.supersede_stage(stage)
            log.warning("%s: the input for id '%s' changed; moved the old rows to %s", stage, changed[0], moved)
            writer = store.writer(stage)
        todo = [item for item in items if key(item) not in writer.done_ids]
        skipped = len(items) - len(todo)
        store.stage_started(stage, attempt=bool(todo))
        if skipped:
            log.info("%s: resuming, %d of %d rows already done", stage, skipped, len(items))
        with tqdm(total=len(items), initial=skipped, unit="row", desc=stage, disable=not progress) as bar:
            for start in range(0, len(todo), chunk_size):
                began = time.perf_counter()
                chunk = todo[start : start + chunk_size]
                written += writer.write(process(chunk), digests)
                store.stage_progress(stage, len(writer.done_ids), time.perf_counter() - began)
                bar.update(len(chunk))
        total = len(writer.done_ids)
    finally:
        writer.close()
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
