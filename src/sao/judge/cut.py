"""Answers cut to the judge's token budget before they go into a judge prompt (``judge.max_answer_tokens``).

A judge reads the whole prompt, so its cost grows with the answers' length. AlpacaEval-length answers
(often 400-800 tokens each, two per prompt) make a small CPU spend seconds on every verdict; the
opening of an answer usually decides a comparison, so a budget trades little accuracy for a lot of
time. Answers are counted and cut in the judge model's own tokens, and the cut is a prefix of the
original text (offsets from a fast tokenizer; a slow one decodes the kept tokens), so a cut answer
never ends in a broken character. Both answers of a pair get the same budget, so neither is favoured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sao.errors import ConfigError

Cut = Callable[[Sequence[str]], list[str]]


def cut_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Each of ``texts`` cut to its first ``max_tokens`` tokens (no special tokens); shorter ones unchanged."""
    if not texts:
        return []
    fast = getattr(tokenizer, "is_fast", False)
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=fast)
    out = []
    for i, (text, ids) in enumerate(zip(texts, encoded["input_ids"])):
        if len(ids) <= max_tokens:
            out.append(text)
        elif fast:
            out.append(text[: encoded["offset_mapping"][i][max_tokens - 1][1]])
        else:
            out.append(tokenizer.decode(ids[:max_tokens], skip_special_tokens=True))
    return out


def answer_cut(engine: Any, max_tokens: int | None) -> Cut:
    """A function that cuts answers to ``max_tokens`` tokens of ``engine``'s tokenizer (identity for None).

    Raises ConfigError when a budget is set and the engine has no tokenizer to count with (an OpenAI
    engine with ``api: chat`` and no local tokenizer).
    """
    if max_tokens is None:
        return list
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError(
            "judge.max_answer_tokens: the judge's engine has no tokenizer to count tokens with; "
            "use engine.openai.api 'completions' or leave max_answer_tokens unset"
        )
    return lambda texts: cut_texts(tokenizer, texts, max_tokens)
