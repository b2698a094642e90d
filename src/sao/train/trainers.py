"""TRL trainers for each method, fed with sao's own tokenisation (see `sao.train.tokenize`).

- SimPO: ``trl.experimental.cpo.CPOTrainer`` with ``loss_type="simpo"`` and ``cpo_alpha=0``
  (no behaviour-cloning term), which is SimPO's reference-free, length-normalised loss.
- DPO, IPO, robust DPO: ``trl.DPOTrainer``. The reference is a frozen copy of the model
  this run starts from, taken before any step, which in the loop is the previous iterate (with
  LoRA: the same model with the adapter switched off). sao passes it rather than let TRL reload
  ``config._name_or_path``, which skips sao's safe loading (safetensors only, offline hub ids,
  ``trust_remote_code``).
- SFT: ``trl.SFTTrainer`` on ``input_ids`` + ``completion_mask`` (loss on responses only).

Each subclass only replaces TRL's tokenisation with rows that are already tokenized, and
stops at the first non-finite loss.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sao.errors import SaoError
from sao.train.config import TrainConfig

# TRL's CPOTrainer lives in trl.experimental, which warns on every import.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

DPO_LOSS = {"dpo": "sigmoid", "ipo": "ipo", "robust_dpo": "robust"}


class TrainingDivergedError(SaoError):
    """The loss became NaN or infinite."""


class _FiniteLoss:
    """Fail at the first NaN/inf loss. transformers logs it and carries on, wasting the run."""

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss).all():
            step = self.state.global_step + 1
            raise TrainingDivergedError(
                f"loss is {loss.item()} at step {step}; lower train.learning_rate or train.beta, or check the pairs"
            )
        return loss


def _cpo_row(feature: dict[str, list[int]]) -> dict[str, list[int]]:
    """CPOTrainer's row layout from prompt/chosen/rejected ids: labels are -100 over the prompt."""
    prompt = feature["prompt_ids"]
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        completion = feature[f"{side}_ids"]
        row[f"{side}_input_ids"] = prompt + completion
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(completion))
        row[f"{side}_labels"] = [-100] * len(prompt) + completion
    return row


def _trainer_classes() -> dict[str, type]:
    # Imported here: TRL pulls in much of transformers' training stack, which `sao --help` does not need.
    from trl import DPOTrainer, SFTTrainer
    from trl.experimental.cpo import CPOTrainer

    class SimPOTrainer(_FiniteLoss, CPOTrainer):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
            return _cpo_row(feature)

    class PreferenceTrainer(_FiniteLoss, DPOTrainer):
        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset  # tokenized and truncated already

    class FiniteSFTTrainer(_FiniteLoss, SFTTrainer):
        """SFTTrainer skips its own tokenisation when the rows carry ``input_ids``."""

    return {"simpo": SimPOTrainer, "dpo": PreferenceTrainer, "sft": FiniteSFTTrainer}


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


def training_arguments(config: TrainConfig, out_dir: Path, *, compute: torch.dtype, progress: bool) -> Any:
    """The TRL config object for ``config.method`` (a ``transformers.TrainingArguments`` subclass).

    ``compute`` is the dtype the model computes in (`sao.models.pick_dtype` of ``config.dtype``):
    bf16 or fp16 turn on autocast mixed precision; see `weights_dtype` for the weights.
    """
    from sao.models import pick_device

    common = dict(
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
    if config.method == "simpo":
        from trl.experimental.cpo import CPOConfig

        return CPOConfig(
            **common,
            loss_type="simpo",
            cpo_alpha=0.0,
            beta=config.beta,
            simpo_gamma=config.simpo_gamma,
            label_smoothing=config.label_smoothing,
        )
    if config.method == "sft":
        from trl import SFTConfig

        return SFTConfig(**common, completion_only_loss=True, packing=False)
    from trl import DPOConfig

    return DPOConfig(
        **common, loss_type=[DPO_LOSS[config.method]], beta=config.beta, label_smoothing=config.label_smoothing
    )


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
    """Whether the method needs a separate reference model: the DPO family in full fine-tuning
    (with LoRA the reference is the same model with its adapter switched off)."""
    return config.method in DPO_LOSS and not config.lora.enabled


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
    """A ready trainer for ``config.method`` over a dataset of `sao.train.tokenize` rows.

    ``ref_model`` is the DPO family's frozen reference, required when `needs_reference`: a
    copy of the starting weights, in the same dtype as ``model``, so that the
    first step's log-ratios are exactly 0 (loss ln 2).

    Raises ValueError when ``ref_model`` is missing where it is needed, or given where it is not.
    """
    if (ref_model is not None) != needs_reference(config):
        wanted = "given" if needs_reference(config) else "None"
        raise ValueError(f"method {config.method}, lora.enabled {config.lora.enabled}: ref_model must be {wanted}")
    kind = config.method if config.method in ("simpo", "sft") else "dpo"
    cls = _trainer_classes()[kind]
    extra = {"ref_model": ref_model} if kind == "dpo" else {}
    return cls(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=callbacks,
        **extra,
    )
