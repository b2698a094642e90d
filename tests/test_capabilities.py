"""Engine capabilities: what each backend declares, `require_capabilities` refusing a recipe before any
model loads, and engines refusing a prompt kind or call they lack with the same one-line error."""

from __future__ import annotations

import sys

import pytest

import sao.engine.backends
import sao.engine.factory
import sao.engine.lazy
import sao.models
from sao.engine.capabilities import (
    CAPABILITIES,
    DESCRIPTIONS,
    Capability,
    CapabilityError,
    backend_capabilities,
    engine_kind,
    prompt_needs,
    require_capabilities,
)
from sao.engine.config import EngineSection
from sao.engine.lazy import lazy_engine
from sao.engine.types import RawPrompt, SamplingParams, TokenPrompt
from sao.errors import ConfigError
from sao.recipe import validate

OPENAI = {"base_url": "http://127.0.0.1:9/v1"}
WHO = "method 'rain' (stage 'decode')"
HEAVY = ("torch", "transformers", "vllm", "ray", "openai", "llama_cpp")


def section(backend: str, **fields: object) -> EngineSection:
    return validate(EngineSection, {"backend": backend, **fields})


@pytest.fixture
def nothing_loads(monkeypatch):
    """Every way to a model raises: a check that needed one would fail loudly."""

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(sao.models, "load_model", load)
    monkeypatch.setattr(sao.engine.backends, "build_backend", load)
    monkeypatch.setattr(sao.engine.factory, "build_backend", load)
    monkeypatch.setattr(sao.engine.lazy, "build_engine", load)


# Each capability against a backend that lacks it.
LACKING = [
    (Capability.SCORE, section("openai", openai=OPENAI | {"api": "chat"}), "openai (api: chat)"),
    (Capability.TOP_LOGPROBS, section("openai", openai=OPENAI), "openai (api: completions)"),
    (Capability.TOKEN_PROMPTS, section("openai", openai=OPENAI), "openai (api: completions)"),
    (Capability.RAW_PROMPTS, section("openai", openai=OPENAI | {"api": "chat"}), "openai (api: chat)"),
    (Capability.MULTIMODAL, section("llamacpp"), "llamacpp"),
]


@pytest.mark.parametrize(("capability", "settings", "kind"), LACKING, ids=[c for c, _, _ in LACKING])
def test_a_missing_capability_is_refused_in_one_line_before_any_model_loads(nothing_loads, capability, settings, kind):
    before = {name for name in HEAVY if name in sys.modules}
    with pytest.raises(CapabilityError) as refused:
        require_capabilities(settings, [capability], WHO)
    message = str(refused.value)
    assert message == (
        f"engine backend '{kind}' lacks {capability.value} ({DESCRIPTIONS[capability]}), which {WHO} needs"
    )
    assert "\n" not in message
    assert isinstance(refused.value, ConfigError)  # the CLI shows it as one line, exit code 2
    assert {name for name in HEAVY if name in sys.modules} == before  # nothing imported to find out


def test_ray_engines_have_their_backends_capabilities(nothing_loads):
    on_ray = section("vllm", ray={"enabled": True, "num_actors": 2})
    assert backend_capabilities(on_ray) == backend_capabilities(section("vllm"))
    with pytest.raises(CapabilityError, match=r"^engine backend 'vllm' lacks ngram_penalty"):
        require_capabilities(on_ray, ["ngram_penalty"], WHO)


def test_what_each_backend_declares(nothing_loads):
    everything_but_parts = [c for c in Capability if c != Capability.MULTIMODAL]
    for backend in ("transformers", "llamacpp"):
        require_capabilities(section(backend), everything_but_parts, WHO)  # names as strings work too
        require_capabilities(section(backend), [c.value for c in everything_but_parts], WHO)
    require_capabilities(section("vllm"), ["score", "top_logprobs", "token_prompts", "raw_prompts"], WHO)
    require_capabilities(section("openai", openai=OPENAI), ["score"], WHO)
    require_capabilities(section("openai", openai=OPENAI | {"api": "chat"}), [], WHO)
    # Message parts: the transformers backend (its vision engine) and vLLM; every capability is described.
    assert {kind for kind, have in CAPABILITIES.items() if Capability.MULTIMODAL in have} == {"transformers", "vllm"}
    assert set(DESCRIPTIONS) == set(Capability)
    assert {engine_kind(section(b)) for b in ("transformers", "llamacpp", "vllm")} | {
        engine_kind(section("openai", openai=OPENAI | {"api": api})) for api in ("chat", "completions")
    } == set(CAPABILITIES)
    with pytest.raises(ValueError, match="top_logprob"):
        require_capabilities(section("transformers"), ["top_logprob"], WHO)  # a typo is no capability


def test_the_first_missing_capability_in_declared_order_is_named():
    with pytest.raises(CapabilityError, match="lacks top_logprobs"):
        require_capabilities(section("openai", openai=OPENAI), ["multimodal", "top_logprobs", "score"], WHO)


def test_prompt_kinds_and_what_they_need():
    assert prompt_needs([{"role": "user", "content": "hi"}]) is None
    assert prompt_needs(RawPrompt("Once upon a time")) == Capability.RAW_PROMPTS
    assert prompt_needs(TokenPrompt([1, 2])) == Capability.TOKEN_PROMPTS
    video = [{"role": "user", "content": [{"type": "video", "frames": ["f0.png"]}, {"type": "text", "text": "?"}]}]
    assert prompt_needs(video) == Capability.MULTIMODAL
    assert TokenPrompt([1, 2]).token_ids == (1, 2)  # frozen, hashable, as it came


def test_a_lazy_engine_knows_its_capabilities_without_loading_and_passes_the_lineage(monkeypatch):
    built = []

    class Recorded:
        def generate(self, prompts, sampling):
            return ["done"] * len(prompts)

    def build_engine(model, settings, **kwargs):
        built.append((model, kwargs))
        return Recorded()

    monkeypatch.setattr(sao.engine.lazy, "build_engine", build_engine)
    lazy = lazy_engine("iter-1/model", section("llamacpp"), trust_remote_code=False, progress=False, base_model="base")
    assert (lazy.kind, lazy.capabilities) == ("llamacpp", CAPABILITIES["llamacpp"])
    assert built == []  # asking what it can do loads nothing
    assert lazy.generate([[{"role": "user", "content": "hi"}]], SamplingParams()) == ["done"]
    assert built == [("iter-1/model", {"trust_remote_code": False, "progress": False, "base_model": "base"})]
