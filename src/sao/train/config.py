"""The train recipe section: the trainer, its own options, optimiser, precision, LoRA. Field help feeds docs/recipes.md.

Each trainer's options live in a section named after it (``train.simpo.beta``,
``train.dpo.beta``), so that a field means one thing; which TRL config field each one
sets is in `sao.train.table`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from sao.recipe import Section
from sao.train.sections import DPOSection, GRPOSection, IPOSection, RobustDPOSection, SFTSection, SimPOSection
from sao.train.trl_fields import trl_field_problem

TrainerName = Literal["simpo", "dpo", "ipo", "robust_dpo", "sft", "grpo"]
TRAINER_NAMES: tuple[str, ...] = get_args(TrainerName)


class LoraSection(Section):
    enabled: bool = Field(False, description="Train LoRA adapters (PEFT) instead of every weight.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (the update is scaled by alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )


# Keys of the flat section before each trainer had its own: a recipe or an old run directory's
# recipe.yaml may still carry them.
_MOVED_TO_TRAINER_SECTION = ("beta", "gamma_beta_ratio", "label_smoothing")


def _error_at(loc: tuple[str, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` in this section, so that it reads ``train.<loc>: message``.

    A validator's ValueError would be located at the section itself; pydantic-core places a
    ValidationError raised in a validator under the current location instead.
    """
    error = PydanticCustomError("sao_config", "{message}", {"message": message})
    return ValidationError.from_exception_data("TrainConfig", [InitErrorDetails(type=error, loc=loc, input=value)])


class TrainConfig(Section):
    trainer: TrainerName = Field(
        "simpo",
        description="'simpo' (reference-free, length-normalised; the paper's choice), 'dpo', 'ipo', "
        "'robust_dpo' (DPO corrected for flipped labels), 'sft' (on the chosen responses), or 'grpo' (samples "
        "and scores its own answers to prompts with reference answers: method sar). "
        "Its options are in the section of the same name.",
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
    logging_steps: int = Field(1, ge=1, description="Optimiser steps between log lines and curve points.")
    save_steps: int = Field(50, ge=1, description="Optimiser steps between checkpoints (resume points).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    report_to: Literal["none", "tensorboard", "wandb"] = Field(
        "tensorboard", description="Experiment tracker (wandb needs the wandb package and a login)."
    )
    seed: int = Field(0, description="Seed for data order and initialisation of LoRA weights.")
    chat_template: str | None = Field(
        None,
        description="A Jinja chat template set on the tokenizer before the rows are tokenized and saved with "
        "the trained model (for a base model that has none); default: the model's own.",
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other field of the chosen trainer's TRL config class (e.g. DPOConfig), passed as is; "
        "fields sao sets itself are refused with the sao field to use.",
    )
    lora: LoraSection = Field(default_factory=LoraSection)
    simpo: SimPOSection = Field(default_factory=SimPOSection)
    dpo: DPOSection = Field(default_factory=DPOSection)
    ipo: IPOSection = Field(default_factory=IPOSection)
    robust_dpo: RobustDPOSection = Field(default_factory=RobustDPOSection)
    sft: SFTSection = Field(default_factory=SFTSection)
    grpo: GRPOSection = Field(default_factory=GRPOSection)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        if "method" in values:
            method = values["method"]
            message = f"renamed: use train.trainer: {method} (a run recipe's top-level method: is the alignment method)"
            raise _error_at(("method",), message, method)
        trainer = values.get("trainer", "simpo")
        for key in _MOVED_TO_TRAINER_SECTION:
            if key in values:
                raise _error_at((key,), _moved_message(key, trainer), values[key])
        return values

    @model_validator(mode="after")
    def _whole_groups(self) -> TrainConfig:
        # GRPO's advantages compare the answers of one prompt, so a step must hold whole groups; checked here
        # so that a recipe fails when it is read, not after the synthesis that comes before training.
        completions = self.batch_size * self.gradient_accumulation_steps
        if self.trainer == "grpo" and completions % self.grpo.num_generations:
            message = (
                f"GRPO trains on whole groups: batch_size x gradient_accumulation_steps ({completions} completions) "
                f"must be a multiple of grpo.num_generations ({self.grpo.num_generations})"
            )
            raise _error_at(("batch_size",), message, self.batch_size)
        return self

    @model_validator(mode="after")
    def _trl_fields(self) -> TrainConfig:
        if not self.trl:
            return self  # no TRL import for the common case: `sao run` validates before any training
        for key, value in self.trl.items():
            problem = trl_field_problem(self.trainer, key)
            if problem:
                raise _error_at(("trl", key), problem, value)
        return self

    @property
    def options(self) -> Section:
        """The chosen trainer's own section (``self.simpo`` when ``trainer`` is simpo, ...)."""
        return getattr(self, self.trainer)

    def effective(self) -> dict[str, Any]:
        """The section as it acts on training: every common field and the chosen trainer's section only.

        The run directory's identity and the model card use it, so that editing another
        trainer's section neither forces a restart nor shows on the card.
        """
        return self.model_dump(exclude=set(TRAINER_NAMES) - {self.trainer})


def _moved_message(key: str, trainer: str) -> str:
    """Where a flat key of the old section lives now, for the chosen trainer if it has it."""
    holders = [name for name in TRAINER_NAMES if key in TrainConfig.model_fields[name].annotation.model_fields]
    if trainer in holders:
        return f"moved: use train.{trainer}.{key}"
    places = ", ".join(f"train.{name}.{key}" for name in holders)
    return f"moved into the trainers' sections ({places}); train.{trainer} has no {key}"
