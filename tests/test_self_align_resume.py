"""SELF-ALIGN's synthesis killed (SIGKILL) inside stage 2 and resumed: no answer lost or written twice, and a
resume with other settings refused with the field named. The engine is `tests/self_align_engine.py`'s
(no model), so the test checks sao's bookkeeping, not a model's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).parent
RECIPE = {
    "method": "self_align",
    "synth": {"topics": {"rounds": 1}, "self_instruct": {"requests": 6}, "prompts": {"total": 12}},
}


def _synth(recipe: Path, out: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SA_KILL_AT_ANSWER_CALL"}
    if kill_at is not None:
        env["SA_KILL_AT_ANSWER_CALL"] = str(kill_at)
    command = [sys.executable, str(TESTS / "self_align_engine.py"), "synth", "--recipe", str(recipe), "--out", str(out)]
    command += ["--until", "answers", "--chunk-size", "2", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _stages(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["stages"]


def test_a_kill_inside_the_answer_stage_resumes_with_no_row_lost_or_repeated(tmp_path) -> None:
    recipe, out = tmp_path / "self-align.yaml", tmp_path / "synth"
    recipe.write_text(yaml.safe_dump(RECIPE))
    killed = _synth(recipe, out, kill_at=3)  # the third chunk of answers: two chunks of 2 are on disk
    assert killed.returncode == -9, killed.stderr[-2000:]
    answers = out / "answers.jsonl"
    assert len(answers.read_text().splitlines()) == 4
    assert _stages(out)["answers"]["status"] == "running"

    refused = _synth(recipe, out, "--set", "answers.temperature=0.9")
    assert refused.returncode != 0
    assert "answers.temperature" in refused.stderr.strip().splitlines()[-1]
    assert len(answers.read_text().splitlines()) == 4  # nothing was redone or lost

    resumed = _synth(recipe, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    wanted = [p["id"] for p in prompts if p["drop_reason"] is None]
    assert sorted(r["id"] for r in rows) == sorted(wanted) and len(wanted) == 12  # none lost, none twice
    stages = _stages(out)
    assert stages["answers"]["attempts"] == 2 and stages["answers"]["status"] == "done"
    assert all(stages[s]["attempts"] == 1 for s in ("topics", "questions", "tasks", "prompts"))  # not redone
    dropped = stages["answers"]["stats"]["dropped"]
    assert set(dropped) <= {"no_answer_marker", "too_short"} and sum(dropped.values()) >= 1  # counted, no crash
    assert all(r["thoughts"] for r in rows if r["drop_reason"] is None)  # kept in the rows for inspection
