"""Dealing a prompt set into a validation split and one disjoint split per iteration."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def deal(items: list[T], *, validation: int, per_iteration: int, iteration: int, seed: int) -> tuple[list[T], list[T]]:
    """(validation split, iteration ``iteration``'s split D_t) from a seeded shuffle of ``items``.

    The validation split comes first and is the same in every iteration; D_t is the t-th run of
    ``per_iteration`` items after it, so splits never overlap. A split past the end is empty.
    """
    order = list(items)
    random.Random(seed).shuffle(order)
    start = validation + (iteration - 1) * per_iteration
    return order[:validation], order[start : start + per_iteration]
