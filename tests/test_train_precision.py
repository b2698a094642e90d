"""Training precision (issue 14): bf16 on a CPU trains, and half-precision training keeps fp32 master weights."""

from __future__ import annotations

import platform
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import sao.models
from conftest import PAIRS
from sao.models import pick_dtype
from sao.recipe import validate
from sao.train.config import TrainConfig
from sao.train.run import run_train
from sao.train.trainers import sharding_engine, weights_dtype

LR = 1e-6  # the paper's learning rate


def one_step(**overrides) -> TrainConfig:
    """One optimiser step over all 8 pairs at the paper's learning rate, no schedule."""
    values = dict(
        learning_rate=LR,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        epochs=1,
        batch_size=len(PAIRS),
        report_to="none",
        gradient_checkpointing=False,
        max_length=128,
    )
    return validate(TrainConfig, {**values, **overrides})


def bf16_unmoved(weights: torch.Tensor, step: float) -> torch.Tensor:
    """Where a bf16 copy of ``weights`` stays the same after adding or subtracting ``step``."""
    w = weights.to(torch.bfloat16)
    return ((w + step) == w) & ((w - step) == w)


def test_auto_dtype_on_a_bf16_cpu_trains_with_fp32_master_weights(tiny_model_dir, pairs_file, tmp_path, monkeypatch):
    """On a CPU with native bf16, `dtype: auto` computes in bf16, and one step at lr 1e-6 moves the weights.

    Before issue 14 nothing trained there (TrainingArguments refused bf16 without use_cpu), and
    with that fixed alone the weights were bf16, where AdamW's first step (about lr per weight)
    rounds to no change almost everywhere.
    """
    monkeypatch.setattr(sao.models, "bf16_supported", lambda device: True)  # as on an AVX512-BF16 / AMX CPU
    result = run_train(one_step(), str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    stats = result.metrics
    assert stats["steps"] == 1 and stats["compute_dtype"] == "bfloat16" and stats["weights_dtype"] == "float32"

    start = load_file(str(tiny_model_dir / "model.safetensors"))
    trained = load_file(str(result.model_dir / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"  # every entry gets a gradient from every token
    before, after = start[name], trained[name]
    unmoved = bf16_unmoved(before, LR)
    assert unmoved.float().mean() > 0.9  # bf16 weights would barely have changed...
    moved = (after != before.to(after.dtype))[unmoved].float().mean()
    assert moved > 0.9, f"only {moved:.1%} of the weights moved"  # ...the fp32 masters did
    assert after.dtype == torch.float32  # and were saved as they are
    # Adam's first step is lr x sign(gradient) wherever the gradient is well above its eps.
    step = (after - before).abs()[unmoved]
    assert step.median().item() == pytest.approx(LR, rel=0.05)


def test_lora_trains_in_bf16_on_the_cpu(tiny_model_dir, pairs_file, tmp_path):
    """LoRA keeps its frozen base in the compute dtype; an explicit bfloat16 trains on any CPU."""
    config = one_step(dtype="bfloat16", learning_rate=1e-3, lora={"enabled": True, "r": 4, "alpha": 8})
    result = run_train(config, str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    assert result.metrics["compute_dtype"] == "bfloat16" and result.metrics["weights_dtype"] == "bfloat16"
    assert torch.isfinite(torch.tensor(result.metrics["final_loss"]))


@pytest.mark.parametrize(
    "compute, lora, sharded, expected",
    [
        (torch.float32, False, False, torch.float32),
        (torch.bfloat16, False, False, torch.float32),  # one GPU or DDP, full fine-tuning: fp32 masters
        (torch.float16, False, False, torch.float32),  # fp16 AMP's gradient scaler needs fp32 weights too
        (torch.bfloat16, True, False, torch.bfloat16),  # a frozen LoRA base
        (torch.bfloat16, False, True, torch.bfloat16),  # ZeRO / FSDP keep the fp32 masters themselves
        (torch.float32, True, True, torch.float32),
    ],
)
def test_weights_dtype(compute, lora, sharded, expected):
    assert weights_dtype(compute, lora=lora, sharded=sharded) == expected


def test_sharding_engine_from_arguments_or_accelerate_launch(monkeypatch):
    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(name, raising=False)
    plain = SimpleNamespace(deepspeed=None, deepspeed_plugin=None, fsdp=False)
    assert sharding_engine(plain) is None
    assert sharding_engine(SimpleNamespace(deepspeed="ds.json", deepspeed_plugin=None, fsdp=False)) == "deepspeed"
    assert sharding_engine(SimpleNamespace(deepspeed=None, deepspeed_plugin=None, fsdp=True)) == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --config_file fsdp.yaml` sets
    assert sharding_engine(plain) == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert sharding_engine(plain) == "deepspeed"


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not Path("/proc/cpuinfo").is_file(), reason="reads x86 flags from /proc/cpuinfo"
)
def test_auto_dtype_is_bf16_exactly_where_the_cpu_computes_it_natively():
    """bf16 with AVX512-BF16 or AMX; float32 on AVX2 and on AVX-512 CPUs without them (emulated bf16)."""
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert pick_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
