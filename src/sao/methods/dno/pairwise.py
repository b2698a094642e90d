"""Per-candidate scores from sao's pairwise judge: every pair of candidates judged in both orders,
debiased, and each candidate's mean win probability put on the rubric's 0-6 scale.

The alternative to the rubric (`sao.methods.dno.rubric`) for judges that cannot write score lines:
a log-prob verdict always parses, so a small self-judge still gives scores (mostly near 3, since
its verdicts sit near 0.5).
"""

from __future__ import annotations

from sao.engine.types import Engine
from sao.judge.verdict import Judgement, JudgeRequest, run_judge
from sao.synth.ranking import build_judge_prompt, debiased_probability, round_robin


def pairwise_requests(row: int, prompt: str, texts: list[str], template: str) -> list[JudgeRequest]:
    """Both orders of every pair of ``texts``."""
    out = []
    for a, b in round_robin(len(texts)):
        for first, second in ((a, b), (b, a)):
            content = build_judge_prompt(prompt, [texts[first], texts[second]], template)
            out.append(JudgeRequest(row, first, second, [{"role": "user", "content": content}]))
    return out


def win_scores(count: int, judgements: list[Judgement]) -> list[float] | None:
    """6 × each candidate's mean debiased win probability; None when any pair's verdict did not parse."""
    p_first = {(j.first, j.second): j.p_first for j in judgements}
    wins = [0.0] * count
    for a, b in round_robin(count):
        forward, swapped = p_first.get((a, b)), p_first.get((b, a))
        if forward is None or swapped is None:
            return None
        p_a = debiased_probability(forward, swapped)
        wins[a] += p_a
        wins[b] += 1 - p_a
    return [round(6 * w / (count - 1), 4) for w in wins]


def pairwise_scores(
    judge: Engine, line_ups: list[tuple[str, list[str]]], template: str, mode: str, max_new_tokens: int
) -> list[list[float] | None]:
    """Scores of each (prompt, candidate texts) line-up, judged in one engine call."""
    requests = [q for r, (prompt, texts) in enumerate(line_ups) for q in pairwise_requests(r, prompt, texts, template)]
    judgements = run_judge(judge, requests, mode, max_new_tokens)
    per_row: list[list[Judgement]] = [[] for _ in line_ups]
    for request, judgement in zip(requests, judgements):
        per_row[request.row].append(judgement)
    return [win_scores(len(texts), js) for (_, texts), js in zip(line_ups, per_row)]
