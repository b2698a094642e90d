"""DNO-Prct's pair rules: which (positive, negative) pairs one prompt's scored candidates give.

Pure functions over scores, so that the rules can be tested on fixed numbers. Each prompt gives at
most one pair: its best-scoring candidate (a policy sample or the gold answer) against its
lowest-scoring one, kept only when the margin rules hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from sao.dedup import normalize

GOLD = "gold"
POLICY = "policy"


@dataclass(frozen=True)
class Candidate:
    index: int  # position in the line-up the judge scored
    origin: str  # GOLD or POLICY
    text: str
    score: float
    repetitive: bool = False  # too many repeated n-grams: a negative whatever its score


@dataclass(frozen=True)
class PairChoice:
    positive: Candidate | None
    negative: Candidate | None
    rule: str  # "kept", or why there is no pair: "low_positive", "small_gap", "no_negative"


def repeated_share(text: str, n: int) -> float:
    """The share of a text's word n-grams that repeat an earlier one (0 for texts shorter than n words)."""
    words = normalize(text).split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def choose_pair(candidates: list[Candidate], *, min_positive: float, gold_gap: float, policy_gap: float) -> PairChoice:
    """The best non-repetitive candidate against the lowest-scored (repetitive ones count as lowest).

    A positive needs ``min_positive``; its negative must be at least ``gold_gap`` lower when the
    positive is the gold answer, ``policy_gap`` when it is a policy sample. Ties go to the policy
    sample (a student-over-gold pair is what DNO's Table 2 counts), then to the earlier candidate.
    """
    eligible = [c for c in candidates if not c.repetitive]
    if not eligible:
        return PairChoice(None, None, "low_positive")
    positive = max(eligible, key=lambda c: (c.score, c.origin == POLICY, -c.index))
    if positive.score < min_positive:
        return PairChoice(None, None, "low_positive")
    others = [c for c in candidates if c is not positive]
    if not others:
        return PairChoice(None, None, "no_negative")
    negative = min(others, key=lambda c: (not c.repetitive, c.score, c.index))
    if negative.repetitive:
        return PairChoice(positive, negative, "kept")
    gap = gold_gap if positive.origin == GOLD else policy_gap
    if positive.score - negative.score < gap:
        return PairChoice(None, None, "small_gap")
    return PairChoice(positive, negative, "kept")
