"""The run store: a run directory with a manifest and one append-only JSONL file per stage.

Layout of a run directory::

    manifest.json          config snapshot + hash, model fingerprint, sao version, stage status
    <stage>.jsonl          one row per line, each with a stable ``id`` and ``schema_version``
    superseded/<time>/     earlier contents, moved aside (never deleted) by ``--force``

Rows are appended as whole lines and fsynced, so a crash leaves at most a torn last
line; reopening drops it, and a restarted stage skips every id already written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sao import __version__
from sao.errors import InputError, ResumeConflictError, StoreCorruptError
from sao.jsonl import parse_jsonl_lines

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys), shortened."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


class StageStatus(BaseModel):
    status: Literal["running", "done"] = "running"
    rows: int = 0
    started_at: str = Field(default_factory=_now)
    finished_at: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """What a run directory was made with, and how far each stage got."""

    sao_version: str = __version__
    created_at: str = Field(default_factory=_now)
    config: dict[str, Any]
    config_hash: str
    model: dict[str, Any] = Field(default_factory=dict)
    stages: dict[str, StageStatus] = Field(default_factory=dict)


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of a stage file and the length in bytes of its whole lines.

    Bytes after the last newline are a torn line from a crash and are not returned.
    Any other bad line raises StoreCorruptError: it was not torn by a crash, and
    silently dropping it would lose a row.
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    try:
        rows = [row for _, row in parse_jsonl_lines(data[:end], path)]
    except InputError as exc:
        raise StoreCorruptError(f"{exc}; this is not a torn last line, so it was left for you to inspect") from None
    for lineno, row in enumerate(rows, start=1):
        if not isinstance(row.get("id"), str):
            raise StoreCorruptError(f"{path}: row {lineno} has no string 'id'")
    return rows, end


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All complete rows of a stage file (a torn last line is ignored)."""
    path = Path(path)
    return _read_rows(path)[0] if path.exists() else []


class ResumableWriter:
    """Appends rows to a stage file; skips ids that are already there.

    On open, a torn last line left by a crash is cut off and logged.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.torn_bytes = 0
        self.done_ids: set[str] = set()
        if self.path.exists():
            rows, end = _read_rows(self.path)
            self.torn_bytes = self.path.stat().st_size - end
            if self.torn_bytes:
                log.warning(
                    "%s: dropped a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes
                )
                os.truncate(self.path, end)
            self.done_ids = {row["id"] for row in rows}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, rows: Sequence[BaseModel]) -> int:
        """Append the rows whose ids are new, durably; returns how many were written."""
        fresh = []
        for row in rows:
            if row.id not in self.done_ids:  # type: ignore[attr-defined]
                self.done_ids.add(row.id)  # type: ignore[attr-defined]
                fresh.append(row)
        if fresh:
            # One write per batch of whole lines: a crash can tear only the last line.
            self._file.write(b"".join(row.model_dump_json().encode() + b"\n" for row in fresh))
            self._file.flush()
            os.fsync(self._file.fileno())
        return len(fresh)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


class RunStore:
    """A run directory. Open it with `RunStore.open`, which checks the config on resume."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(
        cls, root: str | Path, config: dict[str, Any], model: dict[str, Any] | None = None, *, force: bool = False
    ) -> RunStore:
        """Create ``root`` or resume it.

        ``config`` holds every setting that changes the rows; ``model`` carries the model's
        ``fingerprint``. Resuming with a different config or model raises ResumeConflictError
        unless ``force``, which moves the old contents to ``superseded/`` and starts afresh.
        """
        root = Path(root)
        model = model or {}
        new = Manifest(config=config, config_hash=config_hash(config), model=model)
        path = root / MANIFEST
        if path.exists():
            old = Manifest.model_validate_json(path.read_text())
            conflict = cls._conflict(old, new)
            if conflict and not force:
                raise ResumeConflictError(
                    f"{root} was made with a different {conflict}; rerun with --force to start over "
                    "(old files are kept under superseded/) or choose another output directory"
                )
            if not conflict:
                return cls(root, old)
            moved = cls._supersede(root)
            log.warning("config changed (%s); moved the earlier run to %s", conflict, moved)
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, new)
        store.save()
        return store

    @classmethod
    def load(cls, root: str | Path) -> RunStore:
        """Open an existing run directory for reading (no config check)."""
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise InputError(f"{root}: not a run directory (no {MANIFEST})")
        return cls(Path(root), Manifest.model_validate_json(path.read_text()))

    @staticmethod
    def _conflict(old: Manifest, new: Manifest) -> str | None:
        if old.config_hash != new.config_hash:
            return f"config ({_config_diff(old.config, new.config)})"
        old_fp, new_fp = old.model.get("fingerprint"), new.model.get("fingerprint")
        if old_fp and new_fp and old_fp != new_fp:
            return f"model (fingerprint {old_fp} -> {new_fp})"
        return None

    @staticmethod
    def _supersede(root: Path) -> Path:
        dest = root / "superseded" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest.mkdir(parents=True)
        for entry in root.iterdir():
            if entry.name != "superseded":
                shutil.move(str(entry), dest / entry.name)
        return dest

    def save(self) -> None:
        """Write the manifest atomically (temp file + rename)."""
        tmp = self.root / f".{MANIFEST}.tmp"
        tmp.write_text(self.manifest.model_dump_json(indent=2))
        os.replace(tmp, self.root / MANIFEST)

    def stage_path(self, stage: str) -> Path:
        return self.root / f"{stage}.jsonl"

    def writer(self, stage: str) -> ResumableWriter:
        return ResumableWriter(self.stage_path(stage))

    def rows(self, stage: str) -> list[dict[str, Any]]:
        return read_rows(self.stage_path(stage))

    def stage_started(self, stage: str) -> None:
        previous = self.manifest.stages.get(stage)
        self.manifest.stages[stage] = StageStatus(started_at=previous.started_at) if previous else StageStatus()
        self.save()

    def stage_done(self, stage: str, rows: int, stats: dict[str, Any] | None = None) -> None:
        status = self.manifest.stages.setdefault(stage, StageStatus())
        status.status, status.rows, status.finished_at = "done", rows, _now()
        status.stats = stats or {}
        self.save()

    def is_done(self, stage: str) -> bool:
        status = self.manifest.stages.get(stage)
        return status is not None and status.status == "done"

    def load_dataset(self, stage: str) -> Any:
        """The stage's rows as a ``datasets.Dataset``."""
        import datasets

        return datasets.load_dataset("json", data_files=str(self.stage_path(stage)), split="train")
