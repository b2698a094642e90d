"""The backend-neutral engine interface, in the spirit of vLLM's ``LLM.generate`` + ``SamplingParams``.

Every backend (transformers in-process, vLLM, OpenAI-compatible HTTP, and Ray actors running
any of them) implements `Engine`: ``generate`` for sampling and ``score`` for token log-probs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sao.errors import ConfigError

Message = dict[str, str]  # {"role": ..., "content": ...}
Conversation = list[Message]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request. ``temperature == 0`` means greedy decoding.

    ``seed`` makes a request reproducible on its own, whatever else shares its batch; sample
    ``j`` of ``n`` uses `derive_seed(seed, j)`. With no seed, a fresh one is drawn and
    reported on each `Sample`, so any output can still be reproduced.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n: must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ConfigError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if any(not s for s in self.stop):
            raise ConfigError("stop: stop strings must be non-empty")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (a base seed and a sample index, a row id, ...).

    Hash-based rather than ``seed + j`` so that seeds of neighbouring rows never overlap.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def sample_seed(params: SamplingParams, index: int) -> int | None:
    """The seed of sample ``index`` of a request, the same in every engine; greedy samples need none.

    A request without a seed draws a fresh base, so that the reported seed still reproduces it.
    """
    if params.greedy:
        return None
    base = params.seed if params.seed is not None else secrets.randbits(63)
    return derive_seed(base, index)


@dataclass
class Sample:
    """One sampled continuation."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason  # "stop": EOS or a stop string; "length": hit max_new_tokens
    seed: int | None  # None for greedy samples, which need no seed

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class Completion:
    """All samples for one conversation, in sample order."""

    samples: list[Sample] = field(default_factory=list)


@dataclass
class TokenLogprobs:
    """Log-probabilities of a continuation's tokens given the conversation."""

    token_ids: list[int]
    logprobs: list[float]

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        return self.total / len(self.logprobs) if self.logprobs else 0.0


class Engine(Protocol):
    """What every generation backend provides."""

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """One `Completion` per conversation, in input order; ``sampling`` is shared or per request."""
        ...

    def score(self, conversations: Sequence[Conversation], continuations: Sequence[str]) -> list[TokenLogprobs]:
        """Log-probs of each continuation's tokens as the assistant's reply to its conversation."""
        ...


def per_request(sampling: SamplingParams | Sequence[SamplingParams], count: int) -> list[SamplingParams]:
    """Broadcast one SamplingParams to ``count`` requests, or check a per-request list."""
    if isinstance(sampling, SamplingParams):
        return [sampling] * count
    params = list(sampling)
    if len(params) != count:
        raise ConfigError(f"sampling: got {len(params)} SamplingParams for {count} conversations")
    return params
