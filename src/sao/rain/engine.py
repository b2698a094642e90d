"""An engine whose ``generate`` answers with RAIN, over any engine that can serve its search.

RAIN sits above the engine layer: `RainEngine` wraps a built engine (transformers, llama.cpp, or anything
with next-token top-k, token-id prompts and ``score``), and whoever builds engines wraps one when the recipe's
``decoding.strategy`` is ``rain`` (`wrap_engine`). ``score`` and ``top_logprobs`` pass straight through, so a
judge or SAR on the same engine sees the plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sao.engine.capabilities import require
from sao.engine.lazy import loaded_engine
from sao.engine.prompts import prompt_ids
from sao.engine.stops import StopStrings
from sao.engine.types import (
    Completion,
    Continuation,
    Engine,
    NextTokenLogprobs,
    Prompt,
    Sample,
    SamplingParams,
    TokenLogprobs,
    per_request,
    sample_seed,
)
from sao.errors import ConfigError, InputError
from sao.rain.config import RAIN_NEEDS, RainSection, StrategySection
from sao.rain.driver import CallCounts, run_searches
from sao.rain.evaluate import dialogue_text
from sao.rain.search import Problem, RainAnswer, Search


@dataclass
class RainStats:
    """What the last ``generate`` call did: its answers' search records and the calls it made."""

    answers: list[RainAnswer]
    counts: CallCounts


class RainEngine:
    """``generate`` by RAIN on ``engine``'s model; everything else is ``engine``'s.

    Args:
        engine: the engine the search calls; it needs top_logprobs, token_prompts and score.
        settings: the ``decoding.rain`` section.
        embedder: what embeds node texts (`sao.rain.embedder.Embedder`); by default the one ``settings``
            names, loaded on the first ``generate``.
        progress: a progress bar over answers.
    """

    def __init__(self, engine: Engine, settings: RainSection, *, embedder: Any = None, progress: bool = True):
        require(engine.kind, engine.capabilities, RAIN_NEEDS, "decoding strategy 'rain'")
        self.engine = engine
        self.kind = engine.kind
        self.capabilities = engine.capabilities
        self.settings = settings
        self.search_settings = settings.search_settings()
        self._embedder = embedder
        self.progress = progress
        self.last: RainStats | None = None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from sao.rain.embedder import load_embedder

            self._embedder = load_embedder(self.settings.embedder)
        return self._embedder

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """``n`` RAIN answers per prompt. RAIN samples at temperature 1 as the paper does, so a request's
        temperature and top-p are not used; its ``n``, ``max_new_tokens``, ``stop`` and ``seed`` are."""
        params = per_request(sampling, len(prompts))
        for i, p in enumerate(params):
            control = next(
                (
                    name
                    for name, on in (
                        ("logit_bias", p.logit_bias),
                        ("frequency_penalty", p.penalised),
                        ("top_k", p.top_k),
                    )
                    if on
                ),
                None,
            )
            if control:
                raise ConfigError(f"{control}: decoding strategy 'rain' does not apply it (request {i})")
        loaded = loaded_engine(self.engine)
        tokenizer = loaded.tokenizer
        # The engine's own EOS set (the tokenizer's and the generation config's), else the tokenizer's.
        stops_eos = frozenset(getattr(loaded, "eos_ids", None) or {tokenizer.eos_token_id})
        encoded = prompt_ids(tokenizer, prompts)

        def decode(ids: Sequence[int]) -> str:
            return tokenizer.decode(list(ids), skip_special_tokens=True)

        searches, where = [], []
        for i, (prompt, ids, p) in enumerate(zip(prompts, encoded, params)):
            budget = min(p.max_new_tokens, self.settings.max_length - len(ids))
            if budget < 1:
                raise InputError(
                    f"prompt {i}: its {len(ids)} tokens leave no room under decoding.rain.max_length "
                    f"({self.settings.max_length})"
                )
            for j in range(p.n):
                seed = sample_seed(p, j)
                problem = Problem(
                    prompt_ids=tuple(ids),
                    dialogue=lambda answer, prompt=prompt: dialogue_text(prompt, answer, decode),
                    decode=decode,
                    eos_ids=stops_eos,
                    max_new_tokens=budget,
                    stop=p.stop,
                    seed=0 if seed is None else seed,
                )
                searches.append(Search(problem, self.search_settings).run())
                where.append((i, j, seed))
        counts = CallCounts()
        answers = run_searches(
            self.engine,
            self.embedder,
            searches,
            batch_prompts=self.settings.batch_prompts,
            progress=self.progress,
            counts=counts,
        )
        self.last = RainStats(answers, counts)
        completions = [Completion([None] * p.n) for p in params]  # type: ignore[list-item]
        for (i, j, seed), answer in zip(where, answers):
            text = StopStrings(tokenizer, params[i].stop).truncate(decode(answer.token_ids))
            completions[i].samples[j] = Sample(text, answer.token_ids, answer.finish_reason, seed, answer.eos_token_id)
        return completions

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        return self.engine.score(prompts, continuations)

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        return self.engine.top_logprobs(prompts, k)

    def release(self) -> None:
        release = getattr(self.engine, "release", None)
        if release is not None:
            release()


def wrap_engine(engine: Engine, decoding: StrategySection, *, progress: bool = True) -> Engine:
    """``engine`` as ``decoding`` asks: itself for plain sampling, a `RainEngine` over it for RAIN."""
    if decoding.strategy == "sample":
        return engine
    return RainEngine(engine, decoding.rain, progress=progress)
