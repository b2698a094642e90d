"""The engine section: backend choice, its validation, what manifests record, and the CLI flags."""

from __future__ import annotations

import json

import pytest

from sao.engine.config import EngineSection
from sao.engine.factory import build_engine, engine_model_info
from sao.errors import ConfigError
from sao.loop.config import validate_run
from sao.recipe import validate
from test_cli import assert_one_line_error, run


def test_openai_backend_needs_a_url():
    with pytest.raises(ConfigError, match=r"openai.base_url: backend 'openai' needs the server's URL"):
        validate(EngineSection, {"backend": "openai"})


def test_unknown_backend_names_the_field():
    with pytest.raises(ConfigError, match=r"^backend: "):
        validate(EngineSection, {"backend": "tgi"})


def test_sao_run_refuses_a_server_backend():
    engine = {"backend": "openai", "openai": {"base_url": "http://localhost:8000/v1"}}
    with pytest.raises(ConfigError, match=r"^engine: backend 'openai' cannot serve the model each iteration trains"):
        validate_run({"engine": engine})


def test_endpoint_identity_has_no_key_and_changes_with_the_server(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    settings = validate(
        EngineSection,
        {"backend": "openai", "openai": {"base_url": "http://a:8000/v1", "api_key_env": "MY_KEY"}},
    )
    info = engine_model_info("org/model", settings)
    assert info == {"spec": "org/model", "backend": "openai", "fingerprint": "http://a:8000/v1#org/model"}
    other = settings.model_copy(update={"openai": settings.openai.model_copy(update={"base_url": "http://b/v1"})})
    assert engine_model_info("org/model", other)["fingerprint"] != info["fingerprint"]
    assert "sk-secret-value" not in json.dumps(settings.model_dump())


def test_local_identity_is_the_weights_fingerprint(tiny_model_dir):
    info = engine_model_info(str(tiny_model_dir), EngineSection())
    assert info["backend"] == "transformers"
    assert info["fingerprint"].startswith("sha256:")


def test_factory_builds_the_in_process_engine_from_the_section(tiny_model_dir):
    engine = build_engine(str(tiny_model_dir), validate(EngineSection, {"batch_size": 3, "device": "cpu"}))
    assert type(engine).__name__ == "TransformersEngine"
    assert engine.max_batch_size == 3


def test_cli_engine_override_errors_name_the_field(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    proc = run("generate", "-i", str(prompts), "-o", str(tmp_path / "out"), "--engine", "backend=openai")
    assert_one_line_error(proc, "openai.base_url")
    proc = run("generate", "-i", str(prompts), "-o", str(tmp_path / "out"), "--engine", "vllm.tensor_parallel_size=0")
    assert_one_line_error(proc, "vllm.tensor_parallel_size")
