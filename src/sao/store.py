"""The run store: a run directory with a manifest and one append-only JSONL file per stage.

Layout of a run directory::

    manifest.json          config snapshot + hash, model fingerprint, sao version, stage status
    <stage>.jsonl          one row per line, each with a stable ``id`` and ``schema_version``
    superseded/<time>/     earlier contents, moved aside (never deleted) by ``--force``

Rows are appended as whole lines and fsynced, so a crash leaves at most a torn last
line; reopening drops it, and a restarted stage skips every id already written. Each row
carries ``input_digest``, a hash of the input it was made from, so that a resume whose
input for an id has changed is refused rather than keeping a stale row (issue 14).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sao import __version__
from sao.atomic import write_text_atomic
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
    # Wall time summed over every invocation that wrote rows, a killed one included up to its
    # last chunk; ``attempts`` counts those invocations (more than 1: the stage was resumed).
    seconds: float = 0.0
    attempts: int = 0


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

    On open, a torn last line left by a crash is cut off and logged. ``input_digests`` maps
    each id already written to the digest of the input it was made from (None for a row
    written before sao recorded digests).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.torn_bytes = 0
        self.done_ids: set[str] = set()
        self.input_digests: dict[str, str | None] = {}
        if self.path.exists():
            rows, end = _read_rows(self.path)
            self.torn_bytes = self.path.stat().st_size - end
            if self.torn_bytes:
                log.warning(
                    "%s: dropped a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes
                )
                os.truncate(self.path, end)
            self.done_ids = {row["id"] for row in rows}
            self.input_digests = {row["id"]: row.get("input_digest") for row in rows}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, rows: Sequence[BaseModel], input_digests: Mapping[str, str] | None = None) -> int:
        """Append the rows whose ids are new, durably; returns how many were written.

        A row whose id is in ``input_digests`` is written with that digest as its last
        field, ``input_digest``.
        """
        input_digests = input_digests or {}
        lines = []
        for row in rows:
            row_id = row.id  # type: ignore[attr-defined]
            if row_id in self.done_ids:
                continue
            self.done_ids.add(row_id)
            line = row.model_dump_json()
            if (digest := input_digests.get(row_id)) is not None:
                # Spliced into the row's own JSON so that every row model carries it without a field of its own.
                line = f'{line[:-1]},"input_digest":{json.dumps(digest)}}}'
            self.input_digests[row_id] = digest
            lines.append(line.encode() + b"\n")
        if lines:
            # One write per batch of whole lines: a crash can tear only the last line.
            self._file.write(b"".join(lines))
            self._file.flush()
            os.fsync(self._file.fileno())
        return len(lines)

    def changed_input(self, input_digests: Mapping[str, str]) -> tuple[str, str | None] | None:
        """The first id (in ``input_digests``' order) already written from a different input, with
        the digest its row records (None: an old row without one); None when every input matches."""
        for row_id, digest in input_digests.items():
            if row_id in self.done_ids and self.input_digests.get(row_id) != digest:
                return row_id, self.input_digests.get(row_id)
        return None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What a manifest's ``model`` records about the engine; a resume must run the same one.
ENGINE_KEYS = ("backend", "dtype", "weights", "gguf")


def _known(fingerprint: str | None) -> str | None:
    """A fingerprint, or None when it identifies nothing: a hub model that was not in the local
    HF cache when the run started is recorded as ``hf:<id>@unknown``."""
    return None if fingerprint is None or fingerprint.endswith("@unknown") else fingerprint


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Absent()


def _changes(old: Any, new: Any, prefix: str) -> list[str]:
    """``key: old -> new`` for each differing leaf, nested sections as dotted keys: a changed section
    lists the fields that changed, not two dumps of the whole section."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
    out = []
    for key in sorted(set(old) | set(new), key=str):
        child = f"{prefix}.{key}" if prefix else str(key)
        out += _changes(old.get(key, _MISSING), new.get(key, _MISSING), child)
    return out


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(_changes(old, new, ""))


class RunStore:
    """A run directory. Open it with `RunStore.open`, which checks the config on resume."""

    def __init__(self, root: Path, manifest: Manifest, *, force: bool = False):
        self.root = root
        self.manifest = manifest
        self.force = force  # --force: a stage whose input changed starts over too (see `sao.stage.run_stage`)

    @classmethod
    def open(
        cls, root: str | Path, config: dict[str, Any], model: dict[str, Any] | None = None, *, force: bool = False
    ) -> RunStore:
        """Create ``root`` or resume it.

        ``config`` holds every setting that changes the rows; ``model`` carries the model's
        ``fingerprint`` and the engine that runs it (``backend``, ``dtype``, ``weights``, ``gguf``).
        Resuming with a different config, model or engine raises ResumeConflictError unless
        ``force``, which moves the old contents to ``superseded/`` and starts afresh.
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
                return cls(root, old, force=force)
            moved = cls._supersede(root)
            log.warning("config changed (%s); moved the earlier run to %s", conflict, moved)
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, new, force=force)
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
        old_fp, new_fp = _known(old.model.get("fingerprint")), _known(new.model.get("fingerprint"))
        if old_fp and new_fp and old_fp != new_fp:
            return f"model (fingerprint {old_fp} -> {new_fp})"
        # The engine changes the rows as much as the weights do: rows from two engines must not mix.
        if "backend" in old.model and "backend" in new.model:
            changed = [
                f"{key} {old.model.get(key)!r} -> {new.model.get(key)!r}"
                for key in ENGINE_KEYS
                if old.model.get(key) != new.model.get(key)
                and not (key == "dtype" and key not in old.model)  # older manifests recorded no dtype
            ]
            if changed:
                return f"engine ({', '.join(changed)})"
        # A decoding strategy (RAIN's search settings, `sao.rain.config.decoding_identity`) changes the rows too;
        # plain sampling records none, so manifests from before RAIN compare equal.
        old_dec, new_dec = old.model.get("decoding") or {}, new.model.get("decoding") or {}
        if old_dec != new_dec:
            keys = sorted(set(old_dec) | set(new_dec), key=lambda k: (k != "strategy", k))
            changed = [
                f"{k} {old_dec.get(k)!r} -> {new_dec.get(k)!r}" for k in keys if old_dec.get(k) != new_dec.get(k)
            ]
            return f"decoding ({', '.join(changed)})"
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
        """Write the manifest atomically and durably (`sao.atomic.write_text_atomic`)."""
        write_text_atomic(self.root / MANIFEST, self.manifest.model_dump_json(indent=2))

    def stage_path(self, stage: str) -> Path:
        return self.root / f"{stage}.jsonl"

    def writer(self, stage: str) -> ResumableWriter:
        return ResumableWriter(self.stage_path(stage))

    def rows(self, stage: str) -> list[dict[str, Any]]:
        return read_rows(self.stage_path(stage))

    def stage_started(self, stage: str, *, attempt: bool = True) -> None:
        """Mark ``stage`` running. What earlier attempts recorded (start time, seconds, stats)
        is kept; ``attempt`` counts this invocation as one more that works on the stage."""
        status = self.manifest.stages.setdefault(stage, StageStatus())
        status.status, status.finished_at = "running", None
        status.attempts += attempt
        self.save()

    def stage_progress(self, stage: str, rows: int, seconds: float) -> None:
        """Record a chunk: the rows the stage file holds now, and the wall time the chunk took."""
        status = self.manifest.stages[stage]
        status.rows = rows
        status.seconds = round(status.seconds + seconds, 3)
        self.save()

    def stage_done(self, stage: str, rows: int, stats: dict[str, Any] | None = None) -> None:
        status = self.manifest.stages.setdefault(stage, StageStatus())
        status.status, status.rows, status.finished_at = "done", rows, _now()
        status.stats = stats or {}
        self.save()

    def supersede_stage(self, stage: str) -> Path:
        """Move one stage's file to ``superseded/<time>/`` and forget its status (``--force`` on a
        stage whose input changed); returns where the file went."""
        dest = self.root / "superseded" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest.mkdir(parents=True)
        shutil.move(str(self.stage_path(stage)), dest / self.stage_path(stage).name)
        self.manifest.stages.pop(stage, None)
        self.save()
        return dest

    def rename_stage(self, old: str, new: str) -> None:
        """Give stage ``old`` the name ``new``: its status in the manifest, then its file.

        For a stage renamed between sao versions, so that a directory written under the old name
        resumes instead of redoing the stage. The manifest is written first (atomically): a crash
        before the file moves leaves the old file beside the new status, and calling this again
        finishes the move; with nothing left under ``old`` it does nothing. Raises StoreCorruptError
        when both names hold a file, or both a status: two stages cannot be merged.
        """
        both_files = self.stage_path(old).exists() and self.stage_path(new).exists()
        if both_files or (old in self.manifest.stages and new in self.manifest.stages):
            raise StoreCorruptError(
                f"{self.root}: has stage '{old}' and stage '{new}' both, so '{old}' cannot take the name "
                f"'{new}'; move one of them out of the directory"
            )
        if old in self.manifest.stages:
            self.manifest.stages[new] = self.manifest.stages.pop(old)
            self.save()
        if self.stage_path(old).exists():
            os.replace(self.stage_path(old), self.stage_path(new))

    def is_done(self, stage: str) -> bool:
        status = self.manifest.stages.get(stage)
        return status is not None and status.status == "done"

    def load_dataset(self, stage: str) -> Any:
        """The stage's rows as a ``datasets.Dataset``."""
        import datasets

        return datasets.load_dataset("json", data_files=str(self.stage_path(stage)), split="train")
