"""The train recipe section: loss, optimiser, precision, LoRA. Field help feeds docs/recipes.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sao.recipe import Section

Method = Literal["simpo", "dpo", "ipo", "robust_dpo", "sft"]

# β when the recipe leaves it unset. SimPO's β scales a length-normalised log-prob
# (per-token), so it is two orders larger than DPO's, which scales a summed log-ratio.
DEFAULT_BETA: dict[str, float | None] = {"simpo": 10.0, "dpo": 0.1, "ipo": 0.1, "robust_dpo": 0.1, "sft": None}


class LoraSection(Section):
    enabled: bool = Field(False, description="Train LoRA adapters (PEFT) instead of every weight.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (the update is scaled by alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )


class TrainConfig(Section):
    method: Method = Field(
        "simpo",
        description="'simpo' (reference-free, length-normalised; the paper's choice), 'dpo', 'ipo', "
        "'robust_dpo' (DPO with label noise `label_smoothing`), or 'sft' (on the chosen responses).",
    )
    beta: float | None = Field(
        None, gt=0, description="Reward scale β. Unset: 10 for SimPO (the paper), 0.1 for the DPO family."
    )
    gamma_beta_ratio: float = Field(
        0.3, ge=0, description="SimPO target margin as γ/β (the SimPO authors tune this ratio; paper: γ 3, β 10)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed share of flipped labels (robust_dpo's ε; also SimPO/DPO smoothing)."
    )
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate (paper: 1e-6 for 7-9B models).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming up.")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs.")
    batch_size: int = Field(2, ge=1, description="Pairs per device per micro-batch.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-batches per optimiser step; global batch = batch_size x this x devices."
    )
    max_length: int = Field(
        1024, ge=16, description="Prompt + response tokens; longer responses are cut, longer prompts dropped."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Compute precision. 'auto': bf16 where the device computes it natively, else float32. "
        "bf16 and float16 are mixed precision over float32 master weights (docs/training.md).",
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations in backward (less memory).")
    lora: LoraSection = Field(default_factory=LoraSection)
    logging_steps: int = Field(1, ge=1, description="Optimiser steps between log lines and curve points.")
    save_steps: int = Field(50, ge=1, description="Optimiser steps between checkpoints (resume points).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    report_to: Literal["none", "tensorboard", "wandb"] = Field(
        "tensorboard", description="Experiment tracker (wandb needs the wandb package and a login)."
    )
    seed: int = Field(0, description="Seed for data order and initialisation of LoRA weights.")

    @model_validator(mode="before")
    @classmethod
    def _beta(cls, values: dict) -> dict:
        if isinstance(values, dict) and values.get("beta") is None:
            method = values.get("method", "simpo")
            values = {**values, "beta": DEFAULT_BETA.get(method)}
        return values

    @property
    def simpo_gamma(self) -> float:
        """TRL's ``simpo_gamma`` is the absolute margin γ = β × (γ/β)."""
        return (self.beta or 0.0) * self.gamma_beta_ratio
