"""Conversations whose message content is a list of parts (`sao.engine.types.ContentPart`): text, images,
and videos given as their sampled frames.

Rows keep the parts as plain JSON with file paths. For a model, a video part becomes one image per frame,
in order: the frames reach every processor as images, which its image processor handles (see
docs/methods/videosavi.md for why frames go as images rather than through the processors' video path).
"""

from __future__ import annotations

from typing import Any

from sao.engine.types import Conversation
from sao.errors import InputError

PART_TYPES = ("text", "image", "video")


def check_parts(conversation: Conversation, where: str = "conversation") -> None:
    """Raise InputError naming the message and part of the first malformed part."""
    for i, message in enumerate(conversation):
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            raise InputError(f"{where}: message {i} needs a string 'content' or a non-empty list of parts")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in PART_TYPES:
                raise InputError(f"{where}: message {i} part {j} needs a type in {PART_TYPES}")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise InputError(f"{where}: message {i} part {j} (text) needs a string 'text'")
            if kind == "image" and not isinstance(part.get("image"), str):
                raise InputError(f"{where}: message {i} part {j} (image) needs 'image', a file path")
            frames = part.get("frames")
            if kind == "video" and (
                not isinstance(frames, list) or not frames or not all(isinstance(f, str) for f in frames)
            ):
                raise InputError(f"{where}: message {i} part {j} (video) needs 'frames', a non-empty list of paths")


def image_paths(conversation: Conversation) -> list[str]:
    """Every image of the conversation in the order the model reads them: a video's frames one by one."""
    paths: list[str] = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            continue
        for part in content:
            if part["type"] == "image":
                paths.append(part["image"])
            elif part["type"] == "video":
                paths.extend(part["frames"])
    return paths


def template_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation as HF chat templates and TRL read multimodal messages: every content a list of
    ``{"type": "text", "text": ...}`` and ``{"type": "image"}`` placeholders (one per frame of a video), the
    images themselves handed to the processor separately, in `image_paths` order."""
    out = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = []
            for part in content:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part["type"] == "image":
                    parts.append({"type": "image"})
                else:
                    parts.extend({"type": "image"} for _ in part["frames"])
        out.append({"role": message["role"], "content": parts})
    return out
