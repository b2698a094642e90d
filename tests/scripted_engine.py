"""An engine whose every output is a pure function of its input: no model, no floating-point kernels.

Rows made with it depend only on sao's pipeline logic (prompts built, seeds derived, rows
kept or dropped), never on the CPU or the torch build, so rows recorded on one machine can
be compared exactly on another. Used to check that a reshaping of the code leaves SAO's
stage rows as they were.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from sao.engine.types import Completion, Sample, SamplingParams, TokenLogprobs, per_request, sample_seed

WORDS = (
    "river stone lamp quiet garden engine letter market winter bridge pencil harbor orchard signal "
    "ladder candle meadow compass thunder velvet anchor basket canyon feather lantern mirror"
).split()


def _rng(*parts: object) -> random.Random:
    return random.Random(json.dumps(parts, sort_keys=True))


class ScriptedEngine:
    """Answers with seeded random words; ~10% of samples run out of tokens and ~5% are empty."""

    def __init__(self) -> None:
        self.calls = 0  # generate/score calls, so a test can see that a resumed run redid nothing

    def generate(self, conversations: Sequence, sampling: SamplingParams | Sequence[SamplingParams]) -> list:
        self.calls += 1
        out = []
        for conversation, params in zip(conversations, per_request(sampling, len(conversations))):
            samples = []
            for j in range(params.n):
                seed = sample_seed(params, j)
                rng = _rng(conversation, seed, params.temperature)
                roll = rng.random()
                words = [rng.choice(WORDS) for _ in range(rng.randint(4, 24))]
                text = "" if roll < 0.05 else " ".join(words).capitalize() + "."
                finish = "length" if 0.05 <= roll < 0.15 else "stop"
                samples.append(Sample(text=text, token_ids=list(range(len(words))), finish_reason=finish, seed=seed))
            out.append(Completion(samples))
        return out

    def score(self, conversations: Sequence, continuations: Sequence[str]) -> list[TokenLogprobs]:
        self.calls += 1
        out = []
        for conversation, continuation in zip(conversations, continuations):
            rng = _rng(conversation, continuation)
            tokens = continuation.split()
            out.append(TokenLogprobs(list(range(len(tokens))), [-3 * rng.random() for _ in tokens]))
        return out
