"""Every prompt kind (`sao.engine.types.Prompt`) as the token ids a model reads, with its HF tokenizer.

The engines that tokenize here (transformers, llama.cpp, vLLM) thereby agree on every kind: a
conversation goes through the chat template exactly as before (`encode_prompt`), a `RawPrompt` is
tokenized as a document, a `TokenPrompt` is taken as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sao.engine.chat_template import encode_prompt
from sao.engine.types import Continuation, Prompt, RawPrompt, TokenPrompt
from sao.errors import InputError


def _checked_ids(ids: Sequence[int], vocabulary: int, where: str) -> list[int]:
    # An id outside the vocabulary would fail deep in an embedding lookup, or in C for llama.cpp.
    bad = next((t for t in ids if not 0 <= t < vocabulary), None)
    if bad is not None:
        raise InputError(f"{where}: token id {bad} is outside the vocabulary (0..{vocabulary - 1})")
    return list(ids)


def prompt_ids(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """The token ids of each prompt. Raises InputError for a prompt with no tokens (there is nothing to
    condition the next token on) or with an id outside the tokenizer's vocabulary."""
    vocabulary = len(tokenizer)
    encoded = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, TokenPrompt):
            ids = _checked_ids(prompt.token_ids, vocabulary, f"prompt {i}")
        elif isinstance(prompt, RawPrompt):
            ids = tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"]
        else:
            ids = encode_prompt(tokenizer, prompt)
        if not ids:
            raise InputError(f"prompt {i}: it has no tokens")
        encoded.append(ids)
    return encoded


def continuation_ids(tokenizer: Any, continuations: Sequence[Continuation]) -> list[list[int]]:
    """The token ids of each continuation: text tokenized on its own with no special tokens (as a trainer
    tokenizes a completion after its prompt), token ids as they are."""
    vocabulary = len(tokenizer)
    return [
        tokenizer(c, add_special_tokens=False)["input_ids"]
        if isinstance(c, str)
        else _checked_ids([int(t) for t in c], vocabulary, f"continuation {i}")
        for i, c in enumerate(continuations)
    ]
