"""Reading the model's own text: its questions (typed What / Why / How) and its rubric scores. What does not
parse is None or left out, and the stage counts it; nothing here raises on model output."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sao.methods.videosavi.config import QUESTION_TYPES

# "What: ...", "1. Why: ...", "- How - ...", "**What**: ..." : a type label, then the question.
_QUESTION = re.compile(r"^\W*(?:\d+\s*[.)]\s*)?\W*(what|why|how)\W*?\s*[:\-]\s*(.+)$", re.IGNORECASE)
CRITERIA = ("relevance", "accuracy", "temporal grounding", "clarity")
MAX_SCORE = 10
_SCORE = re.compile(
    r"^\W*(relevance|accuracy|temporal[ _-]*grounding|clarity)\W*\s*[:=\-]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE
)


@dataclass(frozen=True)
class Question:
    type: str  # "what", "why" or "how"
    text: str


def parse_questions(text: str, per_type: int) -> list[Question]:
    """The labelled questions of ``text``, at most ``per_type`` of each type, in the order written.

    A line counts when it starts with a type label and its question ends with a question mark; a question
    repeated (case and spacing aside) counts once. Unlabelled lines are ignored.
    """
    seen: set[str] = set()
    counts = dict.fromkeys(QUESTION_TYPES, 0)
    out = []
    for line in text.splitlines():
        match = _QUESTION.match(line.strip())
        if not match:
            continue
        kind, question = match.group(1).lower(), match.group(2).strip().strip("*").strip()
        if not question.endswith("?") or len(question) < 4:
            continue
        key = " ".join(question.lower().split())
        if key in seen or counts[kind] >= per_type:
            continue
        seen.add(key)
        counts[kind] += 1
        out.append(Question(kind, question))
    return out


@dataclass(frozen=True)
class Rubric:
    relevance: float
    accuracy: float
    temporal_grounding: float
    clarity: float

    @property
    def total(self) -> float:
        return self.relevance + self.accuracy + self.temporal_grounding + self.clarity


def parse_rubric(text: str) -> Rubric | None:
    """The four criterion scores of a rubric reply (each 0-10, the first line per criterion counts), or None
    when a criterion is missing or a score is out of range."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _SCORE.match(line.strip())
        if not match:
            continue
        name = "temporal grounding" if match.group(1).lower().startswith("temporal") else match.group(1).lower()
        found.setdefault(name, float(match.group(2)))
    if set(found) != set(CRITERIA) or any(not 0 <= v <= MAX_SCORE for v in found.values()):
        return None
    return Rubric(found["relevance"], found["accuracy"], found["temporal grounding"], found["clarity"])
