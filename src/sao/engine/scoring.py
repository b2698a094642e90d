"""Scoring requests that differ only in their last token share one forward pass.

The log-prob judge scores every judge prompt twice, with continuations that end in "1"
and in "2": the two sequences are equal up to their final token, so one pass over the
prompt gives both (the final position's distribution covers every candidate token).
That halves the judge's compute. Engines score `ScoreGroup`s and `expand` maps the
results back to the requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sao.engine.types import TokenLogprobs


@dataclass
class ScoreGroup:
    """Requests with the same prompt and the same continuation but for its last token.

    ``target`` is the first member's continuation; ``last_tokens`` holds every member's
    final token (the first member's included), ``members`` their request indices.
    """

    prompt: list[int]
    target: list[int]
    members: list[int] = field(default_factory=list)
    last_tokens: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.target)


def group_requests(prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> list[ScoreGroup]:
    """Group requests whose prompt and continuation agree up to the continuation's last token."""
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], ScoreGroup] = {}
    ordered: list[ScoreGroup] = []
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        if not target:  # nothing to score, nothing to share
            ordered.append(ScoreGroup(prompt, [], [i], []))
            continue
        key = (tuple(prompt), tuple(target[:-1]))
        if key not in groups:
            groups[key] = ScoreGroup(prompt, target)
            ordered.append(groups[key])
        groups[key].members.append(i)
        groups[key].last_tokens.append(target[-1])
    return ordered


def expand(
    groups: Sequence[ScoreGroup], scored: Sequence[tuple[list[float], list[float]]], targets: Sequence[list[int]]
) -> list[TokenLogprobs]:
    """Per-request TokenLogprobs from each group's (log-probs of target[:-1], log-prob of each last token)."""
    results: list[TokenLogprobs | None] = [None] * len(targets)
    for group, (head, last) in zip(groups, scored):
        for member, last_logprob in zip(group.members, last or [None] * len(group.members)):
            values = head if last_logprob is None else [*head, last_logprob]
            results[member] = TokenLogprobs(list(targets[member]), list(values))
    return results  # type: ignore[return-value]
