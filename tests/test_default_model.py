"""The embedded SmolLM2-135M-Instruct, end to end (slow: real weights on CPU)."""

import pytest
import torch

from conftest import ask
from sao.engine import SamplingParams
from sao.engine.batching import left_pad
from sao.engine.chat_template import encode_prompt
from sao.models import EMBEDDED_MODELS, convert_embedded_model, load_model

pytestmark = pytest.mark.slow


def test_greedy_answer_knows_paris(smol_engine):
    out = smol_engine.generate(
        [ask("What is the capital of France?")], SamplingParams(temperature=0, max_new_tokens=40)
    )
    sample = out[0].samples[0]
    assert "Paris" in sample.text
    assert sample.finish_reason == "stop"


def test_seeded_sampling_reproduces(smol_engine):
    convs = [ask("Write a haiku about autumn."), ask("Name a famous scientist.")]
    params = SamplingParams(n=2, temperature=0.9, top_p=0.95, max_new_tokens=24, seed=1234)
    first = smol_engine.generate(convs, params)
    second = smol_engine.generate(list(reversed(convs)), params)
    assert [s.text for s in first[0].samples] == [s.text for s in second[1].samples]
    assert first[0].samples[0].text != first[0].samples[1].text


def test_greedy_matches_model_generate(smol_engine):
    model, tok = smol_engine.model, smol_engine.tokenizer
    convs = [ask("What is the capital of France?"), ask("List three primary colours."), ask("What is 12 times 12?")]
    ours = smol_engine.generate(convs, SamplingParams(temperature=0, max_new_tokens=24))
    for conv, completion in zip(convs, ours):
        ids = torch.tensor([encode_prompt(tok, conv)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
        ref_tokens = [t for t in ref[0, ids.shape[1] :].tolist() if t not in smol_engine.eos_ids]
        assert completion.samples[0].token_ids == ref_tokens


def test_greedy_batch_matches_padded_generate_with_transformers_own_attention(smol_engine):
    """The engine's decode paths (in-place cache, grouped-query SDPA with the mask, issue 21) against
    plain ``generate`` on the same left-padded batch with transformers' SDPA: float32, the same tokens."""
    model, tok = smol_engine.model, smol_engine.tokenizer
    convs = [ask("What is the capital of France?"), ask("Name a large animal."), ask("Write one line on rain.")]
    ours = smol_engine.generate(convs, SamplingParams(temperature=0, max_new_tokens=24))
    ids, mask, _ = left_pad([encode_prompt(tok, c) for c in convs], smol_engine.pad_id, smol_engine.device)
    assert not bool(mask.all())  # the prompts differ in length: the masked path
    engines_attention = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        ref = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False, pad_token_id=smol_engine.pad_id
        )
    finally:
        model.set_attn_implementation(engines_attention)
    for completion, row in zip(ours, ref[:, ids.shape[1] :].tolist()):
        end = next((i for i, t in enumerate(row) if t in smol_engine.eos_ids), len(row))
        assert completion.samples[0].token_ids == row[:end]


def test_score_matches_manual_forward(smol_engine):
    model, tok = smol_engine.model, smol_engine.tokenizer
    conv, cont = ask("What is the capital of France?"), "The capital of France is Paris."
    got = smol_engine.score([conv, ask("hi")], [cont, "Hello! How can I help?"])[0]
    prompt = encode_prompt(tok, conv)
    target = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + target])).logits[0].float(), -1)
    want = [logp[len(prompt) + i - 1, t].item() for i, t in enumerate(target)]
    assert got.logprobs == pytest.approx(want, abs=1e-4)
    wrong = smol_engine.score([conv], ["The capital of France is Berlin."])[0]
    assert got.total > wrong.total


def test_conversion_gives_the_gguf_model(tmp_path, smol_dir):
    """A fresh conversion reproduces the cached copy's weights, and the copy reloads as HF format."""
    dest = convert_embedded_model(EMBEDDED_MODELS["smollm2-135m"], tmp_path / "smollm2-135m")
    assert (dest / "model.safetensors").is_file() and (dest / "chat_template.jinja").is_file()
    fresh = load_model(str(dest), dtype="float32").model.state_dict()
    cached = load_model(smol_dir, dtype="float32").model.state_dict()
    assert fresh.keys() == cached.keys()
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)
