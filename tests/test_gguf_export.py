"""GGUF export of trained models, and `sao run` on the llama.cpp engine across iterations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from conftest import GREEDY_QUESTIONS, ask
from sao.embedded_models import EMBEDDED_MODELS
from sao.engine import SamplingParams
from sao.engine.llamacpp_engine import LlamaCppEngine
from sao.engine.transformers_engine import TransformersEngine
from sao.errors import ModelLoadError
from sao.gguf_export import export_gguf
from sao.loop.config import RunConfig
from sao.loop.run import run_loop
from sao.models import gguf_location, load_model
from sao.recipe import validate
from test_loop import tiny_recipe

SOURCE = gguf_location(EMBEDDED_MODELS["smollm2-135m"])


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, chatty_tiny_dir: Path) -> Path:
    model = AutoModelForCausalLM.from_pretrained(chatty_tiny_dir, dtype=torch.float32)
    return export_gguf(model, SOURCE, tmp_path_factory.mktemp("gguf") / "tiny.gguf", weight_type="f32")


def test_exported_float32_weights_give_the_transformers_engines_numbers(tiny_gguf, chatty_tiny_dir):
    """A 2-layer, 64-wide model with SmolLM2's tokenizer: the architecture numbers, the q/k
    rotary permutation and the tokenizer metadata must all be right for llama.cpp to agree."""
    tokenizer = AutoTokenizer.from_pretrained(chatty_tiny_dir)
    torch_engine = TransformersEngine(load_model(str(chatty_tiny_dir), dtype="float32"), progress=False)
    llama = LlamaCppEngine(tiny_gguf, tokenizer, torch_engine.model.generation_config, max_batch_size=4, progress=False)
    try:
        convs = [ask(q) for q in GREEDY_QUESTIONS[:4]]
        answers = ["Red, blue and yellow.", "Waves fold", "Light to sugar.", "Practice daily."]
        ours, theirs = llama.score(convs, answers), torch_engine.score(convs, answers)
        assert max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x.logprobs, y.logprobs)) < 1e-3
        greedy = SamplingParams(temperature=0, max_new_tokens=24)
        assert [c.samples[0].token_ids for c in llama.generate(convs, greedy)] == [
            c.samples[0].token_ids for c in torch_engine.generate(convs, greedy)
        ]
    finally:
        llama.close()


def test_other_architectures_are_refused_by_name(tmp_path):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(ModelLoadError, match="GPT2LMHeadModel"):
        export_gguf(gpt2, SOURCE, tmp_path / "gpt2.gguf")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


@pytest.mark.slow
def test_a_run_on_llama_cpp_exports_each_trained_model_and_chains_iterations(tmp_path, tiny_gguf, chatty_tiny_dir):
    recipe = tiny_recipe(chatty_tiny_dir)
    recipe["engine"] = {"backend": "llamacpp", "batch_size": 8, "llamacpp": {"gguf": str(tiny_gguf)}}
    first, second = run_loop(validate(RunConfig, recipe), tmp_path, progress=False)
    assert second.model_in == str(first.model_out)
    assert (first.model_out / "model.gguf").is_file()  # iteration 2 generated with the trained weights
    assert (second.model_out / "model.gguf").is_file()  # the "after" samples of iteration 2
    for iteration in (first, second):
        assert iteration.synth.manifest.stages["pairs"].rows > 0
        assert "## Before and after" in (iteration.root / "report.md").read_text()
