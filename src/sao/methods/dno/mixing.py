"""Mixing earlier iterations' pairs into iteration t's training data, under DNO's caps."""

from __future__ import annotations

import random
from typing import Any


def mix_caps(own: int, earlier: int, previous_share: float) -> list[int]:
    """The most pairs each earlier iteration may add, nearest first: ``previous_share`` of ``own`` from t-1,
    half that from t-2, and so on (paper: 30%, 15%, ...)."""
    return [int(own * previous_share / 2**back) for back in range(earlier)]


def mix(own: list[dict[str, Any]], earlier: list[list[dict[str, Any]]], previous_share: float, seed: int) -> list[dict]:
    """``own`` followed by a seeded draw from each earlier iteration's pairs (``earlier`` oldest first), each
    draw capped by `mix_caps`. Earlier pairs are used as they were written, not regenerated."""
    caps = mix_caps(len(own), len(earlier), previous_share)
    out = list(own)
    for back, (cap, rows) in enumerate(zip(caps, reversed(earlier)), start=1):
        rng = random.Random(f"{seed}:{back}")
        out += rng.sample(rows, min(cap, len(rows)))
    return out
