"""Pulling the answer out of a model's text after a marker such as ``User prompt:``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DropReason = Literal["truncated", "missing_marker", "empty", "too_short", "too_long"]
_QUOTES = "\"'“”‘’`"


@dataclass(frozen=True)
class Extracted:
    text: str | None
    drop_reason: DropReason | None


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def extract_after_marker(
    output: str,
    marker: str,
    *,
    max_chars: int,
    min_words: int = 1,
    finish_reason: str = "stop",
    require_marker: bool = True,
    trim_truncated: bool = False,
) -> Extracted:
    """The text after the first ``marker`` (case-insensitive), up to the first blank line.

    Small models often add a comment after their answer, separated by a blank line; the
    answer itself is one paragraph. Surrounding quotes and markdown bold are stripped.

    Returns a drop reason instead when the answer's paragraph was cut off by the token
    budget (``finish_reason == "length"`` with no paragraph break after it), the marker is
    missing, the answer is empty, has fewer than ``min_words`` words (a bare salutation such
    as "Hi Sarah,"), or is over ``max_chars``.
    With ``require_marker=False`` an output with no marker is taken whole; with
    ``trim_truncated=True`` a cut-off output keeps its complete sentences (descriptive
    text such as a persona survives that; a prompt does not).
    """
    match = re.search(re.escape(marker), output, flags=re.IGNORECASE)
    if match is None and require_marker:
        return Extracted(None, "truncated" if finish_reason == "length" else "missing_marker")
    paragraphs = re.split(r"\n\s*\n", output[match.end() if match else 0 :].strip(), maxsplit=1)
    text = paragraphs[0]
    # Cut off by the budget matters only when the answer's own paragraph was cut.
    if finish_reason == "length" and len(paragraphs) == 1:
        ends = list(_SENTENCE_END.finditer(text)) if trim_truncated else []
        if not ends:
            return Extracted(None, "truncated")
        text = text[: ends[-1].end()]
    text = text.strip().strip("*").strip().strip(_QUOTES).strip()
    if not text:
        return Extracted(None, "empty")
    if len(text) > max_chars:
        return Extracted(None, "too_long")
    if len(text.split()) < min_words:
        return Extracted(None, "too_short")
    return Extracted(text, None)


def request(instruction: str, marker: str, prefill: bool) -> list[dict[str, str]]:
    """A one-turn conversation asking ``instruction``, optionally with the answer started by ``marker``."""
    conversation = [{"role": "user", "content": instruction}]
    return conversation + [{"role": "assistant", "content": marker}] if prefill else conversation


def answer_text(output: str, marker: str, prefill: bool) -> str:
    """The model's whole answer, with the prefilled marker put back in front."""
    return marker + output if prefill else output
