"""``method: sar`` end to end: held-out and training tasks, GRPO on them, and the held-out accuracy of the start
and the trained model. A tiny random model runs the fast test; the slow one runs recipes/sar-quickstart-cpu.yaml
on the default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sao
from sao.methods.sar.config import SARConfig
from sao.methods.sar.stages import split_tasks
from sao.recipe import load_yaml, validate
from sao.rewards.verifiable import ANSWER_INSTRUCTION

ROOT = Path(__file__).resolve().parent.parent


def test_held_out_and_training_tasks_are_disjoint_and_fixed():
    section = validate(SARConfig, {"prompts_per_iteration": 30, "held_out": 40})
    held, first = split_tasks(section, 1)
    again, second = split_tasks(section, 2)
    assert [t.id for t in held] == [t.id for t in again]  # the same held-out set in every iteration
    assert len(held) == 40 and 0 < len(first) <= 30 and 0 < len(second) <= 30
    asked = {t.question for t in held}
    assert not asked & {t.question for t in first} and not asked & {t.question for t in second}
    assert {t.id for t in first}.isdisjoint(t.id for t in second)


def test_a_file_source_is_dealt_into_held_out_and_one_slice_per_iteration(tmp_path):
    rows = tmp_path / "tasks.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(10))
    )
    section = validate(
        SARConfig, {"tasks": {"kind": "jsonl", "path": str(rows)}, "prompts_per_iteration": 3, "held_out": 4}
    )
    held, first = split_tasks(section, 1)
    _, second = split_tasks(section, 2)
    ids = [t.id for t in held + first + second]
    assert len(held) == 4 and len(first) == len(second) == 3 and len(set(ids)) == 10


def _recipe(model: Path) -> dict:
    return {
        "method": "sar",
        "model": str(model),
        "synth": {
            "tasks": {"kind": "arithmetic", "steps": 1, "max_operand": 9},
            "prompts_per_iteration": 2,
            "held_out": 3,
            "eval": {"max_new_tokens": 8},
        },
        "train": {
            "trainer": "grpo",
            "batch_size": 4,
            "report_to": "none",
            "gradient_checkpointing": False,
            "grpo": {"num_generations": 2, "max_completion_length": 8},
        },
        "report": {"prompts": ["Say hello."], "max_new_tokens": 8},
    }


def test_a_sar_run_trains_with_both_rewards_and_scores_the_held_out_tasks(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    iterations = sao.run(_recipe(tiny_model_dir), out, progress=False)
    synth = out / "iter-1" / "synth"
    tasks = [json.loads(line) for line in (synth / "tasks.jsonl").read_text().splitlines()]
    assert len(tasks) == 2
    assert all(
        t["prompt"][-1]["content"].endswith(ANSWER_INSTRUCTION) and t["answer"].lstrip("-").isdigit() for t in tasks
    )
    stats = iterations[-1].train_stats
    assert "final_rewards/verifiable/mean" in stats and "final_rewards/sar/mean" in stats
    summary = json.loads((out / "sar" / "verifiable.json").read_text())
    assert [c["name"] for c in summary["candidates"]] == ["start", "iter-1"]
    assert all(c["n"] == 3 for c in summary["candidates"])
    assert (out / "sar" / "verifiable.png").is_file()
    assert "Held-out accuracy (3 tasks)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_the_quickstart_recipe_runs_end_to_end(tmp_path):
    recipe = load_yaml(ROOT / "recipes" / "sar-quickstart-cpu.yaml")
    out = tmp_path / "run"
    iterations = sao.run(recipe, out, progress=False)
    stats = iterations[-1].train_stats
    assert stats["steps"] >= 1
    for key in ("rewards/verifiable/mean", "rewards/sar/mean", "completions/mean_length"):
        assert f"final_{key}" in stats, key
    assert -1.0 <= stats["final_rewards/sar/mean"] < 1.0
    summary = json.loads((out / "sar" / "verifiable.json").read_text())
    assert [c["name"] for c in summary["candidates"]] == ["start", "iter-1"]
    assert all(c["n"] == 24 and 0 <= c["correct"] <= 24 and c["mean_tokens"] > 0 for c in summary["candidates"])
    assert (out / "iter-1" / "train" / "training.png").is_file()
