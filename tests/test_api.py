"""The Python API as the README shows it: its example runs here verbatim (generation by a scripted
engine, so that the real default model only trains)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import sao
from sao.errors import ConfigError
from scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[1]


def example(doc: str, marker: str) -> str:
    """The python block after ``<!-- marker -->`` in ``doc``."""
    text = (REPO / doc).read_text()
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, flags=re.S)
    assert match, f"{doc} lost its <!-- {marker} --> block"
    return match.group(1)


def run_example(doc: str, marker: str, cwd: Path, monkeypatch) -> None:
    """Run a documented example verbatim in ``cwd``, with generation by `ScriptedEngine`."""
    (cwd / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(cwd)
    monkeypatch.setattr("sao.engine.lazy.build_engine", lambda *args, **kwargs: ScriptedEngine())
    exec(compile(example(doc, marker), doc, "exec"), {})


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch, capsys) -> None:
    run_example("README.md", "api-example", tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    # The README's comment beside the call must show what it prints.
    documented = re.search(r"print\(sao\.methods\.names\(\)\)\s+# (.*)", (REPO / "README.md").read_text())
    assert printed[0] == "['sao', 'dno', 'self_align', 'sar', 'videosavi']" == documented.group(1)
    assert printed[1] == "('personas', 'prompts', 'responses', 'judgements', 'pairs')"
    assert re.fullmatch(r"[1-9]\d* pairs in runs/api-synth/pairs.jsonl", printed[2])
    assert (tmp_path / "runs" / "api-run" / "iter-1" / "model" / "config.json").is_file()
    # The trainer logs its steps to stdout between the example's own lines.
    assert printed[-1].startswith("trained model: runs/api-run/iter-1/model report: runs/api-run/iter-1/report.md")


def test_the_sao_doc_api_example_runs(tmp_path, monkeypatch, capsys) -> None:
    run_example("docs/synth.md", "synth-api-example", tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["simpo pairs", "['personas', 'prompts', 'responses', 'judgements']"]
    rows = [line for line in (tmp_path / "runs" / "synth-api" / "responses.jsonl").read_text().splitlines()]
    assert rows and all(len(json.loads(row)["samples"]) == 3 for row in rows)  # the dict's settings were used


def test_the_dno_doc_api_example_runs(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "tests").symlink_to(REPO / "tests")
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks")
    run_example("docs/methods/dno.md", "dno-api-example", tmp_path, monkeypatch)
    assert capsys.readouterr().out.splitlines() == [
        "('prompts', 'samples', 'scores', 'pairs', 'training')",
        "dpo 0.1 3",
    ]


def test_the_self_align_doc_api_example_runs(tmp_path, monkeypatch, capsys) -> None:
    run_example("docs/methods/self-align.md", "self-align-api-example", tmp_path, monkeypatch)
    assert capsys.readouterr().out.splitlines() == [
        "('topics', 'questions', 'tasks', 'prompts', 'answers')",
        "sft 16 {'Sorry': -100.0}",
    ]


def test_the_api_takes_a_dict_and_reports_bad_fields_as_the_cli_does(tmp_path) -> None:
    config = sao.load_run_config({"synth": {"num_prompts": 3}}, ["train.epochs=2"])
    assert config.synth.num_prompts == 3 and config.train.epochs == 2
    with pytest.raises(ConfigError, match=r"^synth\.num_promts: Extra inputs are not permitted$"):
        sao.run({"synth": {"num_promts": 3}}, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was made
    with pytest.raises(AttributeError):
        sao.no_such_function  # noqa: B018
