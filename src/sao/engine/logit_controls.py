"""The logit controls of `SamplingParams` (``logit_bias``, frequency and presence penalties over n-grams)
for the engines that run their own decode loop (transformers and llama.cpp).

Two pure functions do the work: `bias_ids` turns a request's (text, bias) pairs into {token id: bias}
with the engine's HF tokenizer, once per generate call (`logit_controls`), and `adjust_logits` applies
the biases and penalties to one step's logits [B, V], given each row's generated tokens. Rows without
controls cost nothing: a batch in which no row has any gets its logits back as they are, and the
engines skip the call altogether then, so the default path is as fast as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sao.engine.types import LogitBias, SamplingParams
from sao.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LogitControls:
    """One request's logit controls, its bias resolved to token ids (`bias_ids`)."""

    bias: tuple[tuple[int, float], ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_ngram: int = 1

    @property
    def penalised(self) -> bool:
        return self.frequency_penalty != 0 or self.presence_penalty != 0


def spellings(text: str) -> tuple[str, ...]:
    """The text as written and with a leading space, either way round it is given.

    BPE vocabularies have one token for "Sorry" at the start of a text or after a newline and another,
    " Sorry", after a space; a reply can open with either, so a bias meant for the word needs both.
    """
    bare = text[1:] if text.startswith(" ") and len(text) > 1 else text
    return (bare, " " + bare) if bare != " " else (bare,)


def first_token(tokenizer: Any, text: str) -> int | None:
    """The id of the first token of ``text`` (tokenized with no special tokens), None if it has none.

    A leading token that is whitespace alone is passed over, unless the text is only whitespace: a
    SentencePiece vocabulary may spell " Sorry" as a lone "▁" and then "▁Sorry", and a bias on the lone
    space would hit every word after a space rather than the word meant.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for token in ids:
        if tokenizer.decode([token]).strip():
            return int(token)
    return int(ids[0]) if ids else None


def stronger(a: float, b: float) -> float:
    """The bias of larger magnitude; on a tie the negative one, so that a ban is never undone by a boost."""
    return a if (abs(a), -a) >= (abs(b), -b) else b


def bias_ids(tokenizer: Any, logit_bias: LogitBias) -> dict[int, float]:
    """{token id: bias} for (text, bias) pairs: each bias goes to the first token (`first_token`) of its
    text as written and with a leading space (`spellings`).

    An id that two texts name (" Sorry" and "Sorry" are the same two ids) gets the bias of the larger
    magnitude (`stronger`), not their sum: naming a word twice does not make its bias twice as strong.
    Raises ConfigError naming ``logit_bias`` for a text the tokenizer turns into no tokens at all.
    """
    resolved: dict[int, float] = {}
    for text, bias in logit_bias:
        ids = {t for t in (first_token(tokenizer, s) for s in spellings(text)) if t is not None}
        if not ids:
            raise ConfigError(f"logit_bias: {text!r} has no tokens in the engine's tokenizer")
        for token in ids:
            resolved[token] = stronger(resolved[token], bias) if token in resolved else bias
    return resolved


def logit_controls(tokenizer: Any, params: SamplingParams) -> LogitControls | None:
    """The controls ``params`` ask for, their bias resolved with ``tokenizer``; None when they ask for none
    (no bias, both penalties zero), the common case that `adjust_logits` passes over."""
    if not params.logit_bias and not params.penalised:
        return None
    return LogitControls(
        tuple(sorted(bias_ids(tokenizer, params.logit_bias).items())),
        params.frequency_penalty,
        params.presence_penalty,
        params.penalty_ngram,
    )


def repeat_counts(generated: Sequence[int], n: int) -> Counter[int]:
    """count(t) for every token t the penalties hit: how often the n-gram (the last n-1 generated tokens,
    then t) already occurs in ``generated``. For n = 1 that is how often t itself occurs; with fewer than
    n-1 tokens there is no context yet, and nothing is counted."""
    if n == 1:
        return Counter(generated)
    if len(generated) < n - 1:
        return Counter()
    context = list(generated[len(generated) - (n - 1) :])
    return Counter(generated[i + n - 1] for i in range(len(generated) - n + 1) if generated[i : i + n - 1] == context)


def adjust_logits(logits: torch.Tensor, rows: Sequence[tuple[LogitControls | None, Sequence[int]]]) -> torch.Tensor:
    """``logits`` [B, V] with each row's controls applied: ``rows[i]`` is row i's controls (None: none)
    and the tokens it has generated so far.

    ``logit[t] += bias[t] - (frequency_penalty * count(t) + presence_penalty * (count(t) > 0))``, count as
    `repeat_counts` has it. All rows go in one ``index_put`` over the few (row, token) pairs they touch,
    not a [B, V] tensor of counts. A new tensor is returned; a batch with no controls gets ``logits``
    itself, untouched.
    """
    row_ids: list[int] = []
    token_ids: list[int] = []
    deltas: list[float] = []
    for row, (controls, generated) in enumerate(rows):
        if controls is None:
            continue
        for token, bias in controls.bias:
            row_ids.append(row)
            token_ids.append(token)
            deltas.append(bias)
        if controls.penalised:
            for token, count in repeat_counts(generated, controls.penalty_ngram).items():
                row_ids.append(row)
                token_ids.append(token)
                deltas.append(-(controls.frequency_penalty * count + controls.presence_penalty))
    if not row_ids:
        return logits
    import torch  # here, not at the top: the vLLM and OpenAI engines use `bias_ids` alone, without torch

    device = logits.device
    index = (torch.tensor(row_ids, device=device), torch.tensor(token_ids, device=device))
    # accumulate: a token both biased and penalised gets both.
    return logits.index_put(index, torch.tensor(deltas, dtype=logits.dtype, device=device), accumulate=True)
