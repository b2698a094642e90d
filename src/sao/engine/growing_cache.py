"""A decode cache that appends a step's keys and values in place instead of copying the whole cache.

transformers' `DynamicLayer` grows by ``torch.cat``: every decode step copies every layer's keys and
values to append one token. At batch 32 and a few hundred tokens that is ~200 MB copied per step for
SmolLM2-135M, over a quarter of the transformers engine's decode time on a CPU (profiled 2026-12-03).
`GrowingLayer` keeps each layer's tensors in a buffer with room to spare, writes new tokens into it
and hands attention a view of the filled part; the buffer doubles when full, so the copying is
amortised to a constant per token. It is still a dynamic cache: rows can leave the batch
(`batch_select_indices`), which a `StaticCache` cannot do.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Spare tokens a buffer starts with beyond what it is first given (it doubles when full).
SPARE = 256


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose ``keys`` and ``values`` are views of buffers with spare room along the sequence."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def _fits(self, add: int) -> bool:
        """Whether ``keys`` still is the filled head of the buffer (no other method replaced it) with room for
        ``add`` more tokens."""
        buffer = self._key_buffer
        return (
            buffer is not None
            and self.keys is not None
            and self.keys.data_ptr() == buffer.data_ptr()
            and self.keys.shape[0] == buffer.shape[0]
            and self.keys.shape[-2] + add <= buffer.shape[-2]
        )

    def _regrow(self, length: int) -> None:
        """New buffers holding the current keys and values, with room for at least ``length`` tokens."""
        keys, values = self.keys, self.values
        capacity = max(2 * length, length + SPARE)
        shape = (*keys.shape[:-2], capacity, keys.shape[-1])
        self._key_buffer = keys.new_empty(shape)
        self._value_buffer = values.new_empty((*values.shape[:-2], capacity, values.shape[-1]))
        filled = keys.shape[-2]
        self._key_buffer[..., :filled, :] = keys
        self._value_buffer[..., :filled, :] = values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.keys = key_states[..., :0, :]
            self.values = value_states[..., :0, :]
        filled, add = self.keys.shape[-2], key_states.shape[-2]
        if not self._fits(add):
            self._regrow(filled + add)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[..., filled : filled + add, :] = key_states
        self._value_buffer[..., filled : filled + add, :] = value_states
        self.keys = self._key_buffer[..., : filled + add, :]
        self.values = self._value_buffer[..., : filled + add, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices``, with the buffers' spare room (the next step then writes in place again)."""
        if self.get_seq_length() > 0 and self._fits(0):
            filled = self.keys.shape[-2]
            self._key_buffer = self._key_buffer[indices, ...]
            self._value_buffer = self._value_buffer[indices, ...]
            self.keys = self._key_buffer[..., :filled, :]
            self.values = self._value_buffer[..., :filled, :]
        else:
            super().batch_select_indices(indices)


def growing_cache(config: Any) -> DynamicCache:
    """A `DynamicCache` for ``config`` whose full-attention layers are `GrowingLayer`s (other kinds, such as
    sliding-window layers, stay as transformers makes them)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
