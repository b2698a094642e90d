"""The Python API as the README shows it: its example runs here verbatim (generation by a scripted
engine, so that the real default model only trains)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sao
from sao.errors import ConfigError
from scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, flags=re.S)
    assert match, "README.md lost its <!-- api-example --> block"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sao.engine.lazy.build_engine", lambda *args, **kwargs: ScriptedEngine())
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "['sao']"
    assert printed[1] == "('personas', 'prompts', 'responses', 'judgements', 'pairs')"
    assert re.fullmatch(r"[1-9]\d* pairs in runs/api-synth/pairs.jsonl", printed[2])
    assert (tmp_path / "runs" / "api-run" / "iter-1" / "model" / "config.json").is_file()
    assert printed[3].startswith("trained model: runs/api-run/iter-1/model")


def test_the_api_takes_a_dict_and_reports_bad_fields_as_the_cli_does(tmp_path) -> None:
    config = sao.load_run_config({"synth": {"num_prompts": 3}}, ["train.epochs=2"])
    assert config.synth.num_prompts == 3 and config.train.epochs == 2
    with pytest.raises(ConfigError, match=r"^synth\.num_promts: Extra inputs are not permitted$"):
        sao.run({"synth": {"num_promts": 3}}, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was made
    with pytest.raises(AttributeError):
        sao.no_such_function  # noqa: B018
