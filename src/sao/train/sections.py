"""Each trainer's own options, one section per trainer (``train.simpo``, ``train.dpo``, ...).

Which TRL config field each option sets is in `sao.train.table`; `sao.train.config.TrainConfig`
holds one of each.
"""

from __future__ import annotations

from pydantic import Field

from sao.recipe import Section


class SimPOSection(Section):
    """SimPO: reference-free, length-normalised (TRL's CPOTrainer with its SimPO loss)."""

    # SimPO's β scales a per-token (length-normalised) log-prob, so it is two orders larger
    # than DPO's, which scales a summed log-ratio.
    beta: float = Field(10.0, gt=0, description="Reward scale β on the mean per-token log-prob (paper: 10).")
    gamma_beta_ratio: float = Field(
        0.3, ge=0, description="Target margin as γ/β (the SimPO authors tune this ratio; paper: γ 3, β 10)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed share of flipped labels, mixed into the loss (0: none)."
    )


class DPOSection(Section):
    beta: float = Field(0.1, gt=0, description="Reward scale β on the summed log-ratio to the reference.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Conservative DPO's share of flipped labels, mixed into the loss (0: none)."
    )


class IPOSection(Section):
    beta: float = Field(
        0.1,
        gt=0,
        description="IPO's τ: the loss pulls the log-ratio gap towards 1/(2β), so a larger β keeps the model "
        "closer to the reference.",
    )


class RobustDPOSection(Section):
    beta: float = Field(0.1, gt=0, description="Reward scale β on the summed log-ratio to the reference.")
    # At ε = 0 the robust loss is DPO's exactly, so the default must be above it to mean anything.
    label_smoothing: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="ε, the assumed share of pairs whose judge picked the wrong response; the loss is corrected "
        "for it (at 0 it would be plain DPO). 0.1: one pair in ten, a modest rate for self-judged pairs; "
        "1 - the agreement `sao judge-eval` measures is an estimate.",
    )


class SFTSection(Section):
    """SFT has no options of its own: it trains on each pair's chosen response (or a row's completion)."""
