"""Batch layout for decoder-only models: length-sorted buckets and left padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def length_buckets(lengths: Sequence[int], max_batch_size: int) -> list[list[int]]:
    """Group indices into batches of at most ``max_batch_size``, longest first.

    Sorting by length keeps padding (wasted compute) small; longest-first surfaces an
    out-of-memory error on the first batch rather than the last.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + max_batch_size] for i in range(0, len(order), max_batch_size)]


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token sequences so that every row ends at the last column.

    Returns ``input_ids``, ``attention_mask`` and ``position_ids``. Positions count real
    tokens only, so a padded row sees the same rotary positions as it would alone.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)
