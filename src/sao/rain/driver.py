"""Run many RAIN searches side by side, batching their requests into one engine call of each kind.

Every search is a coroutine (`sao.rain.search.Search.run`). Each round, every search in flight has yielded a
list of requests; the driver groups them by kind (next-token top-k, draws, evaluation scores, embeddings),
makes one engine call per kind (one per ``k`` for top-k), and sends each search its results. With
``batch_prompts`` off, the searches run one after another instead: the benchmark's baseline.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sao.engine.types import Engine, TokenPrompt
from sao.rain.search import Coroutine, Draw, Embed, RainAnswer, Request, Score, TopTokens


@dataclass
class CallCounts:
    """Engine and embedder calls a decode made, by kind, and the requests they carried."""

    calls: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # wall time spent in each kind's calls

    def timed(self, kind: str, requests: int, call: Callable[[], Any]) -> Any:
        """``call()``'s result, counted as one call of ``kind`` carrying ``requests`` requests."""
        start = time.perf_counter()
        result = call()
        self.seconds[kind] += time.perf_counter() - start
        self.calls[kind] += 1
        self.requests[kind] += requests
        return result

    @property
    def engine_calls(self) -> int:
        return sum(count for kind, count in self.calls.items() if kind != "embed")


def dispatch(engine: Engine, embedder: Any, requests: Sequence[Request], counts: CallCounts) -> list[Any]:
    """The result of each request, in order, from one call per kind."""
    results: list[Any] = [None] * len(requests)

    def indices(kind: type) -> list[int]:
        return [i for i, r in enumerate(requests) if isinstance(r, kind)]

    draws = indices(Draw)
    if draws:
        completions = counts.timed(
            "generate",
            len(draws),
            lambda: engine.generate([TokenPrompt(requests[i].ids) for i in draws], [requests[i].params for i in draws]),
        )
        for i, completion in zip(draws, completions):
            results[i] = completion
    tops = indices(TopTokens)
    for k in sorted({requests[i].k for i in tops}):
        same = [i for i in tops if requests[i].k == k]
        prompts = [TokenPrompt(requests[i].ids) for i in same]
        tops_k = counts.timed("top_logprobs", len(same), lambda: engine.top_logprobs(prompts, k))  # noqa: B023
        for i, top in zip(same, tops_k):
            results[i] = top
    scores = indices(Score)
    if scores:
        scored = counts.timed(
            "score",
            len(scores),
            lambda: engine.score([requests[i].prompt for i in scores], [requests[i].continuation for i in scores]),
        )
        for i, logprobs in zip(scores, scored):
            results[i] = logprobs
    embeds = indices(Embed)
    if embeds:
        texts = [t for i in embeds for t in requests[i].texts]
        vectors = np.asarray(counts.timed("embed", len(texts), lambda: embedder.embed(texts)), dtype=np.float32)
        start = 0
        for i in embeds:
            results[i] = vectors[start : start + len(requests[i].texts)]
            start += len(requests[i].texts)
    return results


def run_searches(
    engine: Engine,
    embedder: Any,
    searches: Sequence[Coroutine],
    *,
    batch_prompts: bool = True,
    progress: bool = False,
    counts: CallCounts | None = None,
) -> list[RainAnswer]:
    """Drive ``searches`` to their answers, in input order."""
    counts = counts if counts is not None else CallCounts()
    answers: list[RainAnswer | None] = [None] * len(searches)
    bar = tqdm(total=len(searches), unit="answer", desc="rain", disable=not progress, leave=False)
    groups = [list(range(len(searches)))] if batch_prompts else [[i] for i in range(len(searches))]
    try:
        for group in groups:
            pending: dict[int, list[Request]] = {}
            for i in group:
                _advance(searches, i, None, pending, answers, bar)
            while pending:
                order = list(pending)
                flat = [r for i in order for r in pending[i]]
                results = dispatch(engine, embedder, flat, counts)
                start = 0
                for i in order:
                    size = len(pending[i])
                    _advance(searches, i, results[start : start + size], pending, answers, bar)
                    start += size
                bar.set_postfix_str(f"{counts.engine_calls} engine calls", refresh=False)
    finally:
        bar.close()
    return answers  # type: ignore[return-value]


def _advance(
    searches: Sequence[Coroutine],
    i: int,
    results: list[Any] | None,
    pending: dict[int, list[Request]],
    answers: list[RainAnswer | None],
    bar: Any,
) -> None:
    """Send search ``i`` its results and file what it asks next, or its answer once it returns."""
    try:
        pending[i] = searches[i].send(results)
    except StopIteration as done:
        pending.pop(i, None)
        answers[i] = done.value
        bar.update(1)
