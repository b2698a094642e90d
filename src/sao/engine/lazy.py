"""An engine that loads its model on first use, so that a resumed run skips loads it does not need."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

from sao.engine.capabilities import Capability, backend_capabilities, engine_kind
from sao.engine.config import EngineSection
from sao.engine.factory import build_engine
from sao.engine.types import (
    Completion,
    Continuation,
    Engine,
    NextTokenLogprobs,
    Prompt,
    SamplingParams,
    TokenLogprobs,
)


def loaded_engine(engine: Engine) -> Engine:
    """The engine behind a lazy one (loading it now), else ``engine`` itself: for callers that need the loaded
    engine's own attributes, such as its tokenizer or EOS ids."""
    return engine.engine if isinstance(engine, LazyEngine) else engine


class LazyEngine:
    """Wraps a factory; ``generate``/``score``/``top_logprobs`` load the engine once, ``release`` frees it.

    ``kind`` and ``capabilities`` are the wrapped engine's, given up front (`lazy_engine` reads them
    from the settings), so that asking what the engine can do loads nothing.
    """

    def __init__(self, factory: Callable[[], Engine], *, kind: str, capabilities: frozenset[Capability]):
        self._factory = factory
        self.kind = kind
        self.capabilities = capabilities
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        return self.engine.generate(prompts, sampling)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        return self.engine.score(prompts, continuations)

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        return self.engine.top_logprobs(prompts, k)

    def release(self) -> None:
        """Drop the model so that training gets the memory (on a GPU, the cached blocks too).

        Engines that hold more than Python objects (vLLM's workers, Ray actors, HTTP
        connections) free them in their ``close``.
        """
        close = getattr(self._engine, "close", None)
        if close is not None:
            close()
        self._engine = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def lazy_engine(
    model: str, settings: EngineSection, *, trust_remote_code: bool, progress: bool, base_model: str | None = None
) -> LazyEngine:
    """The engine ``settings`` asks for on ``model`` (trained from ``base_model``, if given: see
    `sao.engine.factory.build_engine`), built on first use."""

    def build() -> Engine:
        # Looked up here at call time, so that tests can stand a recorder in for it.
        return build_engine(
            model, settings, trust_remote_code=trust_remote_code, progress=progress, base_model=base_model
        )

    return LazyEngine(build, kind=engine_kind(settings), capabilities=backend_capabilities(settings))
