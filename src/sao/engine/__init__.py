"""Generation engines behind one small interface: ``generate`` and ``score``."""

from sao.engine.types import (
    Completion,
    Conversation,
    Engine,
    Message,
    Sample,
    SamplingParams,
    TokenLogprobs,
    derive_seed,
)

__all__ = [
    "Completion",
    "Conversation",
    "Engine",
    "Message",
    "Sample",
    "SamplingParams",
    "TokenLogprobs",
    "derive_seed",
]
