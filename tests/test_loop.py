"""`sao run`: two iterations on a tiny model, killed mid-run and resumed, against an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from sao.loop.config import validate_run
from sao.loop.run import run_loop
from sao.stage import kept
from sao.store import RunStore, read_rows


def tiny_recipe(model_dir: Path) -> dict:
    # Temperatures at 0.7: the chatty tiny model ends its turns after ~18 tokens there.
    sampled = {"temperature": 0.7, "max_new_tokens": 64}
    return {
        "model": str(model_dir),
        "iterations": 2,
        # float32 generation: bf16 matmuls round differently with the batch's shape, and the rows of the
        # killed-and-resumed run must equal the uninterrupted run's. Training keeps `dtype: auto`.
        "engine": {"batch_size": 8, "dtype": "float32"},
        "synth": {
            "num_prompts": 12,
            "personas": sampled,
            "prompts": {**sampled, "min_words": 1},
            "responses": sampled,
            "judge": {"margin": 0.0},
        },
        "train": {
            "learning_rate": 1e-4,
            "batch_size": 2,
            "max_length": 256,
            "report_to": "none",
            "gradient_checkpointing": False,
            "save_steps": 1,
        },
        "report": {"prompts": ["Say hi.", "Name a colour."], "max_new_tokens": 16},
    }


# Rows per append in both runs: a 12-prompt stage is then written in 3 chunks, so a kill can land inside it.
CHUNK_SIZE = 4


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"sao run exited ({proc.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


def _half_written(synth: Path, stage: str, previous: str) -> tuple[int, int] | None:
    """(rows written, rows due) when ``stage`` holds some but not all of its rows, else None."""
    done = read_rows(synth / f"{stage}.jsonl")
    if not done:
        return None
    due = len(kept(read_rows(synth / f"{previous}.jsonl")))
    return (len(done), due) if len(done) < due else None


def _kill_inside_stage(proc: subprocess.Popen, synth: Path, stage: str, previous: str, timeout: float = 300) -> int:
    """SIGKILL ``proc`` while ``stage`` is half written; returns how many rows it had."""
    deadline = time.monotonic() + timeout
    while (partial := _half_written(synth, stage, previous)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{synth / stage}.jsonl was never seen half written")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(read_rows(synth / f"{stage}.jsonl"))
    assert written < partial[1], f"{stage} finished before the kill landed"
    return written


def _portable(row: dict) -> dict:
    """A row without the model's path, which names the run directory (pairs record it)."""
    if "generation" in row:
        row = {**row, "generation": {k: v for k, v in row["generation"].items() if k != "model"}}
    return row


def _sao_run(recipe: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sao", "run", str(recipe), "--out", str(out), "--chunk-size", str(CHUNK_SIZE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, chatty_tiny_dir: Path):
    """The same recipe, run once without interruption (in-process)."""
    out = tmp_path_factory.mktemp("loop-reference")
    config = validate_run(tiny_recipe(chatty_tiny_dir))
    iterations = run_loop(config, out, progress=False, chunk_size=CHUNK_SIZE)
    return out, iterations


def test_two_iterations_chain_models_and_write_reports(reference) -> None:
    out, iterations = reference
    assert [it.index for it in iterations] == [1, 2]
    first, second = iterations
    assert second.model_in == str(first.model_out)  # iteration 2 starts from iteration 1's model
    assert first.synth.manifest.config["seed"] + 1 == second.synth.manifest.config["seed"]
    for it in iterations:
        # Every manifest names the engine, so a resume on another backend or dtype is refused (issue 14).
        for store in (it.synth, it.before, it.after):
            assert store.manifest.model["backend"] == "transformers" and store.manifest.model["dtype"]
        pairs = it.synth.manifest.stages["pairs"].rows
        assert pairs > 0
        assert it.train_stats["examples"] == pairs
        assert (it.model_out / "model.safetensors").is_file() and (it.model_out / "README.md").is_file()
        report = (it.root / "report.md").read_text()
        assert "## Before and after" in report and "Name a colour." in report
        assert (it.root / "train" / "training.png").is_file()
    index = (out / "report.md").read_text()
    assert "| 1 |" in index and "| 2 |" in index
    # Training changed the weights.
    before = load_file(str(first.model_out / "model.safetensors"))
    after = load_file(str(second.model_out / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path: Path, reference, chatty_tiny_dir: Path) -> None:
    ref_out, _ = reference
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(chatty_tiny_dir)))
    out = tmp_path / "run"
    # Kill once inside a half-written stage (iteration 1's responses: some rows appended, not all),
    # and once mid-training (iteration 2's second checkpoint begun, maybe half-written), then let a
    # third invocation finish.
    written = _kill_inside_stage(_sao_run(recipe, out), out / "iter-1" / "synth", "responses", "prompts")
    assert written > 0
    proc = _sao_run(recipe, out)
    _wait_for(out / "iter-2" / "train" / "checkpoints" / "checkpoint-2", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = _sao_run(recipe, out)
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output
    assert "report:" in output

    for it in ("iter-1", "iter-2"):
        for stage in ("personas", "prompts", "responses", "judgements", "pairs"):
            rows = read_rows(out / it / "synth" / f"{stage}.jsonl")
            ids = [r["id"] for r in rows]
            assert len(ids) == len(set(ids)), f"{it}/{stage}: duplicated rows"
            ref = {r["id"]: _portable(r) for r in read_rows(ref_out / it / "synth" / f"{stage}.jsonl")}
            assert {r["id"]: _portable(r) for r in rows} == ref, f"{it}/{stage}: rows differ from the uninterrupted run"
        trained = load_file(str(out / it / "model" / "model.safetensors"))
        ref_model = load_file(str(ref_out / it / "model" / "model.safetensors"))
        worst = max((trained[k] - ref_model[k]).abs().max().item() for k in trained)
        assert worst < 1e-4, f"{it}: resumed training differs from the uninterrupted run by {worst}"
    responses = RunStore.load(out / "iter-1" / "synth").manifest.stages["responses"]
    assert responses.attempts == 2  # the killed attempt is counted (its time is summed: tests/test_store.py)
    manifest = json.loads((out / "iter-2" / "train" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["stats"]["resumed_from"] is not None
