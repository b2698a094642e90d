"""Uniformly sampled frames of a video file, decoded with PyAV (FFmpeg inside its wheel).

Frames are sampled the way the LLaVA-Video and VideoSAVi code samples them: ``count`` indices spread evenly
from the first frame to the last (``numpy.linspace`` rounded down), so a 4-frame sample of a clip shows its
start, two middle points and its end. A file PyAV cannot open, or one with no video stream or no frames,
raises `VideoDecodeError` with one line naming the file; the videos stage counts it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sao.errors import InputError


class VideoDecodeError(InputError):
    """A video file could not be decoded into frames."""


@dataclass(frozen=True)
class DecodedVideo:
    """The sampled frames of one video (PIL images, in order), their indices in the file, and its size."""

    indices: list[int]
    frames: list[Any]  # PIL.Image.Image, RGB
    total_frames: int
    fps: float | None


def sample_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included; every frame once
    when the video has fewer than ``count``."""
    if total <= 0:
        raise ValueError(f"a video with {total} frames has none to sample")
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return [(i * (total - 1)) // (count - 1) for i in range(count)]


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(f"{path}: cannot open as a video ({type(exc).__name__}: {exc})") from None


def _count_frames(path: Path) -> int:
    # The container's frame count is missing or wrong for some formats (WebM, variable frame rates):
    # a pass that decodes nothing but packets' frames counts what the second pass will see.
    with _open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))


def decode_frames(path: str | Path, count: int) -> DecodedVideo:
    """The ``count`` uniformly sampled frames of the video at ``path`` (`sample_indices`), as RGB images.

    Raises VideoDecodeError for a file that is missing, unreadable, has no video stream or no frames.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such video file")
    try:
        with _open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
        total = _count_frames(path)
        if total == 0:
            raise VideoDecodeError(f"{path}: the video stream has no frames")
        wanted = sample_indices(total, count)
        picked: dict[int, Any] = {}
        with _open(path) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index in wanted:
                    picked[index] = frame.to_image()
                if index >= wanted[-1]:
                    break
    except av.FFmpegError as exc:
        raise VideoDecodeError(f"{path}: decoding failed ({type(exc).__name__}: {exc})") from None
    missing = [i for i in wanted if i not in picked]
    if missing:  # the second pass saw fewer frames than the first: a file being written, or damaged
        raise VideoDecodeError(f"{path}: frame {missing[0]} of {total} could not be decoded")
    return DecodedVideo(wanted, [picked[i].convert("RGB") for i in wanted], total, fps)


def write_test_video(path: str | Path, *, frames: int = 16, size: int = 64, fps: int = 8) -> Path:
    """A synthetic clip: a red square moving left to right across a dark frame, one step per frame.

    For tests and demos with no video data; the square's position says which frame one is looking at.
    """
    import av
    import numpy as np

    path = Path(path)
    side = size // 4
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 20, dtype=np.uint8)
            left = (size - side) * i // max(frames - 1, 1)
            image[size // 2 - side // 2 : size // 2 + side // 2, left : left + side] = (230, 30, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
