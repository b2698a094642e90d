"""Per-candidate scores from SAR (``judge.signal: sar``, issue 18): each candidate's self-aligned reward under the
judge model, after the prompt the policy answered, put on the rubric's 0-6 scale.

The pair rules (`sao.methods.dno.rules`) then keep their meaning and their recipe fields: R_SA in [-1, 1) maps
linearly to 3 (R_SA + 1) in [0, 6), so ``min_positive`` 5 asks R_SA >= 2/3 of a positive, ``policy_gap`` 1 a lead
of 1/3 in R_SA and ``gold_gap`` 2 a lead of 2/3. On SmolLM2-135M's own answers R_SA runs from about 0.2 (generic)
to 0.86 (short and on topic), so the paper's thresholds keep the prompts with one sharply specific answer.
DNO's prompts carry no reference answer, so no verifier adds R_VR: candidates rank by R_SA alone.
"""

from __future__ import annotations

from sao.engine.types import Conversation, Engine
from sao.judge.sar import score_answers


def on_rubric_scale(r_sa: float) -> float:
    """R_SA in [-1, 1) as a score in [0, 6) (rounded as rubric scores are read: to 4 places)."""
    return round(3.0 * (r_sa + 1.0), 4)


def line_up_sar(judge: Engine, line_ups: list[tuple[Conversation, list[str]]]) -> list[list[float]]:
    """R_SA of every candidate text of each (conversation, candidates) line-up, scored in one engine call."""
    flat = [(conversation, text) for conversation, texts in line_ups for text in texts]
    scores = iter(score_answers(judge, [c for c, _ in flat], [t for _, t in flat]))
    return [[next(scores) for _ in texts] for _, texts in line_ups]
