"""An engine that loads its model on first use, so that a resumed run skips loads it does not need."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

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
        """Drop the model so that training gets the memory (on a GPU, the cached blocks too)."""
        self._engine = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def lazy_engine(model: str, settings: Any, *, trust_remote_code: bool, progress: bool) -> LazyEngine:
    """A transformers engine on ``model`` that loads on first use; ``settings`` has device, dtype and batch_size."""

    def load() -> Engine:
        from sao.engine.transformers_engine import TransformersEngine

        engine = TransformersEngine.from_spec(
            model,
            device=settings.device,
            dtype=settings.dtype,
            trust_remote_code=trust_remote_code,
            max_batch_size=settings.batch_size,
        )
        engine.progress = progress
        return engine

    return LazyEngine(load)
