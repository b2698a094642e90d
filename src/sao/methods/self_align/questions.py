"""Stage 1b, TGRT question writing: a request for questions on (type, topic) hints, and matching each
question the model writes back to the hint it answers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sao.methods.self_align.content import QuestionType

INTRO = (
    "Below are questions that an AI assistant cannot answer, or would answer with the wrong facts. Each one "
    "is written for a kind of question and a topic.\n\n"
)
_FIELD = re.compile(r"^\s*(Type|Topic|Question)\s*:\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Hint:
    type: str  # the question type's name
    topic: str

    @property
    def id(self) -> str:
        return f"{self.type}:{self.topic.casefold()}"


@dataclass(frozen=True)
class Written:
    type: str  # as the model wrote it (the type's description)
    topic: str
    question: str


def block(kind: QuestionType, topic: str, question: str = "") -> str:
    return f"Type: {kind.description}\nTopic: {topic}\nQuestion:{' ' + question if question else ''}"


def question_prompt(hints: list[Hint], types: dict[str, QuestionType], examples: list[QuestionType]) -> str:
    """The intro, the seed questions of ``examples``, the hints still to cover, and the first hint's block
    left open for its question."""
    shown = "".join(block(k, k.seed_topic, k.seed_question) + "\n\n" for k in examples)
    todo = ""
    if len(hints) > 1:
        listed = "".join(f"- Type: {types[h.type].description} | Topic: {h.topic}\n" for h in hints)
        todo = f"Next, one question for each of these:\n{listed}\n"
    first = hints[0]
    return INTRO + shown + todo + block(types[first.type], first.topic)


def parse_written(continuation: str, first: Hint, types: dict[str, QuestionType]) -> list[Written]:
    """The (type, topic, question) blocks of a reply; the first continues the prompt's open block."""
    text = block(types[first.type], first.topic) + continuation
    found: list[Written] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "type" and current:
            current = {}
        current[key] = value
        if key == "question" and value and "type" in current and "topic" in current:
            found.append(Written(current["type"], current["topic"], value))
            current = {}
    return found


def match_hints(
    written: list[Written], hints: list[Hint], types: dict[str, QuestionType]
) -> tuple[list[tuple[Hint, str]], int]:
    """Each written question paired with the hint whose type (description or name) and topic it names
    (case-insensitive); and how many named no hint of the request. A hint's later questions are kept
    here and dropped as duplicates when prompts are chosen."""

    def key(kind: str, topic: str) -> tuple[str, str]:
        return kind.strip().casefold(), topic.strip().strip(".").casefold()

    index: dict[tuple[str, str], Hint] = {}
    for hint in hints:
        kind = types[hint.type]
        index[key(kind.description, hint.topic)] = hint
        index[key(kind.name, hint.topic)] = hint
    matched, unmatched = [], 0
    for w in written:
        hint = index.get(key(w.type, w.topic))
        if hint is None:
            unmatched += 1
        else:
            matched.append((hint, w.question))
    return matched, unmatched
