"""A scripted toy language model and self-evaluator for RAIN's unit tests: no weights, every number known.

The toy answers one question in one of two ways. Its likelier answer is harmful ("Sure here is how.") and
its less likely one harmless ("Sorry, I can't help."); off either script it ends at once. Its evaluator
reads the conversation in the evaluation prompt and prefers the option that matches ``judge(dialogue)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from sao.engine.capabilities import Capability
from sao.engine.types import (
    Completion,
    NextTokenLogprobs,
    Sample,
    SamplingParams,
    TokenLogprobs,
    per_request,
    sample_seed,
)

EOS = 0
VOCAB = ["<eos>", "Sure", " here", " is", " how", ".", "Sorry", ",", " I", " can't", " help", "!"]
HARMFUL = [1, 2, 3, 4, 5]
HARMLESS = [6, 7, 8, 9, 10, 5]
PROMPT = (11,)  # the question: one token, "!" for want of a better word


class ToyTokenizer:
    eos_token_id = EOS

    def __len__(self) -> int:
        return len(VOCAB)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i == EOS))


def next_distribution(answer: Sequence[int]) -> dict[int, float]:
    """The toy's next-token probabilities after ``answer`` (the tokens after the prompt)."""
    answer = list(answer)
    if not answer:
        return {HARMFUL[0]: 0.6, HARMLESS[0]: 0.35, EOS: 0.05}
    for script in (HARMFUL, HARMLESS):
        if answer == script[: len(answer)]:
            if len(answer) == len(script):
                return {EOS: 1.0}
            return {script[len(answer)]: 0.9, 11: 0.05, EOS: 0.05}
    return {EOS: 1.0}


def harmful(dialogue: str) -> bool:
    return "Sure" in dialogue


class ToyEngine:
    """The toy behind the `Engine` interface, with the capabilities RAIN needs; it records what it judged."""

    kind = "toy"
    capabilities = frozenset({Capability.TOP_LOGPROBS, Capability.TOKEN_PROMPTS, Capability.SCORE})

    def __init__(self, judge: Callable[[str], bool | None] = lambda d: not harmful(d)):
        self.tokenizer = ToyTokenizer()
        self.eos_ids = {EOS}
        # judge(dialogue): True for a good reply, False for a bad one, None: always answer "A".
        self.judge = judge
        self.judged: list[str] = []
        self.calls = {"generate": 0, "top_logprobs": 0, "score": 0}

    def _answer(self, ids: Sequence[int]) -> list[int]:
        return list(ids)[len(PROMPT) :]

    def generate(self, prompts: Sequence, sampling: SamplingParams | Sequence[SamplingParams]) -> list[Completion]:
        self.calls["generate"] += 1
        out = []
        for prompt, params in zip(prompts, per_request(sampling, len(prompts))):
            samples = []
            for j in range(params.n):
                seed = sample_seed(params, j)
                rng = random.Random(seed)
                answer, tokens, logprobs, eos = self._answer(prompt.token_ids), [], [], None
                while len(tokens) < params.max_new_tokens:
                    dist = next_distribution(answer + tokens)
                    ranked = sorted(dist.items(), key=lambda kv: -kv[1])
                    if params.top_k:
                        ranked = ranked[: params.top_k]
                    if params.greedy:
                        token = ranked[0][0]
                    else:
                        total = sum(p for _, p in ranked)
                        token = rng.choices([t for t, _ in ranked], [p / total for _, p in ranked])[0]
                    if token == EOS:
                        eos = EOS
                        break
                    tokens.append(token)
                    logprobs.append(math.log(dist[token]))
                    text = self.tokenizer.decode(tokens)
                    if any(s in text for s in params.stop):
                        break
                finish = "stop" if eos is not None or len(tokens) < params.max_new_tokens else "length"
                text = self.tokenizer.decode(tokens)
                samples.append(Sample(text, tokens, finish, seed, eos, logprobs=logprobs if params.logprobs else None))
            out.append(Completion(samples))
        return out

    def top_logprobs(self, prompts: Sequence, k: int) -> list[NextTokenLogprobs]:
        self.calls["top_logprobs"] += 1
        out = []
        for prompt in prompts:
            ranked = sorted(next_distribution(self._answer(prompt.token_ids)).items(), key=lambda kv: -kv[1])[:k]
            out.append(NextTokenLogprobs([t for t, _ in ranked], [math.log(p) for _, p in ranked]))
        return out

    def score(self, prompts: Sequence, continuations: Sequence) -> list[TokenLogprobs]:
        """The evaluator: the last block of the evaluation prompt holds the conversation and the options."""
        self.calls["score"] += 1
        out = []
        for prompt, letter in zip(prompts, continuations):
            block = prompt[0]["content"].rsplit("\n\n", 1)[-1]
            dialogue, options = block.split("\nOptions:\n")
            self.judged.append(dialogue)
            verdict = self.judge(dialogue)
            if verdict is None:
                favoured = "A"
            else:
                good_first = "(A) The assistant's reply is harmless." in options
                favoured = "A" if verdict == good_first else "B"
            out.append(TokenLogprobs([0], [-0.1 if letter == favoured else -3.0]))
        return out


class ToyEmbedder:
    """Bag-of-characters vectors, unit norm: alike texts are alike, different ones are not."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for ch in text:
                vectors[row, ord(ch) % 64] += 1
            norm = np.linalg.norm(vectors[row])
            vectors[row] = vectors[row] / norm if norm else vectors[row]
        return vectors
