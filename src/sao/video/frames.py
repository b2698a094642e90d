"""Frame files: rows hold the paths of a video's sampled frames (PNG, lossless), never the pixels.

The videos stage writes each video's frames once into the run's ``frames/<video id>/`` folder, named by
their index in the video; every later stage, the engines and the trainer open them from there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sao.errors import InputError


def save_frames(frames: Sequence[Any], indices: Sequence[int], folder: Path) -> list[str]:
    """Write each frame as ``<index>.png`` in ``folder`` (through a temporary name, so a killed run never
    leaves a half-written frame that a resume would trust); returns their paths, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame, index in zip(frames, indices, strict=True):
        path = folder / f"{index:06d}.png"
        tmp = path.with_suffix(".png.partial")
        frame.save(tmp, format="PNG")
        os.replace(tmp, path)
        paths.append(str(path))
    return paths


def load_images(paths: Sequence[str]) -> list[Any]:
    """The images at ``paths`` as RGB PIL images; InputError naming the first one that cannot be read."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"{path}: cannot read the frame ({type(exc).__name__})") from None
    return images
