"""A TRL config and a ready trainer from a `TrainConfig`, driven by the trainer table (`sao.train.table`).

Every trainer gets the same common TRL fields from the common train fields
(`common_arguments`), its own from its section (``Trainer.arguments``), and any other field of
its TRL config class from ``train.trl``. The DPO family's reference is a frozen copy of the
model this run starts from, taken before any step, which in the loop is the previous iterate
(with LoRA: the same model with the adapter switched off). sao passes it rather than let TRL
reload ``config._name_or_path``, which skips sao's safe loading (safetensors only, offline hub
ids, ``trust_remote_code``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sao.errors import ConfigError, first_line
from sao.train.config import TrainConfig
from sao.train.table import TRAINERS


def launched_world_size() -> int:
    """Processes started by ``accelerate launch`` / ``torchrun`` / ``mpirun`` (1 when run directly).

    The variables accelerate reads, in its order: torchrun's, then those of the MPI launchers.
    """
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def sharding_engine(args: Any) -> str | None:
    """``"deepspeed"`` or ``"fsdp"`` when that engine shards the model being trained, else None.

    ``args`` is the ``TrainingArguments`` the trainer will use. ``accelerate launch`` with a
    DeepSpeed or FSDP config says so in the environment (``ACCELERATE_USE_DEEPSPEED``,
    ``ACCELERATE_USE_FSDP``); ``TrainingArguments(deepspeed=..., fsdp=...)`` say so directly.
    """
    from accelerate.utils import str_to_bool

    def env(name: str) -> bool:
        return bool(str_to_bool(os.environ.get(name, "false")))

    if args.deepspeed or getattr(args, "deepspeed_plugin", None) is not None or env("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if args.fsdp or env("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return None


def weights_dtype(compute: torch.dtype, *, lora: bool, sharded: bool) -> torch.dtype:
    """The dtype to load the weights in, for training that computes in ``compute``.

    Half-precision training keeps float32 master weights and computes in ``compute`` under
    autocast (``TrainingArguments(bf16=True)`` / ``fp16``): AdamW updates the weights in place,
    and a bf16 weight holds 8 significant bits, so a step at the paper's lr of 1e-6 (about
    1e-6 per weight) is under half the spacing of bf16 numbers near any weight above 2^-11 (~5e-4)
    and rounds to no change (issue 14). fp16 AMP needs float32 weights too: its gradient scaler
    refuses fp16 gradients.

    The weights load in ``compute`` only where the fp32 master copy is kept elsewhere or no
    weight is updated:

    - ``sharded``: DeepSpeed ZeRO with bf16 keeps fp32 partitions of the weights in its
      optimiser, and accelerate's FSDP upcasts the trainable parameters to fp32 under mixed
      precision; loading in 16 bits halves the memory the load itself needs;
    - ``lora``: the base weights are frozen, and PEFT keeps the adapters in fp32.
    """
    if compute == torch.float32 or lora or sharded:
        return compute
    return torch.float32


def common_arguments(config: TrainConfig, out_dir: Path, *, compute: torch.dtype, progress: bool) -> dict[str, Any]:
    """The TRL config fields every trainer gets, from the common train fields.

    `sao.train.trl_fields.COMMON_SETS` lists them, for `train.trl` to refuse.
    """
    from sao.models import pick_device

    return dict(
        output_dir=str(out_dir),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio of the steps
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=compute == torch.bfloat16,
        fp16=compute == torch.float16,
        gradient_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=[] if config.report_to == "none" else [config.report_to],
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not progress,
        max_length=config.max_length,
        # sao trains where `pick_device` says (CUDA when present, else the CPU), and on the CPU
        # transformers must be told so:
        # - one process computing in bf16: without use_cpu, TrainingArguments refuses bf16 when
        #   there is no bf16 GPU ("Your setup doesn't support bf16/gpu"), so nothing trained on
        #   a CPU with native bf16, where `dtype: auto` picks it (issue 14);
        # - several processes (`accelerate launch --multi_gpu` or torchrun on CPUs): transformers
        #   forms the CPU (gloo) process group only with use_cpu. Without it each rank set itself
        #   up as a lone process, trained on all the pairs and raced the others writing the
        #   output directory. `accelerate launch --cpu` cannot start more than one process
        #   without mpirun, so this is the way to data-parallel training on CPUs.
        use_cpu=pick_device("auto").type == "cpu",
    )


def training_arguments(config: TrainConfig, out_dir: Path, *, compute: torch.dtype, progress: bool) -> Any:
    """The TRL config object for ``config.trainer`` (a ``transformers.TrainingArguments`` subclass).

    ``compute`` is the dtype the model computes in (`sao.models.pick_dtype` of ``config.dtype``):
    bf16 or fp16 turn on autocast mixed precision; see `weights_dtype` for the weights.

    Raises ConfigError naming ``train.trl.<field>`` when the TRL config rejects a value given there.
    """
    record = TRAINERS[config.trainer]
    common = common_arguments(config, out_dir, compute=compute, progress=progress)
    sao_set = {k: v for k, v in common.items() if k not in record.without} | record.arguments(config)
    cls = record.config_class()
    try:
        return cls(**sao_set, **config.trl)
    except (TypeError, ValueError) as exc:
        if not config.trl:
            raise  # sao's own fields: a bug here, not in the recipe
        raise ConfigError(_rejected_field(cls, sao_set, config.trl, exc)) from None


def check_trl_values(config: TrainConfig) -> None:
    """Build the TRL config once, so that a ``train.trl`` value TRL rejects is one ConfigError line now,
    not after the synthesis that precedes training in ``sao run``. Nothing to check without ``train.trl``."""
    if not config.trl:
        return
    import tempfile

    from sao.models import pick_device, pick_dtype

    with tempfile.TemporaryDirectory() as scratch:  # TrainingArguments only records the directory
        training_arguments(config, Path(scratch), compute=pick_dtype(config.dtype, pick_device("auto")), progress=False)


def _rejected_field(cls: type, sao_set: dict[str, Any], passthrough: dict[str, Any], exc: Exception) -> str:
    """Which ``train.trl`` field made ``cls`` fail, found by adding each alone to sao's fields."""
    for key, value in passthrough.items():
        try:
            cls(**sao_set, **{key: value})
        except (TypeError, ValueError) as alone:
            return f"train.trl.{key}: {first_line(alone)}"
    return f"train.trl: {', '.join(passthrough)} are rejected together: {first_line(exc)}"


def lora_config(config: TrainConfig) -> Any:
    if not config.lora.enabled:
        return None
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def needs_reference(config: TrainConfig) -> bool:
    """Whether training needs a separate reference model: a trainer that uses one, in full fine-tuning
    (with LoRA the reference is the same model with its adapter switched off)."""
    return TRAINERS[config.trainer].needs_reference(config.options) and not config.lora.enabled


def build_trainer(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    dataset: Any,
    args: Any,
    callbacks: list[Any] | None = None,
    *,
    ref_model: Any = None,
) -> Any:
    """A ready trainer for ``config.trainer`` over a dataset of its `sao.train.tokenize` examples.

    ``ref_model`` is the frozen reference, required when `needs_reference`: a copy of the
    starting weights, in the same dtype as ``model``, so that the first step's log-ratios are
    exactly 0 (loss ln 2).

    Raises ValueError when ``ref_model`` is missing where it is needed, or given where it is not.
    """
    if (ref_model is not None) != needs_reference(config):
        wanted = "given" if needs_reference(config) else "None"
        raise ValueError(f"trainer {config.trainer}, lora.enabled {config.lora.enabled}: ref_model must be {wanted}")
    record = TRAINERS[config.trainer]
    reference = {"ref_model": ref_model} if record.needs_reference(config.options) else {}
    return record.trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=callbacks,
        **reference,
        **record.extra(config),
    )
