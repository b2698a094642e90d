"""The backend-neutral engine interface, in the spirit of vLLM's ``LLM.generate`` + ``SamplingParams``.

Every backend (transformers in-process, llama.cpp, vLLM, OpenAI-compatible HTTP, and Ray actors
running any of them) implements `Engine`: ``generate`` for sampling, ``score`` for the log-probs of
a given continuation and ``top_logprobs`` for the next-token distribution, each over prompts of
three kinds (`Prompt`). What a backend can do of this is its `sao.engine.capabilities.Capability`
set; asked for more, it raises `sao.engine.capabilities.CapabilityError`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import secrets
from collections.abc import Iterable, Mapping, Sequence
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


LogitBias = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request. ``temperature == 0`` means greedy decoding.

    Sampling fields: ``n`` samples per request; ``temperature`` (0: greedy); ``top_k``, the k most likely
    tokens kept (0: all); ``top_p``, the nucleus kept of those; ``max_new_tokens``, the budget; ``stop``,
    strings that end a sample (cut from its text, kept in its ``token_ids``). They apply in the order of
    HF and vLLM: temperature, then top-k, then top-p (renormalised over the top k). Greedy rows ignore
    ``top_k`` and ``top_p``; ``top_k=1`` samples the most likely token, as greedy decoding does.

    ``logprobs``: each `Sample` carries ``logprobs``, the log-prob of each of its ``token_ids`` in the model's
    distribution at that step: the float32 log-softmax of the logits after the logit controls below but
    before temperature, top-k and top-p (vLLM's raw log-probs). Needs an engine that reports them.

    ``seed`` makes a request reproducible on its own, whatever else shares its batch; sample
    ``j`` of ``n`` uses `derive_seed(seed, j)`. With no seed, a fresh one is drawn and
    reported on each `Sample`, so any output can still be reproduced.

    Logit controls, as SELF-ALIGN's decoding uses them (Sun et al. 2023, Dromedary: a -100 bias on "Sorry"
    keeps the model from opening with a refusal; an n-gram frequency penalty against repeating itself).
    They change the logits at every decoding step, greedy rows included, before temperature, top-k and top-p:

    - ``logit_bias``: (text, bias) pairs; a dict is taken too. Each text becomes token ids with the
      engine's own tokenizer: the bias is added to the FIRST token of the text as written and of the text
      with a leading space (" Sorry" and "Sorry" are different tokens in a BPE vocabulary), whichever way
      round it is given. An id named by two texts gets the bias of the largest magnitude (see
      `sao.engine.logit_controls.bias_ids`). Kept as a sorted tuple of pairs so the params stay hashable.
      Needs the ``logit_bias`` capability.
    - ``frequency_penalty``, ``presence_penalty``: OpenAI's penalties over the tokens GENERATED so far in
      this sequence (not the prompt): ``logit[t] -= frequency_penalty * count(t) + presence_penalty *
      (count(t) > 0)``. Negative values reward repeats instead.
    - ``penalty_ngram``: n of the n-gram the penalties count. With n > 1, count(t) is how often the n-gram
      (the last n-1 generated tokens, then t) already occurs among the generated tokens; until n-1 tokens
      exist nothing is penalised. n > 1 needs the ``ngram_penalty`` capability.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logit_bias: LogitBias = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_ngram: int = 1
    top_k: int = 0
    logprobs: bool = False

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
        object.__setattr__(self, "logit_bias", normalise_logit_bias(self.logit_bias))
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not is_finite_number(value):
                raise ConfigError(f"{name}: must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        ngram = self.penalty_ngram
        if isinstance(ngram, bool) or not isinstance(ngram, numbers.Integral) or ngram < 1:
            raise ConfigError(f"penalty_ngram: must be an integer >= 1, got {ngram!r}")
        object.__setattr__(self, "penalty_ngram", int(ngram))
        top_k = self.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0:
            raise ConfigError(f"top_k: must be an integer >= 0 (0: no limit), got {top_k!r}")
        object.__setattr__(self, "top_k", int(top_k))
        if not isinstance(self.logprobs, bool):
            raise ConfigError(f"logprobs: must be true or false, got {self.logprobs!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalised(self) -> bool:
        """Whether a frequency or presence penalty applies (either is non-zero)."""
        return self.frequency_penalty != 0 or self.presence_penalty != 0


def is_finite_number(value: object) -> bool:
    """A real number that is neither inf nor nan; a bool is not taken for one (True is no penalty)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def normalise_logit_bias(logit_bias: Mapping[str, float] | Iterable[tuple[str, float]]) -> LogitBias:
    """``logit_bias`` as a sorted tuple of (text, float) pairs; raises ConfigError naming the field for an
    empty text or a bias that is not a finite number.

    Sorted, so that the same biases given in another order (or as a dict) make equal, equally hashed params.
    """
    pairs = logit_bias.items() if isinstance(logit_bias, Mapping) else logit_bias
    normalised = []
    for pair in pairs:
        try:
            text, bias = pair
        except (TypeError, ValueError):
            raise ConfigError(f"logit_bias: expected (text, bias) pairs or a dict, got {pair!r}") from None
        if not isinstance(text, str) or not text:
            raise ConfigError(f"logit_bias: texts must be non-empty strings, got {text!r}")
        if not is_finite_number(bias):
            raise ConfigError(f"logit_bias: the bias of {text!r} must be a finite number, got {bias!r}")
        normalised.append((text, float(bias)))
    return tuple(sorted(normalised))


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
    # The end-of-sequence token that stopped it, not in ``token_ids`` (None: a stop string, the budget, or an
    # engine that does not report it). GRPO's rollouts train on it, as the model emitted it.
    eos_token_id: int | None = None
    # With `SamplingParams.logprobs`: the log-prob of each of ``token_ids`` (so none for the EOS above), in the
    # model's distribution after the logit controls, before temperature, top-k and top-p. None when not asked.
    logprobs: list[float] | None = None

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
