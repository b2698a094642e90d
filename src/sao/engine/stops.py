"""Stop-string detection on streamed tokens, cheap enough to run every decode step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StopStrings:
    """Finds the first stop string in a row's generated text.

    Only a tail of tokens is decoded each step: a stop string of c characters spans at
    most c tokens, plus a few for a token that straddles its start.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        self.window = max((len(s) for s in self.stops), default=0) + 4

    def hit(self, token_ids: Sequence[int]) -> bool:
        """Whether the text of ``token_ids`` now contains a stop string."""
        if not self.stops:
            return False
        tail = self.tokenizer.decode(token_ids[-self.window :], skip_special_tokens=True)
        return any(s in tail for s in self.stops)

    def truncate(self, text: str) -> str:
        """Cut ``text`` at the earliest stop string (the stop string is not kept, as in vLLM)."""
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        return text if cut < 0 else text[:cut]
