"""RAIN's self-evaluation as a judge (``judge.signal: rain``, issue 19): each answer judged alone, as RAIN
judges its partial answers while it decodes (`sao.rain.evaluate`).

``sao judge-eval --judge rain`` measures that evaluator on labelled pairs before anyone decodes with it: the
answer the evaluator finds likelier to meet the criterion is preferred. Each answer is asked about in both
option orders, so a model that always picks "A" gets v = 0 and p_good = 0.5 on every answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sao.engine.capabilities import Capability
from sao.engine.types import Engine
from sao.rain.evaluate import CRITERIA, dialogue_text, evaluation_requests, p_good, vote

RAIN_JUDGE_NEEDS = frozenset({Capability.SCORE})
TIE = 1e-9  # p_good values closer than this are equal


@dataclass(frozen=True)
class SelfEvaluation:
    """One answer as RAIN's evaluator judged it."""

    vote: int  # v in {-1, 0, 1}: good votes over the two option orders, minus one
    p_good: float  # the good option's probability, averaged over the two orders


def self_evaluations(
    engine: Engine, prompts: Sequence[str], answers: Sequence[str], criterion: str = "harmless"
) -> list[SelfEvaluation]:
    """RAIN's judgement of each answer to its prompt (the user's turn, or a transcript that continues one), in
    one ``score`` call of four requests per answer."""
    if len(prompts) != len(answers):
        raise ValueError(f"self_evaluations: {len(prompts)} prompts but {len(answers)} answers")
    requests = [
        request
        for prompt, answer in zip(prompts, answers)
        for request in evaluation_requests(
            CRITERIA[criterion], dialogue_text([{"role": "user", "content": prompt}], answer)
        )
    ]
    if not requests:
        return []
    scored = engine.score([p for p, _ in requests], [letter for _, letter in requests])
    means = [s.mean for s in scored]
    return [SelfEvaluation(vote(means[i : i + 4]), p_good(means[i : i + 4])) for i in range(0, len(means), 4)]


def preference(a: SelfEvaluation, b: SelfEvaluation) -> float:
    """1.0 when A is the likelier to meet the criterion, 0.0 when B is, 0.5 when they are equal."""
    if abs(a.p_good - b.p_good) <= TIE:
        return 0.5
    return 1.0 if a.p_good > b.p_good else 0.0
