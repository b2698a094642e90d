"""Prefill a batch once for the prefix all its rows share, and keep recent prefixes' KV for later calls.

RAIN's self-evaluation scores hundreds of prompts that open with the same instructions and worked examples,
and its searches ask again and again about one committed prefix. Recomputing those tokens for every row
and every call is most of RAIN's cost. `PrefixCache.prefill` runs the batch's longest common prefix once,
at batch size 1, repeats its KV across the rows, and runs only the rows' own suffixes on top. It keeps the
KV of the last few prefixes it ran: a later batch whose prefix starts the same way crops the closest one
(`DynamicCache.crop`) and computes only the rest.

The suffixes are left-padded after the prefix (padding in the middle of each row, masked out), so each row
still ends at the last column and its positions count its real tokens only, as `left_pad` gives them. The
log-probs match a full recompute to float rounding (the tests hold them to 1e-4).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from sao.engine.batching import left_pad

# Below this many shared tokens a separate batch-1 pass costs more than it saves.
MIN_SHARED = 32


@dataclass
class Prefilled:
    """A batch's forward pass: the logits of its last positions and the input ids they follow."""

    logits: torch.Tensor  # [B, logits_to_keep, V]
    ids: torch.Tensor  # [B, width]: the rows after the shared prefix, left-padded
    shared: int  # tokens run once for all rows (0: the plain left-padded pass)
    reused: int  # of those, tokens whose KV came from an earlier call


def cached_forward(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, keep: int
) -> torch.Tensor:
    """Logits [B, keep, V] of the last ``keep`` positions of ``ids`` run on top of ``cache``, which grows."""
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep,
    ).logits


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
    return length


def shareable_length(rows: Sequence[Sequence[int]], keep_last: Sequence[int], min_shared: int = MIN_SHARED) -> int:
    """How many leading tokens ``rows`` can share: their common prefix, less the trailing ``keep_last[r]`` tokens
    of each row whose logits are wanted (at least one); 0 when that leaves fewer than ``min_shared``."""
    if not rows:
        return 0
    shared = min(common_prefix_length(rows), *(len(r) - max(k, 1) for r, k in zip(rows, keep_last)))
    return shared if shared >= min_shared else 0


class PrefixCache:
    """A model's recent prefix KV caches, ``capacity`` of them, least recently used dropped first.

    ``capacity`` 0 turns sharing off: every batch is one left-padded pass, as before.
    """

    def __init__(self, model: Any, pad_id: int, capacity: int = 4, min_shared: int = MIN_SHARED):
        self.model = model
        self.pad_id = pad_id
        self.capacity = capacity
        self.min_shared = min_shared
        self._kept: OrderedDict[tuple[int, ...], DynamicCache] = OrderedDict()

    def clear(self) -> None:
        self._kept.clear()

    def _prefix_cache(self, prefix: tuple[int, ...]) -> tuple[DynamicCache, int]:
        """A batch-1 cache holding ``prefix``, and how many of its tokens came from a kept cache."""
        best, best_len = None, 0
        for key in self._kept:
            n = common_prefix_length([key, prefix])
            if n > best_len:
                best, best_len = key, n
        if best is not None and best_len >= self.min_shared:
            self._kept.move_to_end(best)
            cache = copy.deepcopy(self._kept[best])
            if len(best) > best_len:  # a negative count removes tokens in every transformers 5 release
                cache.crop(best_len - len(best))
        else:
            cache, best_len = DynamicCache(config=self.model.config), 0
        if best_len < len(prefix):
            rest = torch.as_tensor([prefix[best_len:]], device=self.model.device)
            positions = torch.arange(best_len, len(prefix), device=self.model.device)[None]
            mask = torch.ones((1, len(prefix)), dtype=torch.long, device=self.model.device)
            cached_forward(self.model, rest, mask, positions, cache, 1)
        if prefix not in self._kept:
            self._kept[prefix] = copy.deepcopy(cache)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
        return cache, best_len

    def prefill(self, rows: Sequence[Sequence[int]], logits_to_keep: int, keep_last: Sequence[int]) -> Prefilled:
        """Run ``rows`` and return the logits of their last ``logits_to_keep`` positions.

        ``keep_last[r]``: how many of row r's trailing tokens must stay out of the shared prefix, because their
        logits are wanted (every row keeps at least one). Rows of one batch must all want the same kind of
        output.
        """
        device = self.model.device
        shared = shareable_length(rows, keep_last, self.min_shared) if self.capacity > 0 else 0
        if not shared:
            ids, mask, positions = left_pad(rows, self.pad_id, device)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=logits_to_keep)
            return Prefilled(out.logits, ids, 0, 0)
        cache, reused = self._prefix_cache(tuple(rows[0][:shared]))
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
        ids, suffix_mask, positions = left_pad([r[shared:] for r in rows], self.pad_id, device)
        mask = torch.cat([suffix_mask.new_ones((len(rows), shared)), suffix_mask], dim=1)
        logits = cached_forward(self.model, ids, mask, positions + shared, cache, logits_to_keep)
        return Prefilled(logits, ids, shared, reused)
