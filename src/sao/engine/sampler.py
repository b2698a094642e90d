"""Next-token choice with per-row temperature, top-p and random generator.

Each row draws from its own ``torch.Generator``, so a seeded request gives the same
sample whatever else shares its batch (``model.generate`` has one global RNG, which
is why the engine runs its own decode loop).

A row takes one uniform number per step and inverts its cumulative distribution
(``searchsorted``). That keeps the per-row work to one RNG call: per-row
``torch.multinomial`` over a 49k vocabulary costs about as much as the model's forward
pass at batch 32 on a CPU. Top-p looks for the nucleus among the ``NUCLEUS_CANDIDATES``
most likely tokens (a ``topk``, 20x cheaper than a full sort) and falls back to a full
sort only for rows whose nucleus is larger than that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NUCLEUS_CANDIDATES = 256


def nucleus(sorted_probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of descending-sorted probabilities outside mass ``top_p`` ([R, 1]).

    The most likely token is always kept, even when its own probability exceeds top_p.
    """
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    return sorted_probs.masked_fill(mass_before >= top_p, 0.0)


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`nucleus` for probabilities in vocabulary order (a full sort)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    return torch.zeros_like(probs).scatter_(-1, order, nucleus(sorted_probs, top_p))


def inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Index drawn per row from unnormalised non-negative ``weights`` [R, K] with ``uniform`` [R, 1] in [0, 1)."""
    cdf = weights.cumsum(dim=-1)
    target = uniform * cdf[:, -1:]
    # right=True: the first index whose cdf exceeds the target, never a zero-weight entry.
    return torch.searchsorted(cdf, target, right=True).clamp(max=weights.shape[-1] - 1).squeeze(-1)


def choose_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: Sequence[torch.Generator | None],
) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V].

    Rows with no generator are greedy; the others sample from the temperature-scaled,
    top-p-filtered distribution with their own generator. ``temperature`` and ``top_p``
    are [B, 1].
    """
    tokens = logits.argmax(dim=-1)
    sampled = [i for i, g in enumerate(generators) if g is not None]
    if not sampled:
        return tokens
    rows = torch.as_tensor(sampled, device=logits.device)
    probs = torch.softmax(logits[rows].float() / temperature[rows], dim=-1)
    mass = top_p[rows].cpu()
    # The generators live on the CPU so that seeds give the same stream on every device;
    # only the candidates (or, for the rare slow rows, their full distribution) leave the device.
    uniform = torch.stack([torch.rand(1, generator=generators[i]) for i in sampled])
    chosen = torch.empty(len(sampled), dtype=torch.long)

    fast = torch.zeros(len(sampled), dtype=torch.bool)
    if bool((mass < 1).any()):
        top_probs, top_ids = (t.cpu() for t in probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1))
        fast = ((mass < 1) & (top_probs.sum(-1, keepdim=True) >= mass)).squeeze(-1)
        if bool(fast.any()):
            pick = inverse_cdf(nucleus(top_probs[fast], mass[fast]), uniform[fast])
            chosen[fast] = top_ids[fast].gather(-1, pick[:, None]).squeeze(-1)
    slow = ~fast
    if bool(slow.any()):
        dist = probs[slow.to(probs.device)].cpu()
        if bool((mass[slow] < 1).any()):
            dist = top_p_filter(dist, mass[slow])
        chosen[slow] = inverse_cdf(dist, uniform[slow])
    tokens[rows] = chosen.to(tokens.device)
    return tokens
