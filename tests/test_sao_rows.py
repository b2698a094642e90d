"""SAO's stage rows are pinned: `sao run recipes/quickstart-cpu.yaml` makes the rows it made before issue 15.

The rows were recorded by tests/data/sao_rows/record.py, run on main at commit 96807e0 (the code
before methods became components), with `ScriptedEngine`, whose outputs depend on nothing but its inputs. So
any difference is a change in what sao asks the model, with which seeds, and what it keeps.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sao.cli import app
from scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).parent / "data" / "sao_rows" / "quickstart.json"
# Small enough to train in seconds on the tiny model; the fields the test sets exist in both the
# old recipe shape and the new one.
OVERRIDES = [
    "iterations=2",
    "synth.num_prompts=8",
    "train.epochs=1",
    "train.report_to=none",
    "report.max_new_tokens=16",
]


def run_quickstart(out: Path, model: Path, engine: ScriptedEngine, monkeypatch) -> None:
    monkeypatch.setattr("sao.engine.lazy.build_engine", lambda *args, **kwargs: engine)
    args = ["run", str(REPO / "recipes" / "quickstart-cpu.yaml"), "--out", str(out), "--set", f"model={model}"]
    for item in OVERRIDES:
        args += ["--set", item]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def stage_rows(run_dir: Path, model: Path) -> dict[str, list[dict]]:
    """Every stage file of every iteration (synthesis and report samples), by path in the run directory.

    Pairs record the model that made them; its temporary path is replaced by a placeholder.
    """
    rows = {}
    for path in sorted(p for p in run_dir.glob("iter-*/*/*.jsonl") if p.parent.name != "train"):
        text = path.read_text().replace(str(run_dir), "<run>").replace(str(model), "<model>")
        rows[str(path.relative_to(run_dir))] = [json.loads(line) for line in text.splitlines()]
    return rows


def test_quickstart_rows_are_those_recorded_before_the_reshaping(tmp_path, tiny_model_dir, monkeypatch):
    run_quickstart(tmp_path / "run", tiny_model_dir, ScriptedEngine(), monkeypatch)
    rows = stage_rows(tmp_path / "run", tiny_model_dir)
    recorded = json.loads(RECORDED.read_text())
    assert sorted(rows) == sorted(recorded)
    for path, expected in recorded.items():
        assert rows[path] == expected, path
    pairs = [row for path, file_rows in rows.items() if path.endswith("pairs.jsonl") for row in file_rows]
    assert len(pairs) >= 2  # the pins cover pairs, not only dropped rows
