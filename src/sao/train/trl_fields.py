"""Which TRL config fields ``train.trl`` may pass: any field of the trainer's TRL config that sao does
not set itself. Read when a recipe is validated, so it imports TRL only for a recipe that has a
``train.trl`` field to check.
"""

from __future__ import annotations

import dataclasses

from sao.train.table import TRAINERS

# Each TRL field `common_arguments` sets, and what a recipe changes instead (`train.trl` refuses them).
COMMON_SETS: dict[str, str] = {
    "output_dir": "use sao train --out (checkpoints go to OUT/checkpoints)",
    "learning_rate": "use train.learning_rate",
    "lr_scheduler_type": "use train.lr_scheduler",
    "warmup_steps": "use train.warmup_ratio",
    "num_train_epochs": "use train.epochs",
    "per_device_train_batch_size": "use train.batch_size",
    "gradient_accumulation_steps": "use train.gradient_accumulation_steps",
    "weight_decay": "use train.weight_decay",
    "max_grad_norm": "use train.max_grad_norm",
    "bf16": "use train.dtype",
    "fp16": "use train.dtype",
    "gradient_checkpointing": "use train.gradient_checkpointing",
    "logging_steps": "use train.logging_steps",
    "logging_first_step": "fixed: the curves start at the first step",
    "logging_nan_inf_filter": "fixed: sao logs a non-finite loss and stops there",
    "save_strategy": "use train.save_steps",
    "save_steps": "use train.save_steps",
    "save_total_limit": "use train.save_total_limit",
    "report_to": "use train.report_to",
    "seed": "use train.seed",
    "data_seed": "use train.seed",
    "remove_unused_columns": "fixed: the collators read columns that the model's forward does not take",
    "dataloader_pin_memory": "fixed: on exactly where CUDA is",
    "disable_tqdm": "fixed: follows sao's progress setting",
    "max_length": "use train.max_length",
    "use_cpu": "fixed: sao trains where sao.models.pick_device says (CUDA when present)",
}

# Other names of fields sao sets. transformers 5 renamed gradient_checkpointing, and the new
# name wins over the old one, so passing it would silently override train.gradient_checkpointing.
_OTHER_NAMES = {"activation_checkpointing": "use train.gradient_checkpointing"}


def trl_field_problem(trainer: str, field: str) -> str | None:
    """Why ``train.trl.<field>`` cannot be passed to ``trainer``'s TRL config, or None when it can.

    Refused: a field sao sets itself (the message says what to change instead), and a name
    that is not a field of the TRL config class. Values are checked when the config is built
    (`training_arguments`).
    """
    record = TRAINERS[trainer]
    instead = {**COMMON_SETS, **_OTHER_NAMES, **record.sets}.get(field)
    if instead:
        return f"sao sets {field} itself: {instead}"
    cls = record.config_class()
    if field not in {f.name for f in dataclasses.fields(cls) if f.init}:
        import trl

        return f"not a field of {cls.__name__} (TRL {trl.__version__}), the config of trainer {trainer}"
    return None
