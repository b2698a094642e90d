"""One verdict per judge request: which of two answers, shown in this order, the judge ranks first.

Read from log-probs of 'ranking: 1' vs 'ranking: 2' (``mode="logprob"``), or from a greedily generated
and strictly parsed ranking (``mode="generate"``). Synthesis's judge stage and eval's pairwise stage
both call `run_judge`; each builds its own requests and aggregates the verdicts its own way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import BaseModel

from sao.engine import Conversation, Engine, SamplingParams
from sao.errors import LogprobsUnavailable
from sao.synth.ranking import RANKING_PREFIX, first_wins_probability, parse_ranking

log = logging.getLogger(__name__)


class Judgement(BaseModel):
    first: int  # sample index shown as Response 1
    second: int  # sample index shown as Response 2
    p_first: float | None  # P(Response 1 ranked first); None when a generated ranking did not parse
    output: str | None = None  # the generated ranking (mode 'generate', or a fallback)
    fallback: bool = False  # mode 'logprob', but the engine could not score: judged by a generated ranking


@dataclass(frozen=True)
class JudgeRequest:
    row: int  # which of the caller's rows the verdict belongs to
    first: int
    second: int
    conversation: Conversation


def run_judge(engine: Engine, requests: list[JudgeRequest], mode: str, max_new_tokens: int) -> list[Judgement]:
    """One judgement per request, in order, by log-probs of '1' vs '2' (``mode="logprob"``) or by a ranking
    generated greedily within ``max_new_tokens`` and strictly parsed (``mode="generate"``).

    An engine that cannot score (a server that returns no prompt log-probs) gets generated
    rankings instead, marked ``fallback``, so that callers can count them in their stats.
    """
    if not requests:
        return []
    if mode == "logprob":
        try:
            return logprob_judgements(engine, requests)
        except LogprobsUnavailable as exc:
            warn_fallback(engine, exc)
            fallen_back = generate_judgements(engine, requests, max_new_tokens)
            return [j.model_copy(update={"fallback": True}) for j in fallen_back]
    return generate_judgements(engine, requests, max_new_tokens)


def logprob_judgements(engine: Engine, requests: list[JudgeRequest]) -> list[Judgement]:
    convs = [q.conversation for q in requests]
    # Both continuations share the prefix; only the digit differs, so the ratio of their
    # probabilities is the judge's preference between the two answers it may give.
    scored = engine.score(convs * 2, [f"{RANKING_PREFIX} 1"] * len(convs) + [f"{RANKING_PREFIX} 2"] * len(convs))
    return [
        Judgement(first=q.first, second=q.second, p_first=first_wins_probability(one.total, two.total))
        for q, one, two in zip(requests, scored[: len(convs)], scored[len(convs) :])
    ]


def generate_judgements(engine: Engine, requests: list[JudgeRequest], max_new_tokens: int) -> list[Judgement]:
    outputs = engine.generate(
        [q.conversation for q in requests], SamplingParams(temperature=0, max_new_tokens=max_new_tokens)
    )
    judgements = []
    for q, completion in zip(requests, outputs):
        text = completion.samples[0].text
        ranking = parse_ranking(text, 2)
        p_first = None if ranking is None else float(ranking[0] == 1)
        judgements.append(Judgement(first=q.first, second=q.second, p_first=p_first, output=text))
    return judgements


_warned_engines: set[str] = set()  # engine types whose fallback was logged: once per process, not per chunk


def warn_fallback(engine: Engine, exc: LogprobsUnavailable) -> None:
    kind = type(engine).__name__
    if kind not in _warned_engines:
        _warned_engines.add(kind)
        log.warning(
            "judge: %s; judging by generated rankings instead (mode 'generate'), counted as logprob_fallbacks", exc
        )
