"""``sao train``: preference optimisation on pairs, resumable, ending in a saved HF model with a card."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sao.errors import ConfigError, InputError
from sao.jsonl import read_jsonl
from sao.store import RunStore
from sao.train.config import TrainConfig
from sao.train.curves import METRICS
from sao.train.table import TRAINERS
from sao.train.tokenize import Tokenized
from sao.usage import peak_rss_mb

log = logging.getLogger(__name__)

STAGE = "train"


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    store: RunStore
    is_main: bool = True  # False on the other ranks of a multi-process run: they return no metrics


def resolve_pairs_file(path: str | Path) -> Path:
    """A pairs file from a run directory, ``RUN_DIR/pairs`` (the stage name), or a .jsonl/.parquet path."""
    path = Path(path)
    candidates = [path / "pairs.jsonl", path] if path.is_dir() else [path, path.with_name(path.name + ".jsonl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{path}: no pairs found (give a sao synth run directory, a .jsonl or a .parquet file)")


def load_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import datasets

        rows = datasets.Dataset.from_parquet(str(path)).to_list()
    else:
        rows = [row for _, row in read_jsonl(path)]
    if not rows:
        raise InputError(f"{path}: no rows to train on")
    return rows


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose ``trainer_state.json`` (written last by the Trainer) is whole.

    A run killed while writing a checkpoint leaves a directory without it; transformers'
    ``get_last_checkpoint`` would pick that one and the resume would fail.
    """
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()),
        key=lambda p: int(p.name.removeprefix("checkpoint-")),
        reverse=True,
    )
    for checkpoint in found:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return checkpoint
        except (OSError, ValueError):
            log.warning("train: %s is incomplete (killed while saving); skipped", checkpoint.name)
    return None


def summarise_history(history: list[dict[str, Any]], tokens: int, epochs: float) -> dict[str, Any]:
    """Curve summaries and throughput from ``trainer.state.log_history``.

    For each metric: its first and last logged values and, over more than one epoch, its
    mean over the first and the last epoch. With a few pairs per step the step values are
    noisy (each step sees other pairs); the epoch means compare the same pairs.
    """
    steps = [h for h in history if "loss" in h]
    end = next((h for h in reversed(history) if "train_runtime" in h), {})
    out: dict[str, Any] = {"steps": steps[-1]["step"] if steps else 0}
    epoch_of = [math.ceil(h.get("epoch", 1) - 1e-6) for h in steps]
    for key in ("loss", *METRICS):
        values = [h[key] for h in steps if key in h]
        if not values:
            continue
        out[f"first_{key}"], out[f"final_{key}"] = round(values[0], 5), round(values[-1], 5)
        if len(set(epoch_of)) > 1:
            for name, epoch in (("first_epoch_mean", epoch_of[0]), ("last_epoch_mean", epoch_of[-1])):
                in_epoch = [h[key] for h, e in zip(steps, epoch_of) if e == epoch and key in h]
                out[f"{name}_{key}"] = round(sum(in_epoch) / len(in_epoch), 5)
    runtime = end.get("train_runtime")
    if runtime:
        out["train_seconds"] = round(runtime, 1)
        out["tokens_per_second"] = round(tokens * epochs / runtime, 1)
    return out


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _save_model(trainer: Any, config: TrainConfig, model_dir: Path, is_main: bool) -> None:
    """Write a plain HF model (LoRA merged) + tokenizer to ``model_dir`` via a temp dir and a rename."""
    tmp = model_dir.with_name(model_dir.name + ".partial")
    if is_main:
        # Only the main process: another rank clearing it could delete files the main one is writing.
        shutil.rmtree(tmp, ignore_errors=True)
    if config.lora.enabled:
        adapter = model_dir.with_name(model_dir.name + "-adapter")
        trainer.save_model(str(adapter))  # the adapter alone, for users who want it
        if not is_main:
            return
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(tmp))
        trainer.processing_class.save_pretrained(str(tmp))
    else:
        trainer.save_model(str(tmp))  # every rank joins: ZeRO-3 gathers the shards here
        if not is_main:
            return
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)


@dataclass(frozen=True)
class _Inputs:
    """The rows to train on and the file they came from."""

    file: Path
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class _Setup:
    """The trainer's config and the precision it trains in, for this process."""

    args: Any  # the TRL config (a transformers.TrainingArguments)
    compute: Any  # the torch dtype the model computes in
    weights: Any  # the torch dtype its weights load in (`sao.train.trainers.weights_dtype`)

    @property
    def is_main(self) -> bool:
        return self.args.process_index == 0

    def precision(self) -> dict[str, str]:
        return {"compute_dtype": _name(self.compute), "weights_dtype": _name(self.weights)}


def _read_inputs(pairs: str | Path) -> _Inputs:
    pairs_file = resolve_pairs_file(pairs)
    return _Inputs(pairs_file, load_rows(pairs_file))


def _set_up(config: TrainConfig, out_dir: Path, progress: bool) -> _Setup:
    """The trainer's config and precision; ConfigError when the launched processes formed no single group.

    This comes before the model loads and before any question of who is the main process:
    under DeepSpeed ZeRO-3 the model must be loaded after the trainer's config, and building
    that config sets up the process group (a bare `accelerate.PartialState()` asked earlier saw
    no group on CPUs, and every rank opened the run directory as the main one: a race on
    manifest.json).
    """
    from sao.models import pick_device, pick_dtype
    from sao.train.trainers import launched_world_size, sharding_engine, training_arguments, weights_dtype

    # What the model computes in, resolved for the device that trains (a GPU when there is one),
    # though the model loads on the CPU and the trainer moves it.
    compute = pick_dtype(config.dtype, pick_device("auto"))
    args = training_arguments(config, out_dir / "checkpoints", compute=compute, progress=progress)
    weights = weights_dtype(compute, lora=config.lora.enabled, sharded=sharding_engine(args) is not None)
    launched = launched_world_size()
    if args.world_size != launched:
        raise ConfigError(
            f"{launched} processes were launched but they formed a group of {args.world_size}; "
            "each would train alone and overwrite the others' output"
        )
    return _Setup(args, compute, weights)


def _open_store(config: TrainConfig, inputs: _Inputs, info: Any, out_dir: Path, setup: _Setup, force: bool) -> RunStore:
    """The run directory. Under `accelerate launch` every process runs `run_train`: only the main
    one writes the run directory, and the others read its manifest once it has been written."""
    run_config = {"train": config.effective(), "pairs": str(inputs.file), "pairs_digest": _digest(inputs.file)}
    with setup.args.main_process_first(local=False, desc="opening the run directory"):
        if setup.is_main:
            return RunStore.open(out_dir, run_config, info, force=force)
        return RunStore.load(out_dir)


def _load_models(config: TrainConfig, model: str, setup: _Setup, trust_remote_code: bool) -> tuple[Any, Any]:
    """The loaded policy (model + tokenizer), and its frozen reference where the trainer needs one, else None.

    The reference is the starting weights (in `sao run`, the previous iterate): a copy of the
    policy before any step, in its dtype, frozen by the trainer. Copied, not loaded again: a
    second load would read and hash the weights a second time.
    """
    from sao.models import is_vision_model, load_model, load_vision_model
    from sao.train.trainers import needs_reference

    load = load_vision_model if is_vision_model(model) else load_model
    loaded = load(model, device="cpu", dtype=_name(setup.weights), trust_remote_code=trust_remote_code)
    if config.chat_template is not None:
        # Set before tokenizing, so that the rows are rendered with it, and saved with the tokenizer.
        loaded.tokenizer.chat_template = config.chat_template
    reference = copy.deepcopy(loaded.model) if needs_reference(config) else None
    return loaded, reference


VISION_TRAINERS = ("dpo", "ipo", "robust_dpo")  # DPOTrainer's losses: its collator takes images


def _tokenize(config: TrainConfig, loaded: Any, inputs: _Inputs) -> Tokenized:
    """The trainer's examples; InputError when every row was dropped. Pairs with images or video frames need a
    vision-language model and a DPOTrainer loss, and are left for TRL's vision collator to tokenize."""
    from sao.train.tokenize import has_media, vision_preference_examples

    if has_media(inputs.rows):
        if loaded.processor is None:
            raise InputError(f"{inputs.file}: the pairs hold images or video frames but the model is a text model")
        if config.trainer not in VISION_TRAINERS:
            raise ConfigError(
                f"train.trainer: pairs with images train with {', '.join(VISION_TRAINERS)}, not {config.trainer}"
            )
        return vision_preference_examples(loaded.processor, inputs.rows)
    tokenized = TRAINERS[config.trainer].examples(loaded.tokenizer, inputs.rows, config)
    if not tokenized.examples:
        limit = "train.grpo.max_prompt_length" if config.trainer == "grpo" else "train.max_length"
        raise InputError(f"{inputs.file}: every row was dropped ({tokenized.dropped}); raise {limit}")
    return tokenized


def _train_with_resume(trainer: Any, args: Any) -> Path | None:
    """Train, resuming from the last complete checkpoint; returns that checkpoint, or None."""
    last = last_complete_checkpoint(Path(args.output_dir))
    if last:
        log.info("train: resuming from %s", last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    return last


def _stats(
    config: TrainConfig, tokenized: Tokenized, trainer: Any, setup: _Setup, resumed_from: Path | None, started: float
) -> dict[str, Any]:
    """The train stage's stats: data, curve summaries, throughput, processes, precision, time and memory."""
    return {
        "examples": len(tokenized.examples),
        "dropped": tokenized.dropped,
        "truncated": tokenized.truncated,
        "tokens_per_epoch": tokenized.tokens,
        **summarise_history(trainer.state.log_history, tokenized.tokens, config.epochs),
        "resumed_from": resumed_from.name if resumed_from else None,
        "processes": setup.args.world_size,
        **setup.precision(),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def _drop_checkpoints(args: Any) -> None:
    """Delete the resume points once the model is saved and the stage done: weights + optimiser
    state are about 4x the model's size. TensorBoard logs stay."""
    for checkpoint in Path(args.output_dir).glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def _write_outputs(
    trainer: Any,
    config: TrainConfig,
    model: str,
    inputs: _Inputs,
    out_dir: Path,
    model_dir: Path,
    stats: dict[str, Any],
) -> None:
    """history.jsonl, the curves (also beside the model) and the model card."""
    from sao.train.card import write_card
    from sao.train.curves import plot_curves

    history = trainer.state.log_history
    with (out_dir / "history.jsonl").open("w") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)
    png = plot_curves(history, out_dir / "training.png")
    if png:
        shutil.copy(png, model_dir / png.name)
    write_card(model_dir, base_model=model, config=config, pairs_file=inputs.file, rows=inputs.rows, stats=stats)


def run_train(
    config: TrainConfig,
    model: str,
    pairs: str | Path,
    out_dir: str | Path,
    *,
    model_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    trust_remote_code: bool = False,
) -> TrainResult:
    """Train ``model`` on ``pairs`` (or SFT rows) into ``out_dir``; the model goes to ``model_dir``.

    ``out_dir`` holds the manifest, ``checkpoints/`` (a killed run resumes from the last
    one), ``history.jsonl`` and ``training.png``. ``model_dir`` (default ``out_dir/model``)
    receives the trained model, its tokenizer and a model card. A finished run is not redone.
    """
    import datasets

    from sao.models import model_info
    from sao.train.trainers import build_trainer

    out_dir = Path(out_dir)
    model_dir = Path(model_dir) if model_dir else out_dir / "model"
    inputs = _read_inputs(pairs)
    info = model_info(model)
    setup = _set_up(config, out_dir, progress)
    store = _open_store(config, inputs, info, out_dir, setup, force)
    if store.is_done(STAGE) and (model_dir / "config.json").is_file():
        log.info("train: done already (%s)", model_dir)
        return TrainResult(model_dir, store.manifest.stages[STAGE].stats, store, setup.is_main)

    started = time.perf_counter()
    loaded, reference = _load_models(config, model, setup, trust_remote_code)
    tokenized = _tokenize(config, loaded, inputs)
    dataset = datasets.Dataset.from_list(tokenized.examples)
    if "images" in dataset.column_names:  # frame paths, opened by datasets as the collator reads each batch
        dataset = dataset.cast_column("images", datasets.Sequence(datasets.Image()))
    processing = loaded.processor if loaded.processor is not None else loaded.tokenizer
    trainer = build_trainer(config, loaded.model, processing, dataset, setup.args, ref_model=reference)
    resumed_from = _train_with_resume(trainer, setup.args)
    _save_model(trainer, config, model_dir, setup.is_main)
    if not setup.is_main:
        return TrainResult(model_dir, {}, store, is_main=False)

    stats = _stats(config, tokenized, trainer, setup, resumed_from, started)
    _write_outputs(trainer, config, model, inputs, out_dir, model_dir, stats)
    store.stage_done(STAGE, rows=len(tokenized.examples), stats=stats)
    _drop_checkpoints(setup.args)
    return TrainResult(model_dir, stats, store)
