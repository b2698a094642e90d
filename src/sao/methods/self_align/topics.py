"""Stage 1a, topic brainstorming for topic-guided red-teaming (TGRT): the request, and the filters that keep
a topic (a capitalised noun phrase of a few words, new to its type) and balance the types."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sao.methods.self_align.content import QuestionType

_NUMBERED = re.compile(r"^\s*\d+\s*[.)]\s*(.*)$")
# A phrase: words of letters or digits, joined by spaces, hyphens, apostrophes or '&'. Anything else (a
# colon, a question mark, quotes) means the model wrote a sentence or a comment, not a topic.
_PHRASE = re.compile(r"^[^\W_][\w'’&-]*(?: [\w'’&-]+)*$")
_TRAILING = ".,;:!?…"


def brainstorm_prompt(kind: QuestionType, shown: list[str], per_type: int) -> str:
    """A list to continue: the type, its ``shown`` topics numbered, and the next number to fill in."""
    total = len(shown) + per_type
    listed = "".join(f"{i}. {topic}\n" for i, topic in enumerate(shown, 1))
    return (
        f"Topics for hard questions. The kind of question: {kind.description}\n"
        f"A list of {total} different topics, each a short noun phrase of one to three words:\n"
        f"{listed}{len(shown) + 1}."
    )


def parse_topics(continuation: str, first_number: int) -> list[str]:
    """The topics of a brainstorm's numbered lines; the first line continues the prompt's ``first_number.``."""
    lines = f"{first_number}.{continuation}".splitlines()
    found = []
    for line in lines:
        match = _NUMBERED.match(line)
        if match is None:
            break  # the list has ended: whatever follows is not a topic
        # Small models decorate list items: "– Draft", "**Tenancy Law**", quotes.
        found.append(match.group(1).strip().lstrip("-–—•").strip().strip("*\"'“”").strip())
    return found


def topic_problem(topic: str, max_words: int) -> str | None:
    """Why ``topic`` is not a topic (``empty``, ``trailing_punctuation``, ``too_many_words``,
    ``not_capitalised``, ``not_a_phrase``), or None when it is one."""
    if not topic:
        return "empty"
    if topic[-1] in _TRAILING:
        return "trailing_punctuation"
    if len(topic.split()) > max_words:
        return "too_many_words"
    if not topic[0].isupper():
        return "not_capitalised"
    if not _PHRASE.match(topic):
        return "not_a_phrase"
    return None


def add_topics(
    existing: list[str], candidates: Iterable[str], max_words: int, limit: int
) -> tuple[list[str], dict[str, int]]:
    """``existing`` plus up to ``limit`` new ``candidates`` that pass `topic_problem` and are not already
    there (case-insensitive); and the rejected candidates counted by reason (``duplicate`` included)."""
    kept, seen, dropped = list(existing), {t.casefold() for t in existing}, {}
    added = 0
    for topic in candidates:
        reason = topic_problem(topic, max_words)
        if reason is None and topic.casefold() in seen:
            reason = "duplicate"
        if reason is None and added >= limit:
            reason = "over_limit"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        kept.append(topic)
        seen.add(topic.casefold())
        added += 1
    return kept, dropped


def balance(topics: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Each type's topics cut to the smallest count among the types that have any, so that no type dominates
    the questions. A type the model wrote no usable topic for is left out rather than cutting every other
    type to nothing (the topic stage's stats count such types)."""
    counts = [len(t) for t in topics.values() if t]
    if not counts:
        return {}
    smallest = min(counts)
    return {name: list(t[:smallest]) for name, t in topics.items() if t}
