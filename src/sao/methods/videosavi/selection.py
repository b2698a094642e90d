"""Which candidates make a pair: the best- and worst-scored answers (v1), and the CLIP check that swaps them
when the rejected one is closer to the video."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    chosen: int | None  # candidate indices; None when the question gives no pair
    rejected: int | None
    reason: str | None  # why there is no pair: "no_scores", "no_margin", "same_text"


def best_and_worst(texts: Sequence[str], totals: Sequence[float | None]) -> Choice:
    """The highest- and lowest-total candidates (the first written wins a tie), among those whose rubric parsed.

    No pair when fewer than two parsed (``no_scores``), when best and worst score the same (``no_margin``: the
    model told them apart by nothing), or when their texts are the same (``same_text``: a pair of one answer
    teaches nothing).
    """
    scored = [i for i, total in enumerate(totals) if total is not None]
    if len(scored) < 2:
        return Choice(None, None, "no_scores")
    best = max(scored, key=lambda i: (totals[i], -i))
    worst = min(scored, key=lambda i: (totals[i], i))
    if totals[best] == totals[worst]:
        return Choice(None, None, "no_margin")
    if " ".join(texts[best].split()) == " ".join(texts[worst].split()):
        return Choice(None, None, "same_text")
    return Choice(best, worst, None)


def clip_swap(chosen_similarity: float, rejected_similarity: float) -> bool:
    """Whether the pair swaps: exactly when the rejected answer is closer to the frames than the chosen one."""
    return rejected_similarity > chosen_similarity
