"""What each engine can do beyond generating from a text conversation, known before any model loads.

The methods built on the engines need more than that: RAIN the next-token distribution after a
prefix given by token ids, SELF-ALIGN raw-text prompts for base models without a chat template,
VideoSAVi messages with images and video frames, the log-prob judge and SAR the log-probs of a
continuation. A run checks its methods' needs against its engine with `require_capabilities`
before it loads a model, so a recipe that cannot work fails at once with one line, not hours in;
an engine asked for something it lacks raises the same `CapabilityError` (`check_call` for prompt kinds,
`check_sampling` for sampling controls such as SELF-ALIGN's logit bias).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from sao.engine.types import Continuation, Prompt, RawPrompt, SamplingParams, TokenPrompt
from sao.errors import ConfigError

if TYPE_CHECKING:
    from sao.engine.config import EngineSection
    from sao.engine.types import Engine


class Capability(StrEnum):
    """What an engine can do beyond generating from a text conversation; methods name these values."""

    SCORE = "score"
    TOP_LOGPROBS = "top_logprobs"
    TOKEN_PROMPTS = "token_prompts"
    RAW_PROMPTS = "raw_prompts"
    MULTIMODAL = "multimodal"
    LOGIT_BIAS = "logit_bias"
    NGRAM_PENALTY = "ngram_penalty"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS = {
    Capability.SCORE: "log-probs of a given continuation",
    Capability.TOP_LOGPROBS: "the k most likely next tokens with their log-probs",
    Capability.TOKEN_PROMPTS: "prompts and continuations given as token ids, read as they are",
    Capability.RAW_PROMPTS: "text prompts read without a chat template",
    Capability.MULTIMODAL: "message content made of parts: text, images, video frames",
    Capability.LOGIT_BIAS: "a bias on the logits of tokens named by text",
    Capability.NGRAM_PENALTY: "frequency and presence penalties over n-grams, n > 1",
}


class CapabilityError(ConfigError):
    """An engine was asked for something it cannot do; the one line names the engine, the capability and who
    needs it."""


# Every prompt kind becomes token ids for a forward pass the engine runs itself, and its own decode loop
# adjusts the logits (`sao.engine.logit_controls`).
IN_PROCESS = frozenset(
    {
        Capability.SCORE,
        Capability.TOP_LOGPROBS,
        Capability.TOKEN_PROMPTS,
        Capability.RAW_PROMPTS,
        Capability.LOGIT_BIAS,
        Capability.NGRAM_PENALTY,
    }
)

# What each engine kind (`engine_kind`) can do; the engine classes declare theirs from here, so that
# `require_capabilities` needs neither a model nor vllm, ray or openai. The transformers backend takes message
# parts when the model is a vision-language model (`sao.engine.vision_engine`, which has `score` and
# `multimodal`); its text engine has the rest and refuses parts at the call, naming the capability.
CAPABILITIES: dict[str, frozenset[Capability]] = {
    "transformers": IN_PROCESS | {Capability.MULTIMODAL},
    "llamacpp": IN_PROCESS,
    # vLLM is fed token ids (``prompt_token_ids``) whatever the prompt kind. Its top-k next tokens are one
    # greedy token's ``logprobs=k`` (checked against stand-ins of its outputs; no GPU test has run them yet).
    # Its logit_bias takes token ids, resolved with the engine's HF tokenizer; its penalties count single
    # tokens only.
    # Images and video frames go as ``multi_modal_data`` beside the rendered prompt (`sao.engine.vllm_engine`).
    "vllm": frozenset(
        {
            Capability.MULTIMODAL,
            Capability.SCORE,
            Capability.TOP_LOGPROBS,
            Capability.TOKEN_PROMPTS,
            Capability.RAW_PROMPTS,
            Capability.LOGIT_BIAS,
        }
    ),
    # The prompt is rendered here and scored from echoed prompt log-probs (a server that echoes none makes
    # `score` raise LogprobsUnavailable when called). A server that refuses token ids gets their text, so
    # token ids are not promised to arrive as they are; nor is a raw text's BOS. The local tokenizer is the
    # served model's (the ids sent as the prompt rest on that too), so logit_bias ids come from it.
    "openai (api: completions)": frozenset({Capability.SCORE, Capability.LOGIT_BIAS}),
    # The server applies its own template to the messages, and chat completions echo no prompt log-probs;
    # there is no tokenizer here to name logit_bias ids with.
    "openai (api: chat)": frozenset(),
}


# A vision-language model's in-process engine (`sao.engine.vision_engine`): message parts and scoring.
VISION = frozenset({Capability.SCORE, Capability.MULTIMODAL})


def model_capabilities(model: str, settings: EngineSection) -> frozenset[Capability]:
    """What the engine ``settings`` build on ``model`` can do: `backend_capabilities`, narrowed for the
    transformers backend by the model's kind (its config.json, read without loading it): a text model's engine
    or a VLM's (`VISION`)."""
    if engine_kind(settings) != "transformers":
        return backend_capabilities(settings)
    from sao.models import is_vision_model

    return VISION if is_vision_model(model) else IN_PROCESS


def openai_kind(api: str) -> str:
    """The OpenAI engine's kind: its two apis can do different things."""
    return f"openai (api: {api})"


def engine_kind(settings: EngineSection) -> str:
    """The kind of engine ``settings`` build, as `CAPABILITIES` and errors name it: the backend (on Ray
    too, where every actor runs it), and for OpenAI its api."""
    return openai_kind(settings.openai.api) if settings.backend == "openai" else settings.backend


def backend_capabilities(settings: EngineSection) -> frozenset[Capability]:
    """What the engine ``settings`` build can do, read from the settings alone: no model, no backend import."""
    return CAPABILITIES[engine_kind(settings)]


def missing(kind: str, capability: Capability, who: str) -> CapabilityError:
    """The error for an engine of ``kind`` that lacks ``capability``, which ``who`` needs."""
    return CapabilityError(
        f"engine backend '{kind}' lacks {capability.value} ({capability.description}), which {who} needs"
    )


def require(kind: str, have: frozenset[Capability], needed: Iterable[Capability | str], who: str) -> None:
    """Raise `CapabilityError` for the first of ``needed`` (in `Capability` order) outside ``have``.

    Names are checked: one that is no `Capability` (a typo in a method's declaration) raises ValueError.
    """
    wanted = {Capability(c) for c in needed}
    for capability in Capability:
        if capability in wanted and capability not in have:
            raise missing(kind, capability, who)


def require_capabilities(settings: EngineSection, needed: Iterable[Capability | str], who: str) -> None:
    """Raise `CapabilityError` unless the engine ``settings`` build has every capability in ``needed``.

    ``who`` says who needs them, e.g. "method 'rain' (stage 'decode')". Nothing is loaded or imported.
    """
    require(engine_kind(settings), backend_capabilities(settings), needed, who)


def prompt_needs(prompt: Prompt) -> Capability | None:
    """The capability a prompt's kind needs; None for a text-only conversation, which every engine takes."""
    if isinstance(prompt, TokenPrompt):
        return Capability.TOKEN_PROMPTS
    if isinstance(prompt, RawPrompt):
        return Capability.RAW_PROMPTS
    if any(isinstance(message, dict) and isinstance(message.get("content"), list) for message in prompt):
        return Capability.MULTIMODAL
    return None


def check_call(
    engine: Engine, call: str, prompts: Sequence[Prompt], continuations: Sequence[Continuation] = ()
) -> None:
    """Raise `CapabilityError` for the first prompt or continuation of a kind ``engine`` lacks, before
    anything reaches its tokenizer or model."""
    for i, prompt in enumerate(prompts):
        needed = prompt_needs(prompt)
        if needed is not None:
            require(engine.kind, engine.capabilities, [needed], f"prompt {i} of a {call} call")
    for i, continuation in enumerate(continuations):
        if not isinstance(continuation, str):
            require(engine.kind, engine.capabilities, [Capability.TOKEN_PROMPTS], f"continuation {i} of a {call} call")


def sampling_needs(params: SamplingParams) -> set[Capability]:
    """The capabilities a request's sampling controls need; empty for plain sampling and for n = 1
    frequency and presence penalties, which every engine has.

    ``penalty_ngram > 1`` needs ``ngram_penalty`` even with both penalties zero: a recipe that names an
    n-gram penalty is refused on an engine that could never apply it, whatever its penalties are set to.
    """
    needs = set()
    if params.logit_bias:
        needs.add(Capability.LOGIT_BIAS)
    if params.penalty_ngram > 1:
        needs.add(Capability.NGRAM_PENALTY)
    return needs


def check_sampling(engine: Engine, params: Sequence[SamplingParams], call: str) -> None:
    """Raise `CapabilityError` for the first request whose sampling controls ``engine`` lacks (`sampling_needs`),
    before any prompt is tokenized or sent."""
    for i, request in enumerate(params):
        needed = sampling_needs(request)
        if needed:
            require(engine.kind, engine.capabilities, needed, f"the sampling of request {i} of a {call} call")
