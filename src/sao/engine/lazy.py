"""An engine that loads its model on first use, so that a resumed run skips loads it does not need."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

from sao.engine.config import EngineSection
from sao.engine.factory import build_engine
from sao.engine.types import Completion, Conversation, Engine, SamplingParams, TokenLogprobs


class LazyEngine:
    """Wraps a factory; ``generate``/``score`` load the engine once, ``release`` frees it."""

    def __init__(self, factory: Callable[[], Engine]):
        self._factory = factory
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        return self.engine.generate(conversations, sampling)

    def score(self, conversations: Sequence[Conversation], continuations: Sequence[str]) -> list[TokenLogprobs]:
        return self.engine.score(conversations, continuations)

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


def lazy_engine(model: str, settings: EngineSection, *, trust_remote_code: bool, progress: bool) -> LazyEngine:
    """The engine ``settings`` asks for on ``model``, built on first use."""
    return LazyEngine(lambda: build_engine(model, settings, trust_remote_code=trust_remote_code, progress=progress))
