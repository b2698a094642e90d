"""Stage 1c, plain self-instruct: a request that shows a few seed tasks and leaves the next one open, and
Self-Instruct's filters on what comes back."""

from __future__ import annotations

import re

from sao.methods.self_align.content import SeedTask

_NEXT_ITEM = re.compile(r"\n\s*\d+\s*[.)]")


def task_prompt(examples: list[SeedTask]) -> str:
    listed = "".join(f"{i}. {' '.join(t.instruction.split())}\n" for i, t in enumerate(examples, 1))
    return f"Varied tasks that people ask an AI assistant to do, one per item:\n{listed}{len(examples) + 1}."


def parse_task(continuation: str) -> str:
    """The open item's text: up to the next numbered item or blank line."""
    text = _NEXT_ITEM.split(continuation, maxsplit=1)[0]
    return re.split(r"\n\s*\n", text, maxsplit=1)[0].strip()


def task_problem(task: str, min_words: int, max_words: int, blacklist: list[str]) -> str | None:
    """Why ``task`` is dropped (``empty``, ``too_short``, ``too_long``, ``starts_with_punctuation``,
    ``blacklisted``: a word a text-only model cannot act on), or None to keep it."""
    if not task:
        return "empty"
    words = len(task.split())
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    if not task[0].isalnum():
        return "starts_with_punctuation"
    lowered = task.lower()
    if any(re.search(rf"\b{re.escape(word.lower())}\b", lowered) for word in blacklist):
        return "blacklisted"
    return None
