"""Next-token choice with per-row temperature, top-k, top-p and random generator.

Each row draws from its own ``torch.Generator``, so a seeded request gives the same
sample whatever else shares its batch (``model.generate`` has one global RNG, which
is why the engine runs its own decode loop).

A row takes one uniform number per step and inverts its cumulative distribution
(``searchsorted``). That keeps the per-row work to one RNG call: per-row
``torch.multinomial`` over a 49k vocabulary costs about as much as the model's forward
pass at batch 32 on a CPU. Top-p looks for the nucleus among the ``NUCLEUS_CANDIDATES``
most likely tokens (a ``topk``, 20x cheaper than a full sort) and falls back to a full
sort only for rows whose nucleus is larger than that. Top-k comes first (temperature, then
top-k, then top-p over the renormalised top k, as HF and vLLM order them) and rides on the same
candidates: a row with k up to ``NUCLEUS_CANDIDATES`` never needs the full sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

NUCLEUS_CANDIDATES = 256


def nucleus(sorted_probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of descending-sorted probabilities outside mass ``top_p`` ([R, 1]).

    The most likely token is always kept, even when its own probability exceeds top_p.
    """
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    return sorted_probs.masked_fill(mass_before >= top_p, 0.0)


def top_k_nucleus(sorted_probs: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`nucleus` after keeping only the ``top_k`` ([R, 1] integers; 0: no limit) most likely tokens.

    Top-p then applies to the top-k distribution renormalised, so its threshold scales with the mass the
    top k keep. A row with no limit gets exactly `nucleus`.
    """
    limited = top_k > 0
    positions = torch.arange(sorted_probs.shape[-1], device=sorted_probs.device)
    kept = sorted_probs.masked_fill(limited & (positions >= top_k), 0.0)
    scaled = torch.where(top_p < 1, top_p * kept.sum(-1, keepdim=True), torch.full_like(top_p, math.inf))
    return nucleus(kept, torch.where(limited, scaled, top_p))


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor | None = None) -> torch.Tensor:
    """`nucleus` (with ``top_k``: `top_k_nucleus`) for probabilities in vocabulary order (a full sort)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    kept = nucleus(sorted_probs, top_p) if top_k is None else top_k_nucleus(sorted_probs, top_k, top_p)
    return torch.zeros_like(probs).scatter_(-1, order, kept)


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
    top_k: Sequence[int] | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V].

    Rows with no generator are greedy; the others sample from the temperature-scaled, top-k- and
    top-p-filtered distribution with their own generator. ``temperature`` and ``top_p`` are [B, 1];
    ``top_k`` is one int per row (0, or the vocabulary size or more: no limit; None: no row has one).
    A row with ``top_k == 1`` takes the argmax, exactly as a greedy row does.
    """
    vocab = logits.shape[-1]
    limits = [0 if top_k is None or top_k[i] >= vocab else int(top_k[i]) for i in range(len(generators))]
    sampled = [i for i, g in enumerate(generators) if g is not None and limits[i] != 1]
    if not sampled:
        return logits.argmax(dim=-1)
    # Only greedy rows take the argmax (a bf16 [128, 49k] argmax is ~10 ms on a CPU), and a batch of sampled
    # rows only is not copied out of the logits. Neither saving showed in the engine's wall time (issue 21).
    everyone = len(sampled) == len(generators)
    tokens = torch.empty(len(generators), dtype=torch.long, device=logits.device)
    rows = torch.as_tensor(sampled, device=logits.device)
    if not everyone:
        drawn = set(sampled)
        greedy = torch.as_tensor([i for i in range(len(generators)) if i not in drawn], device=logits.device)
        tokens[greedy] = logits[greedy].argmax(dim=-1)
    block, scale = (logits, temperature) if everyone else (logits[rows], temperature[rows])
    probs = torch.softmax(block.float() / scale, dim=-1)
    mass = top_p[rows].cpu()
    k = torch.tensor([[limits[i]] for i in sampled])
    limited = (k > 0).squeeze(-1)
    nucleated = (mass < 1).squeeze(-1)
    # The generators live on the CPU so that seeds give the same stream on every device;
    # only the candidates (or, for the rare slow rows, their full distribution) leave the device.
    uniform = torch.stack([torch.rand(1, generator=generators[i]) for i in sampled])
    chosen = torch.empty(len(sampled), dtype=torch.long)

    fast = torch.zeros(len(sampled), dtype=torch.bool)
    if bool((nucleated | limited).any()):
        top_probs, top_ids = (t.cpu() for t in probs.topk(min(NUCLEUS_CANDIDATES, vocab), dim=-1))
        # The candidates hold a row's top k whole, or (no limit) a nucleus whose mass they reach.
        covered = torch.where(limited, k.squeeze(-1) <= top_probs.shape[-1], top_probs.sum(-1) >= mass.squeeze(-1))
        fast = (nucleated | limited) & covered
        if bool(fast.any()):
            pick = inverse_cdf(top_k_nucleus(top_probs[fast], k[fast], mass[fast]), uniform[fast])
            chosen[fast] = top_ids[fast].gather(-1, pick[:, None]).squeeze(-1)
    slow = ~fast
    if bool(slow.any()):
        dist = probs[slow.to(probs.device)].cpu()
        # Only the rows with a limit are filtered, so a row draws the same whatever else is slow with it.
        filtered = (nucleated | limited)[slow]
        if bool(filtered.any()):
            dist[filtered] = top_p_filter(dist[filtered], mass[slow][filtered], k[slow][filtered])
        chosen[slow] = inverse_cdf(dist, uniform[slow])
    tokens[rows] = chosen.to(tokens.device)
    return tokens
