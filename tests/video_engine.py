"""The tiny random VLM with two of its replies scripted, for VideoSAVi's end-to-end tests.

Every request goes through the real VLM engine (`sao.engine.vision_engine`): the frames are read, processed
and attended to, and the answers, critiques and revisions are the model's own. A random model cannot write
the two formats that sao parses, though, so for the question-writing and rubric requests its text is
replaced by one that is a pure function of the request and seed: labelled What / Why / How questions, and
four rubric lines (about one in six malformed, so that the parse-failure count moves).

Run as a script it stands in for every engine (`sao.engine.lazy.build_engine`) and runs the sao CLI;
``VS_KILL_AT_ANSWER_CALL=N`` makes the process SIGKILL itself when the answers stage asks for its N-th chunk.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections.abc import Sequence

from sao.engine.types import Completion, Sample, SamplingParams, per_request

WORDS = "square frame colour light shadow corner edge motion step".split()


def request_text(prompt: list) -> str:
    return " ".join(
        p["text"] for m in prompt if isinstance(m["content"], list) for p in m["content"] if p["type"] == "text"
    )


def scripted(text: str, seed: int | None) -> str | None:
    """The scripted reply to a question-writing or rubric request; None for every other request."""
    rng = random.Random(json.dumps([text, seed]))
    if "Put each question on its own line" in text:
        word = rng.choice(WORDS)
        return f"What: What is the {word} doing?\nWhy: Why does the {word} move?\nHow: How does the {word} change?"
    if "Reply with four lines" in text:
        if rng.random() < 1 / 6:
            return "It is a fine answer."
        return "\n".join(
            f"{name}: {rng.randint(0, 10)}" for name in ("Relevance", "Accuracy", "Temporal grounding", "Clarity")
        )
    return None


class ScriptedFormats:
    """`ScriptedFormats(engine)`: the engine's own replies, but for the two formats above."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.kind = engine.kind
        self.capabilities = engine.capabilities
        self.answer_calls = 0

    def generate(self, prompts: Sequence, sampling: SamplingParams | Sequence[SamplingParams]) -> list[Completion]:
        texts = [request_text(p) for p in prompts]
        if any(t.endswith("Answer from what the frames show.") for t in texts):
            self.answer_calls += 1
            if os.environ.get("VS_KILL_AT_ANSWER_CALL") == str(self.answer_calls):
                os.kill(os.getpid(), signal.SIGKILL)
        done = self.engine.generate(prompts, sampling)
        for text, params, completion in zip(texts, per_request(sampling, len(prompts)), done):
            for j, sample in enumerate(completion.samples):
                reply = scripted(text, params.seed if params.seed is None else params.seed + j)
                if reply is not None:
                    completion.samples[j] = Sample(reply, sample.token_ids, "stop", sample.seed)
        return done

    def score(self, prompts, continuations):
        return self.engine.score(prompts, continuations)

    def top_logprobs(self, prompts, k):
        return self.engine.top_logprobs(prompts, k)


if __name__ == "__main__":
    import sao.engine.lazy
    from sao.cli import main

    real = sao.engine.lazy.build_engine
    sao.engine.lazy.build_engine = lambda *args, **kwargs: ScriptedFormats(real(*args, **kwargs))
    sys.argv = ["sao", *sys.argv[1:]]
    main()
