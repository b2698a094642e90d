"""Self-judgement logic: the ranking prompt, strict parsing, position debiasing, pair selection.

The prompt follows arXiv 2510.06652 (SAO): an impartial judge ranks the responses by
relevance and specificity, accuracy, completeness and clarity, and answers strictly
``ranking: X > Y``. The prompt, the parsing and the debiasing are every judge's (`sao.judge`,
used by synthesis and eval alike); the pair selection is SAO's filter (`sao.stages.judge`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

JUDGE_TEMPLATE = (
    "You are an impartial judge. Rank the responses below to the prompt from best to worst, "
    "considering relevance and specificity, accuracy, completeness and clarity. "
    "Do not let the order or the length of the responses influence you.\n\n"
    "Prompt: {prompt}\n\n"
    "{responses}\n\n"
    "Answer strictly in the format 'ranking: X > Y' and write nothing else."
)
RANKING_PREFIX = "ranking:"

# The whole answer must be one ranking; anything else (prose around it, a second ranking,
# a ranking copied out of a response) is malformed rather than guessed at.
_RANKING = re.compile(r"\s*ranking\s*:\s*(\d+(?:\s*>\s*\d+)+)\s*\.?\s*", re.IGNORECASE)


def format_responses(responses: Sequence[str]) -> str:
    return "\n\n".join(f"Response {i}: <Response {i}>\n{r}\n</Response {i}>" for i, r in enumerate(responses, 1))


def build_judge_prompt(prompt: str, responses: Sequence[str], template: str = JUDGE_TEMPLATE) -> str:
    """The judge's user message for ``responses`` (numbered from 1) to ``prompt``."""
    return template.format(prompt=prompt, responses=format_responses(responses))


def parse_ranking(text: str, k: int) -> tuple[int, ...] | None:
    """The 1-based slots from best to worst, or None unless ``text`` is exactly one valid ranking.

    Valid: every slot 1..k appears once. ``"ranking: 2 > 1"`` gives ``(2, 1)``.
    """
    match = _RANKING.fullmatch(text)
    if not match:
        return None
    order = tuple(int(x) for x in re.split(r"\s*>\s*", match.group(1)))
    return order if sorted(order) == list(range(1, k + 1)) else None


def first_wins_probability(logprob_first: float, logprob_second: float) -> float:
    """P(slot 1 is ranked first) from the log-probs of 'ranking: 1' and 'ranking: 2', renormalised over the two."""
    hi = max(logprob_first, logprob_second)
    a, b = math.exp(logprob_first - hi), math.exp(logprob_second - hi)
    return a / (a + b)


def debiased_probability(p_forward: float, p_swapped: float) -> float:
    """P(A better than B) from both orders.

    ``p_forward`` is P(slot 1 wins) with A in slot 1; ``p_swapped`` is P(slot 1 wins) with
    B in slot 1. A judge that always picks slot 1 gets 0.5: no preference, so the pair is
    dropped by the margin rule rather than trained on. Written as an offset from 0.5 so that
    equal probabilities in both orders give exactly 0.5 (a tie), with no rounding either way.
    """
    return 0.5 + (p_forward - p_swapped) / 2.0


def orders_agree(p_forward: float, p_swapped: float) -> bool:
    """Whether both orders prefer the same response (a coin flip in either order does not agree)."""
    return p_forward != 0.5 and p_swapped != 0.5 and (p_forward > 0.5) == (p_swapped < 0.5)


def verdict_drop_reason(p_chosen: float, consistent: bool | None, rule: str, margin: float) -> str | None:
    """Why a judged pair is not kept, or None to keep it.

    ``p_chosen`` (>= 0.5) is the probability that the chosen response is better.
    ``rule="agree"`` (swap mode only) keeps pairs whose two orders agree; otherwise a pair
    is kept when ``p_chosen - 0.5 >= margin``. A coin flip (0.5) is never kept.
    """
    if rule == "agree" and consistent is not None:
        return None if consistent else "inconsistent"
    if p_chosen == 0.5 or p_chosen - 0.5 < margin:
        return "below_margin"
    return None


def round_robin(k: int) -> list[tuple[int, int]]:
    """All unordered pairs (i, j), i < j, of k responses (0-based)."""
    return list(itertools.combinations(range(k), 2))


def best_and_worst(k: int, p_better: Mapping[tuple[int, int], float]) -> tuple[int, int, list[float]]:
    """Best and worst of k responses from round-robin judgements.

    ``p_better[(i, j)]`` is P(i better than j) for i < j. Each response scores the sum of
    its win probabilities (a win counts 1, a coin flip 0.5). Ties go to the lower index for
    best and to the higher index for worst, so best != worst whenever k >= 2.
    """
    scores = [0.0] * k
    for (i, j), p in p_better.items():
        scores[i] += p
        scores[j] += 1.0 - p
    best, worst = highest_and_lowest(scores)
    return best, worst, scores


def highest_and_lowest(scores: Sequence[float]) -> tuple[int, int]:
    """Indices of the highest and the lowest of two or more scores: ties go to the lower index for the highest
    and to the higher index for the lowest, so the two differ."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], -i))
    return best, worst
