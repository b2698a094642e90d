"""Stage 2, principle-driven answers: the prompt (principles, worked exemplars, the query), and the rules
that keep or drop what the model writes. Pure functions of text; the stage runs the model."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sao.methods.self_align.content import Exemplar, Principle
from sao.methods.self_align.turns import Turns


@dataclass(frozen=True)
class Answer:
    thoughts: str | None
    answer: str | None
    drop_reason: str | None


def rules_text(principles: list[Principle]) -> str:
    return "".join(f"{i} ({p.name}). {p.text}\n" for i, p in enumerate(principles, 1))


def principle_prompt(
    principles: list[Principle], exemplars: list[Exemplar], turns: Turns, name: str, identity: str, query: str
) -> str:
    """The principles, then the exemplars (user turn, internal thoughts, answer), then ``query``; the
    prompt ends inside the new answer turn's thoughts, after the self-identification sentence."""
    head = (
        f"# {name}\n\n{name} is an AI assistant. Before each answer, {name} thinks about which of its rules "
        f"apply to the question, then answers by them.\n\n## {name}'s rules\n{rules_text(principles)}\n"
        f"## Conversations with {name}\n\n"
    )
    shown = "".join(
        turns.turn(turns.user, e.user) + turns.turn(turns.thoughts, f"{identity} {e.thoughts}")
        + turns.turn(turns.assistant, e.answer)
        for e in exemplars
    )  # fmt: skip
    return head + shown + turns.turn(turns.user, query) + f"{turns.thoughts}\n{identity}"


def _has(text: str, marker: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(marker)}(?!\w)", text) is not None


def copied_markers(answer: str, markers: tuple[str, ...], query: str) -> int:
    """How many of an exemplar's ``markers`` the answer holds, leaving out those the query itself names."""
    text, asked = answer.lower(), query.lower()
    return sum(_has(text, m) and not _has(asked, m) for m in markers)


def copies(answer: str, exemplars: list[Exemplar], query: str, at_least: int) -> bool:
    return any(e.markers and copied_markers(answer, e.markers, query) >= at_least for e in exemplars)


def is_refusal(answer: str, openers: list[str]) -> bool:
    opening = answer.lstrip(" \"'*").casefold()
    return any(opening.startswith(o.casefold()) for o in openers)


def read_answer(
    continuation: str,
    turns: Turns,
    query: str,
    exemplars: list[Exemplar],
    *,
    min_chars: int,
    refusal_openers: list[str],
    copy_markers: int,
) -> Answer:
    """The thoughts and the answer of the model's ``continuation`` of `principle_prompt`, or why it is dropped:

    - ``bad_format``: the thoughts are empty or the continuation opens a turn of its own;
    - ``no_answer_marker``: no answer turn follows the thoughts;
    - ``too_short``: fewer than ``min_chars`` characters of answer, cut at the next turn;
    - ``copies_exemplar``: ``copy_markers`` of one exemplar's distinctive markers (not in the query);
    - ``refusal``: the answer opens with one of ``refusal_openers``.
    """
    marker = f"\n{turns.assistant}\n"
    at = continuation.find(marker)
    thoughts = turns.cut(continuation[:at] if at >= 0 else continuation)
    if not thoughts or continuation.lstrip().startswith(turns.labels):
        return Answer(None, None, "bad_format")
    if at < 0 or turns.cut(continuation[:at]) != continuation[:at].strip():
        return Answer(thoughts, None, "no_answer_marker")  # missing, or after a turn the model opened itself
    answer = turns.cut(continuation[at + len(marker) :])
    if len(answer) < min_chars:
        return Answer(thoughts, answer, "too_short")
    if copies(answer, exemplars, query, copy_markers):
        return Answer(thoughts, answer, "copies_exemplar")
    if is_refusal(answer, refusal_openers):
        return Answer(thoughts, answer, "refusal")
    return Answer(thoughts, answer, None)
