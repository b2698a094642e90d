"""Each trainer's own options, one section per trainer (``train.simpo``, ``train.dpo``, ...).

Which TRL config field each option sets is in `sao.train.table`; `sao.train.config.TrainConfig`
holds one of each.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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


class GRPOSection(Section):
    """GRPO (TRL's GRPOTrainer): samples a group of answers per prompt and scores them with sao's rewards.

    The defaults are the SAR paper's (Han et al. 2025, ``scripts/SA-grpo-1.7B.sh``), set here because
    TRL 1.x defaults differ (8 generations, loss 'dapo', group-scaled rewards).
    """

    num_generations: int = Field(6, ge=2, description="Answers sampled per prompt: the group advantages compare.")
    beta: float = Field(
        0.001, ge=0, description="KL coefficient to the reference (the starting weights); 0: no reference model."
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dr_grpo", description="TRL's GRPO loss normalisation; 'dr_grpo' (Dr. GRPO, no length bias) as in the paper."
    )
    scale_rewards: Literal["none", "group", "batch"] = Field(
        "none", description="Divide advantages by the reward std of the group or batch; 'none' as in Dr. GRPO."
    )
    max_prompt_length: int = Field(1024, ge=8, description="Prompts with more tokens are dropped (counted).")
    max_completion_length: int = Field(4096, ge=1, description="Token budget of each sampled answer.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the rollouts.")
    rewards: list[Literal["verifiable", "sar"]] = Field(
        default_factory=lambda: ["verifiable", "sar"],
        min_length=1,
        description="Reward components, summed with their weights: 'verifiable' (1 for a correct final "
        "'Answer:', weight 1) and 'sar' (the self-aligned reward under the current policy, weight sar_weight). "
        "['verifiable'] alone is plain GRPO.",
    )
    sar_weight: float = Field(0.2, ge=0, description="α, the weight of SAR in r = R_VR + α·R_SA (paper: 0.2).")
    checker: Literal["math", "exact"] = Field(
        "math",
        description="How a final answer is compared with the row's reference when the row names no checker: "
        "'math' (HF math-verify: 1/2 = 0.5, 1,000 = 1000) or 'exact' (normalised text).",
    )
    rollouts: Literal["sao", "trl"] = Field(
        "sao",
        description="Who samples the rollouts: 'sao' (sao's transformers engine on the live weights: finished "
        "rows leave the batch) or 'trl' (TRL's model.generate). TRL's vLLM modes (train.trl.use_vllm) take "
        "over from either.",
    )
    reward_batch_size: int = Field(8, ge=1, description="Sequences per forward pass when SAR scores the rollouts.")

    @field_validator("rewards")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each reward may appear once")
        return v
