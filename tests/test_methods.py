"""Methods as components: the registry, recipes validated per method, and a method that lives only in the
test suite (tests/echo_method.py) run through `sao run` for two iterations, killed and resumed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import echo_method
from sao import methods
from sao.cli import app
from sao.engine.capabilities import CapabilityError
from sao.errors import ConfigError
from sao.loop.config import validate_run

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def echo():
    methods.register(echo_method.METHOD)
    yield echo_method.METHOD
    methods.unregister("echo")


def test_registry_lists_the_methods_and_names_the_choices_for_an_unknown_one(echo) -> None:
    assert methods.names() == ["sao", "dno", "self_align", "sar", "videosavi", "echo"]
    assert methods.get("sao").stage_names == ("personas", "prompts", "responses", "judgements", "pairs")
    unknown = r"^method: 'ipo' is not a registered method \(sao, dno, self_align, sar, videosavi, echo\)$"
    with pytest.raises(ConfigError, match=unknown):
        methods.get("ipo")
    with pytest.raises(ValueError, match="registered already"):
        methods.register(echo_method.METHOD)


def test_sao_methods_prints_one_line_per_method(echo) -> None:
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["sao", "dno", "self_align", "sar", "videosavi", "echo"]
    assert "trainer sft" in lines[5] and "trainer grpo" in lines[3] and "trainer dpo" in lines[4]


def test_a_recipe_is_validated_by_its_methods_section(echo) -> None:
    config = validate_run({"method": "echo", "synth": {"rounds": 3}})
    assert type(config.synth) is echo_method.EchoSection and config.synth.rounds == 3
    assert config.train.trainer == "sft"  # the method's trainer, where the recipe names none
    with pytest.raises(ConfigError, match=r"^synth\.num_prompts: Extra inputs are not permitted$"):
        validate_run({"method": "echo", "synth": {"num_prompts": 3}})  # SAO's field, not echo's
    with pytest.raises(ConfigError, match=r"^synth\.rounds: Input should be greater than or equal to 1$"):
        validate_run({"method": "echo", "synth": {"rounds": 0}})
    with pytest.raises(
        ConfigError, match=r"^train\.trainer: 'simpo' reads rows with \{chosen, prompt, rejected\}, which method 'echo'"
    ):
        validate_run({"method": "echo", "train": {"trainer": "simpo"}})


def _recipe(tmp_path: Path, model: Path) -> Path:
    recipe = {
        "method": "echo",
        "model": str(model),
        "iterations": 2,
        "synth": {"rounds": 4, "max_new_tokens": 8},
        "train": {"epochs": 1, "batch_size": 4, "max_length": 64, "report_to": "none", "dtype": "float32"},
        "report": {"prompts": ["Say hello."], "max_new_tokens": 8},
    }
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _sao_run(recipe: Path, out: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ECHO_KILL_AT"}
    if kill_at:
        env["ECHO_KILL_AT"] = kill_at
    command = [
        sys.executable,
        str(TESTS / "echo_method.py"),
        "run",
        str(recipe),
        "--out",
        str(out),
        "--chunk-size",
        "2",
    ]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=600)


def _manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())


@pytest.mark.slow
def test_a_method_registered_in_the_tests_runs_two_iterations_killed_and_resumed(tmp_path, tiny_model_dir) -> None:
    recipe, out = _recipe(tmp_path, tiny_model_dir), tmp_path / "run"
    killed = _sao_run(recipe, out, kill_at="2:4")  # iteration 2, once 4 of its 24 answers are written
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "iter-1" / "model" / "config.json").is_file()
    answers = out / "iter-2" / "synth" / "answers.jsonl"
    assert len(answers.read_text().splitlines()) == 4

    # A resume with other settings is refused, naming them, before anything is redone.
    refused = _sao_run(recipe, out, "--set", "synth.max_new_tokens=9")
    assert refused.returncode != 0
    assert "max_new_tokens" in refused.stderr.strip().splitlines()[-1]

    resumed = _sao_run(recipe, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    ids = [row["id"] for row in rows]
    assert {row["earlier"] for row in rows} == {1}  # iteration 2 was handed iteration 1's directory, resumed too
    assert len(ids) == len(set(ids)) == 4 * len(echo_method.QUESTIONS)  # none lost, none written twice
    stages = _manifest(out / "iter-2" / "synth")["stages"]
    assert stages["answers"]["attempts"] == 2 and stages["examples"]["rows"] == len(ids)
    # Iteration 1 was done: its stages were not run again.
    assert all(s["attempts"] == 1 for s in _manifest(out / "iter-1" / "synth")["stages"].values())
    for index in (1, 2):
        train = _manifest(out / f"iter-{index}" / "train")
        assert train["config"]["train"]["trainer"] == "sft" and train["stages"]["train"]["status"] == "done"
        assert (out / f"iter-{index}" / "model" / "config.json").is_file()
        assert (out / f"iter-{index}" / "samples-after" / "generations.jsonl").is_file()
    # Iteration 2 trained from iteration 1's model: the hand-over.
    assert _manifest(out / "iter-2" / "synth")["model"]["spec"] == str(out / "iter-1" / "model")
    report = (out / "report.md").read_text()
    assert "| 1 | 24 |" in report and "| 2 | 24 |" in report


def _needing(capability: str):
    """The echo method, with its answers stage declaring that it needs ``capability``."""
    answers, examples = echo_method.METHOD.stages
    stages = (dataclasses.replace(answers, needs=frozenset({capability})), examples)
    return dataclasses.replace(echo_method.METHOD, name=f"needs-{capability}", stages=stages)


@pytest.fixture
def no_model_loads(monkeypatch):
    # Imported first, so that modules binding these names at import keep the real ones after the test.
    import sao.loop.run  # noqa: F401
    import sao.synth.pipeline  # noqa: F401

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded (or hashed) before the capability check")

    monkeypatch.setattr("sao.engine.lazy.build_engine", refuse)
    monkeypatch.setattr("sao.engine.factory.engine_model_info", refuse)
    monkeypatch.setattr("sao.models.model_info", refuse)


CAPABILITIES = ["score", "top_logprobs", "token_prompts", "raw_prompts", "multimodal"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_sao_synth_stops_before_any_model_loads_when_the_backend_lacks_a_capability(
    tmp_path, capability, no_model_loads
) -> None:
    method = methods.register(_needing(capability))
    try:
        # OpenAI chat completions: the server templates the messages and echoes no log-probs, so it has none.
        recipe = {
            "method": method.name,
            "engine": {"backend": "openai", "openai": {"api": "chat", "base_url": "http://127.0.0.1:9/v1"}},
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        result = CliRunner().invoke(app, ["synth", "--recipe", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o")])
    finally:
        methods.unregister(method.name)
    assert isinstance(result.exception, CapabilityError)  # `sao.cli.main` prints it as "sao: error: LINE"
    line = str(result.exception)
    assert "\n" not in line and line.startswith("engine backend 'openai (api: chat)' lacks " + capability)
    assert f"method 'needs-{capability}' (stage 'answers')" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("capability", "backend"), [("ngram_penalty", "vllm"), ("multimodal", "llamacpp")])
def test_sao_run_stops_before_any_model_loads_when_the_backend_lacks_a_capability(
    tmp_path, capability, backend, no_model_loads
) -> None:
    method = methods.register(_needing(capability))
    try:
        recipe = {"method": method.name, "engine": {"backend": backend}}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o")])
    finally:
        methods.unregister(method.name)
    assert isinstance(result.exception, CapabilityError)
    line = str(result.exception)
    assert line.startswith(f"engine backend '{backend}' lacks {capability}")
    assert f"method 'needs-{capability}' (stage 'answers')" in line
    assert not (tmp_path / "o").exists()


def test_sao_run_refuses_a_trl_value_before_synthesis(tmp_path, no_model_loads) -> None:
    recipe = {"train": {"trl": {"adam_beta2": 0.95, "optim": "no_such_optimizer"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith("train.trl.optim: no_such_optimizer is not a valid OptimizerNames")
    assert not (tmp_path / "o").exists()


def test_a_named_judge_is_built_once_per_iteration_judges_alone_and_is_pinned_in_the_manifest(
    tmp_path, tiny_model_dir, chatty_tiny_dir, monkeypatch
) -> None:
    from scripted_engine import ScriptedEngine

    engines: dict[str, list[ScriptedEngine]] = {}

    def build(model, *args, **kwargs):
        engines.setdefault(Path(model).name, []).append(ScriptedEngine())
        return engines[Path(model).name][-1]

    monkeypatch.setattr("sao.engine.lazy.build_engine", build)
    recipe = {
        "model": str(tiny_model_dir),
        "synth": {"num_prompts": 6, "judge": {"model": str(chatty_tiny_dir)}},
        "train": {"epochs": 1, "max_length": 128, "report_to": "none", "dtype": "float32"},
        "report": {"prompts": ["Hi."], "max_new_tokens": 8},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    judge = engines.pop(chatty_tiny_dir.name)
    assert len(judge) == 1 and judge[0].calls > 0  # built once, and it judged
    # The policy's engines (before and after training) generated everything else and judged nothing.
    assert all(e.calls > 0 for e in engines[tiny_model_dir.name])
    manifest = _manifest(tmp_path / "run" / "iter-1" / "synth")
    assert manifest["config"]["judge_identity"]["spec"] == str(chatty_tiny_dir)
    assert manifest["config"]["judge_identity"]["fingerprint"].startswith("sha256:")
    pairs = (tmp_path / "run" / "iter-1" / "synth" / "pairs.jsonl").read_text().splitlines()
    assert pairs and json.loads(pairs[0])["generation"]["judge"]["model"] == str(chatty_tiny_dir)
