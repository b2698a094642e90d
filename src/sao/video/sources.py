"""The videos a run reads: a folder of video files, or a JSONL list of ``{"video": path, "caption": ...}``.

Each video gets a stable id from its path (relative to the folder or to the JSONL file), so that a resumed
run, or one on a moved copy of the data, names every video the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sao.errors import InputError
from sao.jsonl import read_jsonl

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass(frozen=True)
class VideoItem:
    id: str
    path: str  # absolute
    caption: str | None = None


def video_id(relative: str) -> str:
    stem = Path(relative).stem[:40]
    return f"{stem}-{hashlib.sha256(relative.encode()).hexdigest()[:8]}"


def read_videos(source: str | Path, *, field: str = "synth.videos.source") -> list[VideoItem]:
    """The videos of a folder (every file with a video suffix, sorted, subfolders included) or of a JSONL
    file whose rows carry ``video`` (a path, relative to the file) and optionally ``caption``.

    Raises InputError naming ``field`` for a source that does not exist or lists no videos, and naming the
    line for a JSONL row without a ``video`` path. A listed file that is missing is not an error here: the
    videos stage records it as a failed row and goes on.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        items = [VideoItem(video_id(str(p.relative_to(source))), str(p.resolve())) for p in files]
    elif source.is_file():
        items = []
        for line, row in read_jsonl(source):
            video = row.get("video") if isinstance(row, dict) else None
            if not isinstance(video, str) or not video:
                raise InputError(f"{source}:{line}: a row needs 'video', the path of a video file")
            caption = row.get("caption")
            if caption is not None and not isinstance(caption, str):
                raise InputError(f"{source}:{line}: 'caption' must be a string")
            path = (source.parent / video).resolve()
            items.append(VideoItem(video_id(video), str(path), caption or None))
    else:
        raise InputError(f"{field}: {source} is neither a folder of videos nor a JSONL file")
    if not items:
        raise InputError(f"{field}: {source} lists no videos (suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{field}: {source} lists the video {item.path} twice")
        seen.add(item.id)
    return items
