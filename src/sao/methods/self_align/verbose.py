"""Stage 4, verbose cloning: the prompt under which the engraved model answers at length, and the filter on
its answers."""

from __future__ import annotations

from sao.methods.self_align.answers import copied_markers
from sao.methods.self_align.content import VerbosePrompt
from sao.methods.self_align.turns import Turns


def verbose_prompt(verbose: VerbosePrompt, turns: Turns, name: str, query: str) -> str:
    """The description of a thorough assistant, its one long exemplar, then ``query``'s answer turn, open."""
    e = verbose.exemplar
    return (
        f"# {name}\n\n{verbose.description}\n\n"
        + turns.turn(turns.user, e.user)
        + turns.turn(turns.assistant, e.answer)
        + turns.turn(turns.user, query)
        + f"{turns.assistant}\n"
    )


def read_verbose(
    continuation: str, turns: Turns, verbose: VerbosePrompt, query: str, *, min_chars: int, copy_markers: int
) -> tuple[str, str | None]:
    """The answer cut at the next turn, and why it is dropped (``too_short``, ``copies_exemplar``) or None."""
    answer = turns.cut(continuation)
    if len(answer) < min_chars:
        return answer, "too_short"
    if verbose.exemplar.markers and copied_markers(answer, verbose.exemplar.markers, query) >= copy_markers:
        return answer, "copies_exemplar"
    return answer, None
