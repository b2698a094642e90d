"""GGUF export of trained models, and `sao run` on the llama.cpp engine across iterations."""

from __future__ import annotations

import shutil
from pathlib import Path

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

import sao.gguf_export
from conftest import GREEDY_QUESTIONS, ask
from sao.embedded_models import EMBEDDED_MODELS
from sao.engine import SamplingParams
from sao.engine.config import EngineSection
from sao.engine.factory import build_engine, engine_model_info
from sao.engine.lazy import lazy_engine
from sao.engine.llamacpp_engine import LlamaCppEngine
from sao.engine.transformers_engine import TransformersEngine
from sao.errors import ConfigError, ModelLoadError
from sao.gguf_export import TRAINED_GGUF, export_gguf
from sao.loop.config import validate_run
from sao.loop.run import run_loop
from sao.models import gguf_location, load_model
from test_loop import tiny_recipe

SOURCE = gguf_location(EMBEDDED_MODELS["smollm2-135m"])


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, chatty_tiny_dir: Path) -> Path:
    model = AutoModelForCausalLM.from_pretrained(chatty_tiny_dir, dtype=torch.float32)
    return export_gguf(model, SOURCE, tmp_path_factory.mktemp("gguf") / "tiny.gguf", weight_type="f32")


def engines_on(gguf_path: Path, model_dir: Path) -> tuple[LlamaCppEngine, TransformersEngine]:
    """A llama.cpp engine on ``gguf_path`` and a float32 transformers engine on ``model_dir``'s weights."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch_engine = TransformersEngine(load_model(str(model_dir), dtype="float32"), progress=False)
    llama = LlamaCppEngine(gguf_path, tokenizer, torch_engine.model.generation_config, max_batch_size=4, progress=False)
    return llama, torch_engine


def logprob_gaps(llama: LlamaCppEngine, torch_engine: TransformersEngine) -> list[float]:
    """Per-token log-prob differences of the two engines on four answers."""
    convs = [ask(q) for q in GREEDY_QUESTIONS[:4]]
    answers = ["Red, blue and yellow.", "Waves fold", "Light to sugar.", "Practice daily."]
    ours, theirs = llama.score(convs, answers), torch_engine.score(convs, answers)
    return [abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x.logprobs, y.logprobs)]


def test_exported_float32_weights_give_the_transformers_engines_numbers(tiny_gguf, chatty_tiny_dir):
    """A 2-layer, 64-wide model with SmolLM2's tokenizer: the architecture numbers, the q/k
    rotary permutation and the tokenizer metadata must all be right for llama.cpp to agree."""
    llama, torch_engine = engines_on(tiny_gguf, chatty_tiny_dir)
    try:
        assert max(logprob_gaps(llama, torch_engine)) < 1e-3
        convs = [ask(q) for q in GREEDY_QUESTIONS[:4]]
        greedy = SamplingParams(temperature=0, max_new_tokens=24)
        assert [c.samples[0].token_ids for c in llama.generate(convs, greedy)] == [
            c.samples[0].token_ids for c in torch_engine.generate(convs, greedy)
        ]
    finally:
        llama.close()


def test_exported_bf16_weights_score_within_bf16_rounding(tmp_path, chatty_tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(chatty_tiny_dir, dtype=torch.float32)
    path = export_gguf(model, SOURCE, tmp_path / "tiny.bf16.gguf", weight_type="bf16")
    llama, torch_engine = engines_on(path, chatty_tiny_dir)
    try:
        # bf16 weights keep 8 significant bits; on this near-uniform tiny model that moved the log-probs by
        # 9e-4 at most (2026-12-03).
        assert max(logprob_gaps(llama, torch_engine)) < 0.01
    finally:
        llama.close()
    matrices = {t.tensor_type for t in gguf.GGUFReader(path).tensors if len(t.shape) == 2}
    assert matrices == {gguf.GGMLQuantizationType.BF16}


def test_other_architectures_are_refused_by_name(tmp_path):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(ModelLoadError, match="GPT2LMHeadModel"):
        export_gguf(gpt2, SOURCE, tmp_path / "gpt2.gguf")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_an_engine_on_a_trained_model_exports_it_once_from_the_base_models_gguf(tmp_path, monkeypatch, chatty_tiny_dir):
    """What `sao run` asks the factory for: llama.cpp on a directory of HF weights trained from the
    embedded model, whose GGUF lends the tokenizer and metadata."""
    trained = Path(shutil.copytree(chatty_tiny_dir, tmp_path / "iter-1" / "model"))
    exports = []

    def counted(*args, **kwargs):
        exports.append(args[2])
        return export_gguf(*args, **kwargs)

    monkeypatch.setattr(sao.gguf_export, "export_gguf", counted)
    settings = EngineSection(backend="llamacpp", batch_size=4)
    before = engine_model_info(str(trained), settings)
    torch_engine = TransformersEngine(load_model(str(trained), dtype="float32"), progress=False)
    convs = [ask(q) for q in GREEDY_QUESTIONS[:3]]
    answers = ["Red, blue and yellow.", "Waves fold", "Light to sugar."]
    engines = [
        build_engine(str(trained), settings, progress=False, base_model="smollm2-135m"),
        build_engine(str(trained), settings, progress=False, base_model="smollm2-135m"),  # the cached export
        lazy_engine(str(trained), settings, trust_remote_code=False, progress=False, base_model="smollm2-135m"),
    ]
    try:
        scores = [engine.score(convs, answers) for engine in engines]
        assert exports == [trained / TRAINED_GGUF]
        assert {engine.model_path for engine in engines[:2]} | {engines[2].engine.model_path} == {exports[0]}
        # The exported f16 weights give the torch engine's numbers, within f16 rounding.
        reference = torch_engine.score(convs, answers)
        for got in scores:
            assert [s.token_ids for s in got] == [s.token_ids for s in reference]
            assert max(abs(a - b) for x, y in zip(got, reference) for a, b in zip(x.logprobs, y.logprobs)) < 0.05
    finally:
        engines[0].close(), engines[1].close(), engines[2].release()
    # The model is the trained weights, whichever backend serves it: the GGUF next to them changes nothing.
    assert engine_model_info(str(trained), settings) == before
    assert before["fingerprint"] == engine_model_info(str(trained), EngineSection())["fingerprint"]
    assert (before["backend"], before["weights"]) == ("llamacpp", "f16") and "gguf" not in before


def test_a_trained_model_must_be_a_directory_and_the_base_model_needs_a_gguf(tmp_path, tiny_model_dir):
    settings = EngineSection(backend="llamacpp")
    with pytest.raises(ConfigError, match="^engine.llamacpp: model 'org/tuned', trained from 'smollm2-135m', is not"):
        build_engine("org/tuned", settings, progress=False, base_model="smollm2-135m")
    # The model the run started from is served as it always was: it needs a GGUF of its own.
    with pytest.raises(ConfigError, match="engine.llamacpp.gguf: model .* has no GGUF file"):
        build_engine(str(tiny_model_dir), settings, progress=False, base_model=str(tiny_model_dir))
    assert not (tiny_model_dir / TRAINED_GGUF).exists()


@pytest.mark.slow
def test_a_run_on_llama_cpp_exports_each_trained_model_and_chains_iterations(tmp_path, tiny_gguf, chatty_tiny_dir):
    recipe = tiny_recipe(chatty_tiny_dir)
    recipe["engine"] = {"backend": "llamacpp", "batch_size": 8, "llamacpp": {"gguf": str(tiny_gguf)}}
    first, second = run_loop(validate_run(recipe), tmp_path, progress=False)
    assert second.model_in == str(first.model_out)
    assert (first.model_out / "model.gguf").is_file()  # iteration 2 generated with the trained weights
    assert (second.model_out / "model.gguf").is_file()  # the "after" samples of iteration 2
    for iteration in (first, second):
        assert iteration.synth.manifest.stages["pairs"].rows > 0
        assert "## Before and after" in (iteration.root / "report.md").read_text()
