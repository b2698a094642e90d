"""Reading JSONL files, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sao.errors import InputError


def parse_jsonl_lines(data: bytes, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of ``data``.

    Raises InputError naming ``path`` and the line for invalid JSON or a non-object line.
    """
    for lineno, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}:{lineno}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """All ``(line_number, object)`` pairs of a JSONL file; InputError if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return list(parse_jsonl_lines(path.read_bytes(), path))
