"""An engine that writes what each SELF-ALIGN prompt asks for, as a pure function of the prompt and seed: no
model. Topic lists, questions, tasks, principle-driven answers (about one in five malformed, so that the
drop rules fire) and verbose answers, each recognised by how its prompt ends.

Run as a script it stands in for every engine (`sao.engine.lazy.build_engine`) and runs the sao CLI, for
tests that kill a real process: ``SA_KILL_AT_ANSWER_CALL=N`` makes the process SIGKILL itself when the
answers stage asks for its N-th chunk.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
from collections.abc import Sequence

from sao.engine.types import Completion, RawPrompt, Sample, SamplingParams, TokenLogprobs, per_request, sample_seed

WORDS = "river stone lamp garden engine letter market winter bridge pencil harbor orchard signal ladder".split()


def _rng(*parts: object) -> random.Random:
    return random.Random(json.dumps(parts, sort_keys=True, default=str))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def is_answer_prompt(text: str) -> bool:
    """A principle-driven answer prompt: it ends in the thoughts, after the default identity sentence."""
    return "(internal thoughts)" in text and text.endswith("harmless.")


def reply(text: str, rng: random.Random) -> str:
    """What the prompt ``text`` asks for."""
    if is_answer_prompt(text):
        roll = rng.random()
        answer = (_words(rng, 40) + ". ").capitalize() * 2
        if roll < 0.1:
            return " The user asks something, and that is all."  # no answer turn
        if roll < 0.2:
            return f" The user asks about {_words(rng, 2)}.\n\n### Sage\nToo short."
        return f" The user asks about {_words(rng, 2)}. Rule 2 (informative) applies.\n\n### Sage\n{answer}\n"
    if text.endswith("Question:"):
        return f" Why does the {_words(rng, 3)} happen in {rng.randint(1000, 9999)}?"
    if text.endswith(".") and "Topics for hard questions" in text:
        first = int(re.search(r"(\d+)\.$", text).group(1))
        return "".join(f"{'' if i == 0 else f'{first + i}.'} {_words(rng, 2).title()}\n" for i in range(4))
    if "Varied tasks" in text:
        return f" Write a short note about the {_words(rng, 4)}."
    return (_words(rng, 60) + ". ").capitalize() * 2  # verbose cloning


class FormatEngine:
    kind = "transformers"
    capabilities = frozenset({"score", "raw_prompts", "logit_bias", "ngram_penalty", "token_prompts", "top_logprobs"})

    def __init__(self) -> None:
        self.answer_calls = 0

    def generate(self, prompts: Sequence, sampling: SamplingParams | Sequence[SamplingParams]) -> list[Completion]:
        if any(isinstance(p, RawPrompt) and is_answer_prompt(p.text) for p in prompts):
            self.answer_calls += 1
            if os.environ.get("SA_KILL_AT_ANSWER_CALL") == str(self.answer_calls):
                os.kill(os.getpid(), signal.SIGKILL)
        out = []
        for prompt, params in zip(prompts, per_request(sampling, len(prompts))):
            text = prompt.text if isinstance(prompt, RawPrompt) else json.dumps(prompt)
            samples = []
            for j in range(params.n):
                seed = sample_seed(params, j)
                body = reply(text, _rng(text, seed))
                samples.append(Sample(body, list(range(len(body.split()))), "stop", seed))
            out.append(Completion(samples))
        return out

    def score(self, prompts: Sequence, continuations: Sequence[str]) -> list[TokenLogprobs]:
        return [TokenLogprobs(list(range(len(c.split()))), [-1.0] * len(c.split())) for c in continuations]


if __name__ == "__main__":
    import sao.engine.lazy
    from sao.cli import main

    engine = FormatEngine()
    sao.engine.lazy.build_engine = lambda *args, **kwargs: engine
    sys.argv = ["sao", *sys.argv[1:]]
    main()
