"""The backend-neutral engine interface, in the spirit of vLLM's ``LLM.generate`` + ``SamplingParams``.

Every backend (transformers in-process, llama.cpp, vLLM, OpenAI-compatible HTTP, and Ray actors
running any of them) implements `Engine`: ``generate`` for sampling, ``score`` for the log-probs of
a given continuation and ``top_logprobs`` for the next-token distribution, each over prompts of
three kinds (`Prompt`). What a backend can do of this is its `sao.engine.capabilities.Capability`
set; asked for more, it raises `sao.engine.capabilities.CapabilityError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

from sao.errors import ConfigError

FinishReason = Literal["stop", "length"]


# ------------------------------------------------------------------------------------------------ prompts
# Message parts are TypedDicts, not dataclasses: conversations are stored in rows as plain JSON.
class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImagePart(TypedDict):
    type: Literal["image"]
    image: str  # a file path or URL


class VideoPart(TypedDict):
    type: Literal["video"]
    frames: list[str]  # file paths or URLs of the frames, in order


ContentPart = TextPart | ImagePart | VideoPart


class Message(TypedDict):
    """One chat turn. ``content`` made of parts (text, images, video frames) needs an engine with the
    ``multimodal`` capability; plain text works everywhere."""

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


Conversation = list[Message]  # rendered with the model's chat template, ending with the assistant header


@dataclass(frozen=True)
class RawPrompt:
    """Text the model reads as it is, with no chat template (base models, few-shot prompts).

    It is tokenized as a document: with the tokenizer's own special tokens (the BOS of Llama-style
    tokenizers) unless ``add_special_tokens`` is False, as vLLM and HF pipelines treat a text prompt.
    """

    text: str
    add_special_tokens: bool = True


@dataclass(frozen=True)
class TokenPrompt:
    """Token ids the model reads as they are: a prefix to continue exactly, where re-tokenising its
    text would merge tokens differently at a join (RAIN's search over token sets)."""

    token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))


Prompt = Conversation | RawPrompt | TokenPrompt
# A continuation to score: text (tokenized on its own, as a trainer tokenizes a completion) or token ids.
Continuation = str | Sequence[int]


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
    """All samples for one prompt, in sample order."""

    samples: list[Sample] = field(default_factory=list)


@dataclass
class TokenLogprobs:
    """Log-probabilities of a continuation's tokens given the prompt."""

    token_ids: list[int]
    logprobs: list[float]

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        return self.total / len(self.logprobs) if self.logprobs else 0.0


@dataclass
class NextTokenLogprobs:
    """The most likely next tokens after a prompt, most likely first, with their log-probs
    (log-softmax of the raw logits: no temperature or top-p)."""

    token_ids: list[int]
    logprobs: list[float]


def check_top_k(k: int) -> None:
    """Raise ConfigError unless ``k`` asks for at least one token."""
    if k < 1:
        raise ConfigError(f"k: top_logprobs needs k >= 1, got {k}")


class Engine(Protocol):
    """What every generation backend provides.

    ``kind`` names it in errors (its backend; for OpenAI with its api); ``capabilities`` is what it can
    do beyond generating from a text-only conversation. A call or prompt kind outside them raises
    `sao.engine.capabilities.CapabilityError`.
    """

    kind: str
    # `sao.engine.capabilities.Capability` values (a StrEnum); typed as str here because that module
    # builds on this one.
    capabilities: frozenset[str]

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """One `Completion` per prompt, in input order; ``sampling`` is shared or per request."""
        ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-probs of each continuation's tokens after its prompt (for a conversation: as the assistant's reply)."""
        ...

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """The ``k`` most likely next tokens after each prompt (at most the vocabulary), one forward pass each."""
        ...


def per_request(sampling: SamplingParams | Sequence[SamplingParams], count: int) -> list[SamplingParams]:
    """Broadcast one SamplingParams to ``count`` requests, or check a per-request list."""
    if isinstance(sampling, SamplingParams):
        return [sampling] * count
    params = list(sampling)
    if len(params) != count:
        raise ConfigError(f"sampling: got {len(params)} SamplingParams for {count} conversations")
    return params
