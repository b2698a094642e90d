"""The trainer table: for each ``train.trainer``, its TRL classes, the data it needs, and its TRL options.

A new trainer is one `Trainer` record here, one section in `sao.train.config`, and its name
in ``TrainerName``; `sao.train.trainers` builds every trainer from its record. GRPO, which samples
and scores its own responses instead of reading pairs, fits the same record: its rows are prompts
with reference answers, its section holds its sampling and reward options, and ``extra`` gives
its trainer the reward functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sao.errors import ConfigError
from sao.recipe import Section
from sao.train.grpo import GRPO_SETS, grpo_arguments, grpo_trainer, reward_functions
from sao.train.pretokenized import preference_trainer, sft_trainer, simpo_trainer
from sao.train.sections import DPOSection, IPOSection, RobustDPOSection, SimPOSection
from sao.train.tokenize import Tokenized, grpo_examples, preference_examples, sft_examples

PAIR_COLUMNS = frozenset({"prompt", "chosen", "rejected"})


@dataclass(frozen=True)
class Trainer:
    """What sao needs to train with one TRL trainer."""

    name: str
    # The columns of the rows it trains on, as alternatives: rows with every column of any one set
    # will do (a pairs file's rows carry more, e.g. id and scores).
    columns: tuple[frozenset[str], ...]
    # Trains against a frozen reference model: in full fine-tuning a copy of the starting
    # weights, with LoRA the same model with its adapter switched off. A function of the trainer's
    # section where a setting decides it (GRPO at beta 0 has no reference).
    uses_reference: bool | Callable[[Any], bool]
    # sao's subclass of the TRL trainer and the TRL config class, imported on first call.
    trainer_class: Callable[[], type]
    config_class: Callable[[], type]
    # sao's tokenisation of the rows: (tokenizer, rows, train section) -> examples for the trainer.
    examples: Callable[[Any, list[dict[str, Any]], Any], Tokenized]
    # The train section -> the TRL config fields this trainer's options set.
    arguments: Callable[[Any], dict[str, Any]]
    # Every field ``arguments`` sets -> what a recipe changes instead (``train.trl`` refuses them).
    sets: Mapping[str, str]
    # Common TRL fields (`sao.train.trainers.common_arguments`) this trainer's config does not have.
    without: frozenset[str] = frozenset()
    # The train section -> more keyword arguments for the trainer class (GRPO's reward functions).
    extra: Callable[[Any], dict[str, Any]] = lambda config: {}

    def needs_reference(self, options: Section) -> bool:
        return self.uses_reference(options) if callable(self.uses_reference) else self.uses_reference


def _cpo_config() -> type:
    from trl.experimental.cpo import CPOConfig

    return CPOConfig


def _dpo_config() -> type:
    from trl import DPOConfig

    return DPOConfig


def _sft_config() -> type:
    from trl import SFTConfig

    return SFTConfig


def _simpo_arguments(section: SimPOSection) -> dict[str, Any]:
    # CPO's SimPO loss without CPO's behaviour-cloning term (cpo_alpha 0) is SimPO's loss exactly;
    # TRL's simpo_gamma is the absolute margin γ = β × (γ/β).
    return {
        "loss_type": "simpo",
        "cpo_alpha": 0.0,
        "beta": section.beta,
        "simpo_gamma": section.beta * section.gamma_beta_ratio,
        "label_smoothing": section.label_smoothing,
    }


def _grpo_config() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def _pairs(tokenizer: Any, rows: list[dict[str, Any]], config: Any) -> Tokenized:
    return preference_examples(tokenizer, rows, config.max_length)


def _dpo_family(name: str, loss: str, section: type[Section]) -> Trainer:
    """A DPOTrainer loss: its section's fields have the names of DPOConfig's, and pass straight to it."""
    fields = tuple(section.model_fields)
    return Trainer(
        name=name,
        columns=(PAIR_COLUMNS,),
        uses_reference=True,
        trainer_class=preference_trainer,
        config_class=_dpo_config,
        examples=_pairs,
        arguments=lambda config: {"loss_type": [loss], **config.options.model_dump()},
        sets={"loss_type": "use train.trainer", **{f: f"use train.{name}.{f}" for f in fields}},
    )


TRAINERS: dict[str, Trainer] = {
    "simpo": Trainer(
        name="simpo",
        columns=(PAIR_COLUMNS,),
        uses_reference=False,
        trainer_class=simpo_trainer,
        config_class=_cpo_config,
        examples=_pairs,
        arguments=lambda config: _simpo_arguments(config.options),
        sets={
            "loss_type": "use train.trainer",
            "cpo_alpha": "fixed at 0: SimPO is CPO without its behaviour-cloning term",
            "beta": "use train.simpo.beta",
            "simpo_gamma": "use train.simpo.gamma_beta_ratio (γ = β × ratio)",
            "label_smoothing": "use train.simpo.label_smoothing",
        },
    ),
    "dpo": _dpo_family("dpo", "sigmoid", DPOSection),
    "ipo": _dpo_family("ipo", "ipo", IPOSection),
    "robust_dpo": _dpo_family("robust_dpo", "robust", RobustDPOSection),
    # SFT trains on a `completion`, or on a pair's chosen response.
    "sft": Trainer(
        name="sft",
        columns=(frozenset({"prompt", "completion"}), frozenset({"prompt", "chosen"})),
        uses_reference=False,
        trainer_class=sft_trainer,
        config_class=_sft_config,
        examples=lambda tokenizer, rows, config: sft_examples(tokenizer, rows, config.max_length),
        arguments=lambda config: {"completion_only_loss": True, "packing": False},
        sets={
            "completion_only_loss": "fixed: sao's rows mark the response tokens, the only ones trained on",
            "packing": "fixed: sao's rows are one example each",
        },
    ),
    # GRPO samples its own completions of each prompt and scores them with sao's rewards
    # (`sao.train.grpo`); its rows need the reference answer the verifiable reward checks.
    "grpo": Trainer(
        name="grpo",
        columns=(frozenset({"prompt", "answer"}),),
        uses_reference=lambda options: options.beta > 0,
        trainer_class=grpo_trainer,
        config_class=_grpo_config,
        examples=lambda tokenizer, rows, config: grpo_examples(tokenizer, rows, config.grpo.max_prompt_length),
        arguments=lambda config: grpo_arguments(config.grpo),
        sets=GRPO_SETS,
        without=frozenset({"max_length"}),
        extra=lambda config: {"reward_funcs": reward_functions(config.grpo)[0], "section": config.grpo},
    ),
}


def trainer_columns(name: str) -> tuple[frozenset[str], ...]:
    """The row columns trainer ``name`` needs, as alternatives (rows with any one set will do); ConfigError
    naming ``train.trainer`` for an unknown name."""
    if name not in TRAINERS:
        raise ConfigError(f"train.trainer: unknown trainer {name!r} (one of {', '.join(TRAINERS)})")
    return TRAINERS[name].columns
