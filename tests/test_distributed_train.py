"""Multi-process training: `accelerate launch` with the shipped configs.

CI runs a real 2-process data-parallel (gloo, CPU) SimPO run of `python -m sao train` on the
tiny model, with recipes/accelerate/ddp-cpu.yaml, and checks that it is one training run over
two processes, not two runs racing: the world size, one model written once, the same weights
as a single process with the same global batch, a rerun that is skipped on both ranks, and a
run killed after its first checkpoint that resumes on both ranks to the same weights (all in
float32), and a bf16 mixed-precision run over fp32 master weights. It also
runs the shipped fsdp.yaml (FSDP2) on 2 CPU processes. ZeRO-3 needs DeepSpeed, an optional
extra not installed here: its config is only checked to be what `accelerate launch` accepts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import PAIRS
from sao.recipe import validate
from sao.train.config import TrainConfig
from sao.train.run import run_train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate"
DDP_CPU = CONFIGS / "ddp-cpu.yaml"
TIMEOUT = 240  # seconds per launch; one takes ~12 s on 2 cores

# 2 pairs per process per step: with 2 processes, 8 pairs are 2 optimiser steps (4 alone).
# float32 on every machine: the runs below are compared to 1e-5, and in bf16 a gradient near 0
# can change sign with the summation order (2 + 2 pairs or 4) and move a weight by lr the other
# way. `test_ddp_cpu_trains_in_bf16_mixed_precision` covers bf16.
TRAIN = {
    "trainer": "simpo",
    "dtype": "float32",
    "learning_rate": 1e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "epochs": 1,
    "batch_size": 2,
    "max_length": 128,
    "save_steps": 1,
    "report_to": "none",
}
PROCESSES = 2
STEPS = len(PAIRS) // (TRAIN["batch_size"] * PROCESSES)

# Run by `accelerate launch` instead of `-m sao`: `sao train`, with every rank exiting at once
# after the first checkpoint is whole (as a kill would leave it), for the resume test.
KILL_AFTER_FIRST_CHECKPOINT = """
import os
import torch.distributed as dist
import transformers

save = transformers.Trainer._save_checkpoint

def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    dist.barrier()  # every rank has written its part of checkpoint-1
    os._exit(9)

transformers.Trainer._save_checkpoint = save_then_die

from sao.cli import main

main()
"""


def launch(config: list[str], train_args: list[str], cwd: Path, script: list[str] | None = None):
    """``accelerate launch CONFIG -m sao train ...`` (or a script) in a subprocess."""
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", *config]
    cmd += [*(script or ["-m", "sao"]), "train", *train_args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train": TRAIN}))
    return {"root": root, "pairs": pairs, "recipe": recipe, "model": tiny_model_dir}


def train_args(work: dict[str, Path], out: Path) -> list[str]:
    files = ["--recipe", str(work["recipe"]), "--pairs", str(work["pairs"])]
    return [*files, "--model", str(work["model"]), "--out", str(out)]


@pytest.fixture(scope="module")
def ddp_run(work) -> tuple[Path, subprocess.CompletedProcess, float]:
    out = work["root"] / "ddp"
    started = time.perf_counter()
    proc = ok(launch(["--config_file", str(DDP_CPU)], train_args(work, out), work["root"]))
    return out, proc, time.perf_counter() - started


@pytest.fixture(scope="module")
def single_weights(work) -> dict[str, torch.Tensor]:
    """One process, 4 pairs a step: the same global batch as 2 processes x 2 pairs."""
    config = validate(TrainConfig, {**TRAIN, "batch_size": TRAIN["batch_size"] * PROCESSES})
    result = run_train(config, str(work["model"]), work["pairs"], work["root"] / "single", progress=False)
    assert result.metrics["steps"] == STEPS and result.metrics["processes"] == 1
    return load_file(str(result.model_dir / "model.safetensors"))


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], start: dict[str, torch.Tensor]):
    assert set(got) == set(want) == set(start)
    moved = max((want[k] - start[k]).abs().max().item() for k in start)
    gap = max((got[k] - want[k]).abs().max().item() for k in start)
    # Training moved the weights by ~lr (Adam); the two runs differ only by float summation order.
    assert moved > 1e-4 and gap < 1e-5, (moved, gap)


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ddp_cpu_simpo_is_one_run_over_two_processes(ddp_run, work, single_weights):
    out, proc, seconds = ddp_run
    print(f"2-process DDP launch: {seconds:.1f} s")
    stats = json.loads((out / "manifest.json").read_text())["stages"]["train"]
    assert stats["status"] == "done"
    stats = stats["stats"]
    # The run had world size 2: each step took 2 pairs on each of 2 processes.
    assert stats["processes"] == PROCESSES and stats["examples"] == len(PAIRS) and stats["steps"] == STEPS
    steps = [h for h in history(out) if "loss" in h]
    assert [h["step"] for h in steps] == list(range(1, STEPS + 1))
    assert [h["epoch"] for h in steps] == [(i + 1) / STEPS for i in range(STEPS)]
    for h in steps:
        assert all(math.isfinite(h[k]) for k in ("loss", "rewards/margins", "logps/chosen", "logps/rejected"))
    assert stats["final_loss"] < stats["first_loss"]
    # Metrics are gathered over both ranks: an accuracy of 1/4 needs 4 pairs in the step.
    assert all(h["rewards/accuracies"] * 4 == round(h["rewards/accuracies"] * 4) for h in steps)

    # One model, written once, by the main process: no temp directory, adapter or stray copies.
    model_dir = out / "model"
    outputs = ["checkpoints", "history.jsonl", "manifest.json", "model", "training.png"]
    assert sorted(p.name for p in out.iterdir()) == outputs
    assert not list((out / "checkpoints").glob("checkpoint-*"))
    assert [p.name for p in model_dir.glob("*.safetensors")] == ["model.safetensors"]
    card = (model_dir / "README.md").read_text()
    assert card.count("sao simpo") == 1
    assert f"global batch {TRAIN['batch_size'] * PROCESSES} pairs over {PROCESSES} process(es)" in card
    assert proc.stdout.count("model in ") == 1  # one summary line, from the main process

    # Data parallelism computes the single-process update with the same global batch (and
    # both differ from the starting weights): the ranks agreed on the data order and split it.
    start = load_file(str(work["model"] / "model.safetensors"))
    assert_same_weights(load_file(str(model_dir / "model.safetensors")), single_weights, start)

    # A rerun is skipped on both ranks, and nothing is rewritten.
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    again = ok(launch(["--config_file", str(DDP_CPU)], train_args(work, out), work["root"]))
    assert again.stderr.count("train: done already") == PROCESSES
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_ddp_cpu_trains_in_bf16_mixed_precision(work):
    """bf16 on CPUs (native or not) over 2 processes: autocast in bf16 over fp32 master weights."""
    recipe = work["root"] / "recipe-bf16.yaml"
    recipe.write_text(yaml.safe_dump({"train": {**TRAIN, "dtype": "bfloat16"}}))
    out = work["root"] / "ddp-bf16"
    args = train_args(work, out)
    args[args.index("--recipe") + 1] = str(recipe)
    ok(launch(["--config_file", str(DDP_CPU)], args, work["root"]))
    stats = json.loads((out / "manifest.json").read_text())["stages"]["train"]["stats"]
    assert stats["processes"] == PROCESSES and stats["steps"] == STEPS
    assert stats["compute_dtype"] == "bfloat16" and stats["weights_dtype"] == "float32"
    assert math.isfinite(stats["final_loss"]) and stats["final_loss"] < stats["first_loss"]
    trained = load_file(str(out / "model" / "model.safetensors"))
    start = load_file(str(work["model"] / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in trained.values())
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-4


@pytest.mark.slow
def test_ddp_cpu_run_killed_after_a_checkpoint_resumes_on_both_ranks(ddp_run, work, tmp_path):
    out = work["root"] / "killed"
    script = tmp_path / "kill_after_first_checkpoint.py"
    script.write_text(KILL_AFTER_FIRST_CHECKPOINT)
    killed = launch(["--config_file", str(DDP_CPU)], train_args(work, out), work["root"], script=[str(script)])
    assert killed.returncode != 0
    checkpoint = out / "checkpoints" / "checkpoint-1"
    assert (checkpoint / "trainer_state.json").is_file() and not (out / "model").exists()
    # Each rank saved its own random state; the main one alone wrote weights and optimiser state.
    assert sorted(p.name for p in checkpoint.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert "train" not in json.loads((out / "manifest.json").read_text())["stages"]  # not done

    ok(launch(["--config_file", str(DDP_CPU)], train_args(work, out), work["root"]))
    stats = json.loads((out / "manifest.json").read_text())["stages"]["train"]["stats"]
    assert stats["resumed_from"] == "checkpoint-1" and stats["processes"] == PROCESSES
    assert [h["step"] for h in history(out) if "loss" in h] == list(range(1, STEPS + 1))
    uninterrupted = load_file(str(ddp_run[0] / "model" / "model.safetensors"))
    start = load_file(str(work["model"] / "model.safetensors"))
    assert_same_weights(load_file(str(out / "model" / "model.safetensors")), uninterrupted, start)


@pytest.mark.slow
def test_shipped_fsdp_config_trains_on_two_cpu_processes(work, single_weights):
    """fsdp.yaml (FSDP2, full state dict) with its 4 GPUs and bf16 replaced by 2 CPU processes in fp32."""
    out = work["root"] / "fsdp"
    config = ["--config_file", str(CONFIGS / "fsdp.yaml"), "--num_processes", str(PROCESSES)]
    config += ["--mixed_precision", "no", "--main_process_port", "0"]
    ok(launch(config, train_args(work, out), work["root"]))
    stats = json.loads((out / "manifest.json").read_text())["stages"]["train"]["stats"]
    assert stats["processes"] == PROCESSES and stats["steps"] == STEPS
    # The sharded model was gathered into one plain HF checkpoint equal to the single-process one.
    start = load_file(str(work["model"] / "model.safetensors"))
    assert_same_weights(load_file(str(out / "model" / "model.safetensors")), single_weights, start)


# --- the shipped configs, as `accelerate launch` reads them (cheap: nothing is started) -------


def launcher_view(name: str):
    """What `accelerate launch --config_file recipes/accelerate/NAME.yaml -m sao train` would do:
    the parsed config, the launcher's arguments and the environment it would give the processes."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = CONFIGS / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "sao", "train"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's launch_command does before the DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return config, args, env


@pytest.mark.parametrize("name", ["ddp", "ddp-cpu", "zero3", "fsdp"])
def test_shipped_accelerate_configs_are_what_accelerate_launch_accepts(name):
    config, args, env = launcher_view(name)
    # Several processes, started by torchrun (the multi-GPU, DeepSpeed or FSDP launcher): not
    # the simple launcher, which starts one process whatever num_processes says.
    assert args.num_processes >= 2 and (args.multi_gpu or args.use_deepspeed or args.use_fsdp)
    assert config.num_machines == 1
    header = (CONFIGS / f"{name}.yaml").read_text()
    assert f"accelerate launch --config_file recipes/accelerate/{name}.yaml -m sao train" in header
    if name == "ddp-cpu":
        assert config.mixed_precision == "no" and args.num_processes == PROCESSES
    else:
        assert config.mixed_precision == "bf16" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_zero3_config_is_coherent():
    config, args, env = launcher_view("zero3")
    ds = config.deepspeed_config
    assert config.distributed_type == "DEEPSPEED" and args.use_deepspeed and not args.use_fsdp
    assert ds["zero_stage"] == 3 and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert ds["offload_optimizer_device"] in ("none", "cpu", "nvme")
    assert ds["offload_param_device"] in ("none", "cpu", "nvme")
    # Sharded while loading (sao builds the trainer config before the model), and gathered into a
    # plain 16-bit model at the end, which the engine and the next iteration load.
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    assert "deepspeed_config_file" not in ds  # the settings are inline, not in a second file


def test_fsdp_config_is_coherent():
    config, args, env = launcher_view("fsdp")
    assert config.distributed_type == "FSDP" and args.use_fsdp
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # the saved model is a plain HF checkpoint
    # Loading on rank 0 only needs the other ranks to receive its weights.
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true" and env["FSDP_SYNC_MODULE_STATES"] == "true"
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"  # train.gradient_checkpointing does it
