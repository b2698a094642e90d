"""SELF-ALIGN's sampling controls (`SamplingParams.logit_bias`, frequency/presence penalties over n-grams):
validation, the pure logit arithmetic with hand-computed values, the in-process engines honouring them on
real models, the vLLM and OpenAI request mappings, and the engines that lack one refusing in one line."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import types
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from conftest import ask
from sao.engine import CapabilityError, RawPrompt, SamplingParams
from sao.engine.capabilities import (
    CAPABILITIES,
    Capability,
    check_sampling,
    engine_kind,
    require_capabilities,
    sampling_needs,
)
from sao.engine.config import EngineSection
from sao.engine.logit_controls import (
    LogitControls,
    adjust_logits,
    bias_ids,
    logit_controls,
    repeat_counts,
    spellings,
)
from sao.engine.openai_engine import OpenAIEngine, sampling_body
from sao.engine.ray_engine import RayEngine
from sao.engine.vllm_engine import VLLMEngine, generation_requests, sampling_kwargs
from sao.errors import ConfigError

GREEDY = SamplingParams(temperature=0, max_new_tokens=24)
# A prompt the embedded model answers by repeating itself, greedy and unpenalised.
REPETITIVE = RawPrompt("one two one two one two one two one two one two one two")


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    return AutoTokenizer.from_pretrained(smol_dir)


def first_id(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def repeats(token_ids: list[int]) -> int:
    """Tokens that repeat an earlier one."""
    return len(token_ids) - len(set(token_ids))


def repeated_bigrams(token_ids: list[int]) -> int:
    bigrams = list(zip(token_ids, token_ids[1:]))
    return len(bigrams) - len(set(bigrams))


# ---------------------------------------------------------------------------------------------- validation
def test_logit_bias_takes_a_dict_and_stays_hashable_and_order_free():
    from_dict = SamplingParams(logit_bias={"Sorry": -100, "As": -5.5})
    from_pairs = SamplingParams(logit_bias=[("As", -5.5), ("Sorry", -100.0)])
    assert from_dict.logit_bias == (("As", -5.5), ("Sorry", -100.0))
    assert from_dict == from_pairs and hash(from_dict) == hash(from_pairs)
    assert {from_dict: 1}[from_pairs] == 1  # the engines key resolved controls by params
    assert isinstance(from_dict.logit_bias[1][1], float)
    plain = SamplingParams()
    assert (plain.logit_bias, plain.frequency_penalty, plain.presence_penalty, plain.penalty_ngram) == ((), 0, 0, 1)
    assert not plain.penalised and SamplingParams(presence_penalty=-0.5).penalised


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"logit_bias": {"": -100}}, "logit_bias"),
        ({"logit_bias": {"Sorry": float("inf")}}, "logit_bias"),
        ({"logit_bias": {"Sorry": float("nan")}}, "logit_bias"),
        ({"logit_bias": {"Sorry": "-100"}}, "logit_bias"),
        ({"logit_bias": ["Sorry"]}, "logit_bias"),
        ({"frequency_penalty": float("inf")}, "frequency_penalty"),
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"penalty_ngram": 0}, "penalty_ngram"),
        ({"penalty_ngram": 2.5}, "penalty_ngram"),
    ],
)
def test_invalid_controls_name_their_field(fields, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        SamplingParams(**fields)


# ---------------------------------------------------------------------------------------------- bias ids
def test_a_bias_on_sorry_hits_the_word_with_and_without_a_leading_space(tokenizer):
    bare, spaced = first_id(tokenizer, "Sorry"), first_id(tokenizer, " Sorry")
    assert bare != spaced  # two tokens in SmolLM2's BPE vocabulary: "Sorry" and " Sor"
    assert bias_ids(tokenizer, ((" Sorry", -100.0),)) == {bare: -100.0, spaced: -100.0}
    assert bias_ids(tokenizer, (("Sorry", -100.0),)) == {bare: -100.0, spaced: -100.0}
    assert spellings(" Sorry") == spellings("Sorry") == ("Sorry", " Sorry")
    # A lone leading space token is passed over: a bias on it would hit every word after a space.
    assert first_id(tokenizer, "  Sorry") == first_id(tokenizer, " ")
    assert bias_ids(tokenizer, (("  Sorry", 3.0),)) == {spaced: 3.0}


def test_an_id_named_twice_gets_the_strongest_bias_not_the_sum(tokenizer):
    bare, spaced = first_id(tokenizer, "Sorry"), first_id(tokenizer, " Sorry")
    both = bias_ids(tokenizer, SamplingParams(logit_bias={"Sorry": 5.0, " Sorry": -100.0}).logit_bias)
    assert both == {bare: -100.0, spaced: -100.0}
    tie = bias_ids(tokenizer, SamplingParams(logit_bias={"Sorry": 7.0, " Sorry": -7.0}).logit_bias)
    assert tie == {bare: -7.0, spaced: -7.0}  # a ban is never undone by an equal boost


def test_no_controls_resolve_to_none(tokenizer):
    assert logit_controls(tokenizer, SamplingParams(penalty_ngram=3)) is None  # n-gram of nothing
    controls = logit_controls(tokenizer, SamplingParams(logit_bias={"Sorry": -1}, frequency_penalty=0.5))
    assert controls is not None and controls.frequency_penalty == 0.5 and len(controls.bias) == 2


# ---------------------------------------------------------------------------------------------- adjust_logits
def test_unigram_frequency_presence_and_bias_by_hand():
    logits = torch.zeros(2, 6)
    row0 = LogitControls(bias=((3, -100.0), (2, 0.25)), frequency_penalty=0.5, presence_penalty=1.0)
    adjusted = adjust_logits(logits, [(row0, [1, 1, 2]), (None, [1, 1, 1])])
    expected = torch.zeros(2, 6)
    expected[0, 1] = -(0.5 * 2 + 1.0)  # twice generated
    expected[0, 2] = -(0.5 * 1 + 1.0) + 0.25  # once, and biased too: both apply
    expected[0, 3] = -100.0
    assert torch.equal(adjusted, expected)
    assert torch.equal(logits, torch.zeros(2, 6))  # the input is left as it was


def test_presence_alone_and_frequency_alone():
    only_presence = LogitControls(presence_penalty=0.7)
    only_frequency = LogitControls(frequency_penalty=0.3)
    rows = [(only_presence, [4, 4, 4, 0]), (only_frequency, [4, 4, 4, 0])]
    adjusted = adjust_logits(torch.ones(2, 5), rows)
    assert adjusted[0].tolist() == pytest.approx([0.3, 1, 1, 1, 0.3])
    assert adjusted[1].tolist() == pytest.approx([0.7, 1, 1, 1, 1 - 0.9])


def test_bigram_counts_by_hand():
    # Last token 1; the bigrams (1, t) so far: (1, 2) twice, (1, 3) once. (2, 1) and (3, 1) do not count.
    generated = [1, 2, 1, 3, 1, 2, 1]
    assert repeat_counts(generated, 2) == Counter({2: 2, 3: 1})
    controls = LogitControls(frequency_penalty=1.0, presence_penalty=0.5, penalty_ngram=2)
    adjusted = adjust_logits(torch.zeros(1, 5), [(controls, generated)])
    assert adjusted[0].tolist() == [0.0, 0.0, -(1.0 * 2 + 0.5), -(1.0 * 1 + 0.5), 0.0]


def test_longer_ngrams_and_too_short_histories():
    assert repeat_counts([5, 6, 7, 5, 6], 3) == Counter({7: 1})  # (5, 6, 7) once; (6, 7, 5) and (7, 5, 6) not
    assert repeat_counts([5, 6, 5, 6, 5, 6], 3) == Counter({5: 2})
    assert repeat_counts([5], 3) == Counter()  # no 2-token context yet
    assert repeat_counts([5, 6], 3) == Counter()  # a context, but no earlier 3-gram
    assert repeat_counts([], 1) == Counter()
    controls = LogitControls(frequency_penalty=9.0, penalty_ngram=3)
    logits = torch.randn(1, 8)
    assert torch.equal(adjust_logits(logits, [(controls, [5])]), logits)


def test_rows_without_controls_cost_nothing():
    logits = torch.randn(3, 10)
    assert adjust_logits(logits, [(None, [1, 2]), (None, []), (None, [3])]) is logits
    # bf16 logits (the transformers engine's on bf16 hardware) keep their dtype.
    half = torch.zeros(1, 4, dtype=torch.bfloat16)
    out = adjust_logits(half, [(LogitControls(bias=((1, -100.0),)), [])])
    assert out.dtype == torch.bfloat16 and out[0, 1].item() == -100.0


# ---------------------------------------------------------------------------------------------- capabilities
def section(backend: str, **fields: object) -> EngineSection:
    return EngineSection.model_validate({"backend": backend, **fields})


OPENAI = {"base_url": "http://127.0.0.1:9/v1"}


def test_sampling_needs():
    assert sampling_needs(SamplingParams()) == set()
    assert sampling_needs(SamplingParams(frequency_penalty=1.0, presence_penalty=0.5)) == set()  # n = 1: everyone
    assert sampling_needs(SamplingParams(logit_bias={"Sorry": -100})) == {Capability.LOGIT_BIAS}
    assert sampling_needs(SamplingParams(frequency_penalty=1.0, penalty_ngram=2)) == {Capability.NGRAM_PENALTY}
    both = SamplingParams(logit_bias={"Sorry": -100}, penalty_ngram=4)
    assert sampling_needs(both) == {Capability.LOGIT_BIAS, Capability.NGRAM_PENALTY}


def test_which_engines_declare_the_controls():
    have = {kind: {c for c in (Capability.LOGIT_BIAS, Capability.NGRAM_PENALTY) if c in caps}
            for kind, caps in CAPABILITIES.items()}  # fmt: skip
    assert have == {
        "transformers": {Capability.LOGIT_BIAS, Capability.NGRAM_PENALTY},
        "llamacpp": {Capability.LOGIT_BIAS, Capability.NGRAM_PENALTY},
        "vllm": {Capability.LOGIT_BIAS},
        "openai (api: completions)": {Capability.LOGIT_BIAS},
        "openai (api: chat)": set(),
    }
    # A method declares them as stage needs by name, checked before any model loads.
    require_capabilities(section("vllm"), ["logit_bias"], "method 'self_align' (stage 'generate')")
    with pytest.raises(CapabilityError, match=r"^engine backend 'vllm' lacks ngram_penalty \(frequency and presence"):
        require_capabilities(section("vllm"), ["logit_bias", "ngram_penalty"], "method 'self_align'")
    chat = section("openai", openai=OPENAI | {"api": "chat"})
    with pytest.raises(CapabilityError, match=r"^engine backend 'openai \(api: chat\)' lacks logit_bias"):
        require_capabilities(chat, ["logit_bias"], "method 'self_align'")


def test_check_sampling_names_the_engine_the_capability_and_the_request():
    engine = SimpleNamespace(kind="vllm", capabilities=CAPABILITIES["vllm"])
    check_sampling(engine, [SamplingParams(logit_bias={"Sorry": -100}, frequency_penalty=1.0)], "generate")
    with pytest.raises(CapabilityError) as refused:
        check_sampling(engine, [SamplingParams(), SamplingParams(penalty_ngram=2)], "generate")
    assert str(refused.value) == (
        "engine backend 'vllm' lacks ngram_penalty (frequency and presence penalties over n-grams, n > 1), "
        "which the sampling of request 1 of a generate call needs"
    )


# ---------------------------------------------------------------------------------------------- transformers
def test_a_ban_on_the_first_greedy_token_keeps_it_out(smol_engine, tokenizer):
    prompt = [ask("What is the capital of France?")]
    plain = smol_engine.generate(prompt, GREEDY)[0].samples[0]
    banned = plain.token_ids[0]
    text = tokenizer.decode([banned])
    assert banned in bias_ids(tokenizer, ((text, -100.0),))
    biased = smol_engine.generate(prompt, SamplingParams(temperature=0, max_new_tokens=24, logit_bias={text: -100}))
    ids = biased[0].samples[0].token_ids
    assert ids and banned not in ids
    assert ids[0] != plain.token_ids[0]


def test_a_strong_boost_takes_every_step_in_greedy_and_sampled_rows(tiny_engine, tokenizer):
    boosted = {first_id(tokenizer, "Paris"), first_id(tokenizer, " Paris")}  # both spellings get the bias
    for temperature in (0, 1.0):
        params = SamplingParams(temperature=temperature, max_new_tokens=6, seed=3, logit_bias={" Paris": 100})
        out = tiny_engine.generate([ask("hi")], params)[0].samples[0]
        assert len(out.token_ids) == 6 and set(out.token_ids) <= boosted


def test_a_frequency_penalty_cuts_repeats(smol_engine):
    plain = smol_engine.generate([REPETITIVE], SamplingParams(temperature=0, max_new_tokens=32))[0].samples[0]
    penalised = smol_engine.generate(
        [REPETITIVE], SamplingParams(temperature=0, max_new_tokens=32, frequency_penalty=2.0)
    )[0].samples[0]
    print(f"repeats: plain {repeats(plain.token_ids)} {plain.text!r}, penalised {repeats(penalised.token_ids)}")
    assert repeats(plain.token_ids) >= 16  # the prompt makes the model loop
    assert repeats(penalised.token_ids) < repeats(plain.token_ids) // 2


def test_a_bigram_penalty_cuts_repeated_bigrams(smol_engine):
    plain = smol_engine.generate([REPETITIVE], SamplingParams(temperature=0, max_new_tokens=32))[0].samples[0]
    params = SamplingParams(temperature=0, max_new_tokens=32, frequency_penalty=3.0, penalty_ngram=2)
    penalised = smol_engine.generate([REPETITIVE], params)[0].samples[0]
    assert repeated_bigrams(penalised.token_ids) < repeated_bigrams(plain.token_ids) // 2


def test_controls_stay_with_their_row_as_rows_leave_the_batch(tiny_engine, tokenizer):
    """Rows of different budgets share a bucket and leave it at different steps: each row's output with
    controls equals its output alone, and the rows without controls are as they are without any."""
    prompts = [ask("hi"), ask("what is two plus two?"), ask("name a colour"), ask("a longer question " * 4)]
    plain = [SamplingParams(temperature=0, max_new_tokens=k) for k in (3, 9, 5, 12)]
    alone_plain = [tiny_engine.generate([p], s)[0].samples[0].token_ids for p, s in zip(prompts, plain)]
    first = tokenizer.decode([alone_plain[1][0]])
    controlled = SamplingParams(temperature=0, max_new_tokens=9, frequency_penalty=5.0, logit_bias={first: -100})
    mixed = [plain[0], controlled, plain[2], plain[3]]
    together = [c.samples[0].token_ids for c in tiny_engine.generate(prompts, mixed)]
    assert together[1] == tiny_engine.generate([prompts[1]], controlled)[0].samples[0].token_ids
    assert together[1] != alone_plain[1] and repeats(together[1]) == 0
    assert [together[i] for i in (0, 2, 3)] == [alone_plain[i] for i in (0, 2, 3)]


# ---------------------------------------------------------------------------------------------- llama.cpp
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")


@pytest.fixture(scope="module")
def llamacpp_engine(smol_dir) -> Iterator:
    from sao.engine.factory import build_engine

    built = build_engine("smollm2-135m", section("llamacpp", batch_size=4), progress=False)
    yield built
    built.close()


@needs_llama_cpp
def test_llama_cpp_honours_bias_and_penalties(llamacpp_engine, tokenizer):
    prompt = [ask("What is the capital of France?")]
    plain = llamacpp_engine.generate(prompt, GREEDY)[0].samples[0]
    text = tokenizer.decode([plain.token_ids[0]])
    banned = llamacpp_engine.generate(prompt, SamplingParams(temperature=0, max_new_tokens=24, logit_bias={text: -100}))
    assert plain.token_ids[0] not in banned[0].samples[0].token_ids
    boosted = llamacpp_engine.generate(
        prompt, SamplingParams(temperature=0, max_new_tokens=4, logit_bias={" Paris": 100})
    )
    assert set(boosted[0].samples[0].token_ids) <= {first_id(tokenizer, "Paris"), first_id(tokenizer, " Paris")}

    loop = llamacpp_engine.generate([REPETITIVE], SamplingParams(temperature=0, max_new_tokens=32))[0].samples[0]
    params = SamplingParams(temperature=0, max_new_tokens=32, frequency_penalty=2.0)
    penalised = llamacpp_engine.generate([REPETITIVE], params)[0].samples[0]
    assert repeats(penalised.token_ids) < repeats(loop.token_ids) // 2
    bigram = SamplingParams(temperature=0, max_new_tokens=32, frequency_penalty=3.0, penalty_ngram=2)
    unrepeated = llamacpp_engine.generate([REPETITIVE], bigram)[0].samples[0]
    assert repeated_bigrams(unrepeated.token_ids) < repeated_bigrams(loop.token_ids) // 2


# ---------------------------------------------------------------------------------------------- vLLM
def test_vllm_keywords_carry_penalties_and_resolved_bias(tokenizer):
    params = SamplingParams(temperature=0.7, max_new_tokens=8, frequency_penalty=0.5, presence_penalty=0.25)
    assert sampling_kwargs(params, 11, {5: -100.0}) == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 8,
        "stop": [],
        "seed": 11,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.25,
        "logit_bias": {5: -100.0},
    }
    assert set(sampling_kwargs(SamplingParams(), 1)) == {"n", "temperature", "top_p", "max_tokens", "stop", "seed"}
    sorry = SamplingParams(temperature=0, logit_bias={"Sorry": -100})
    (request,) = generation_requests(tokenizer, [ask("hi")], sorry)
    assert request.sampling["logit_bias"] == bias_ids(tokenizer, sorry.logit_bias)
    assert len(request.sampling["logit_bias"]) == 2


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)


class RecordingLLM:
    def __init__(self):
        self.calls = []

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append(sampling_params)
        out = SimpleNamespace(text="x", token_ids=[7], finish_reason="length", stop_reason=None, logprobs=None)
        return [SimpleNamespace(outputs=[out], prompt_logprobs=None) for _ in prompts]


def test_vllm_refuses_an_ngram_penalty_and_sends_the_rest(tokenizer, fake_vllm):
    llm = RecordingLLM()
    engine = VLLMEngine(llm, tokenizer, progress=False)
    with pytest.raises(CapabilityError, match=r"^engine backend 'vllm' lacks ngram_penalty .* request 1 of a generate"):
        engine.generate([ask("hi"), ask("yo")], [SamplingParams(), SamplingParams(penalty_ngram=3)])
    assert llm.calls == []
    engine.generate([ask("hi")], SamplingParams(frequency_penalty=1.5, logit_bias={"Sorry": -100}))
    (sent,) = llm.calls[0]
    assert sent["frequency_penalty"] == 1.5 and sent["logit_bias"] == bias_ids(tokenizer, (("Sorry", -100.0),))


# ---------------------------------------------------------------------------------------------- OpenAI
def test_openai_body_maps_penalties_and_bias_only_when_set():
    params = SamplingParams(temperature=0, max_new_tokens=8, frequency_penalty=0.5, presence_penalty=-0.25)
    assert sampling_body(params, None, {37388: -100.0, 5: 2.0}) == {
        "max_tokens": 8,
        "temperature": 0,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "logit_bias": {"5": 2.0, "37388": -100.0},
    }
    assert sampling_body(SamplingParams(temperature=0, max_new_tokens=8), None) == {"max_tokens": 8, "temperature": 0}


class RecordingCompletions:
    """Stands in for the client's ``completions``: records each request, answers one token of text."""

    def __init__(self):
        self.bodies = []

    async def create(self, **body):
        self.bodies.append(body)
        usage = SimpleNamespace(completion_tokens=1, prompt_tokens=len(body["prompt"]))
        return SimpleNamespace(choices=[SimpleNamespace(text="Hi", finish_reason="length")], usage=usage)


def test_openai_engines_send_what_they_can_and_refuse_the_rest(tokenizer):
    url = "http://127.0.0.1:9/v1"  # nothing is sent there: the client is replaced or the call refused first
    completions = OpenAIEngine(url, "smollm2-135m", tokenizer=tokenizer, progress=False)
    chat = OpenAIEngine(url, "smollm2-135m", api="chat", progress=False)
    try:
        with pytest.raises(CapabilityError, match=r"^engine backend 'openai \(api: completions\)' lacks ngram_penalty"):
            completions.generate([ask("hi")], SamplingParams(frequency_penalty=1.0, penalty_ngram=2))
        with pytest.raises(CapabilityError, match=r"^engine backend 'openai \(api: chat\)' lacks logit_bias"):
            chat.generate([ask("hi")], SamplingParams(logit_bias={"Sorry": -100}))
        assert completions.stats["requests"] == chat.stats["requests"] == 0

        recorder = RecordingCompletions()
        completions._client = SimpleNamespace(completions=recorder, close=chat._client.close)
        params = SamplingParams(temperature=0, max_new_tokens=4, presence_penalty=0.5, logit_bias={"Sorry": -100})
        completions.generate([ask("hi")], params)
        (body,) = recorder.bodies
        assert body["presence_penalty"] == 0.5
        assert body["logit_bias"] == {str(t): b for t, b in bias_ids(tokenizer, params.logit_bias).items()}
    finally:
        completions._client = chat._client  # the stand-in has no connections; close the real one once
        chat.close()


# ---------------------------------------------------------------------------------------------- Ray
def test_controls_survive_the_trip_to_a_ray_actor():
    params = SamplingParams(logit_bias={"Sorry": -100}, frequency_penalty=0.5, presence_penalty=0.1, penalty_ngram=2)
    assert pickle.loads(pickle.dumps(params)) == params  # Ray ships arguments pickled


def test_ray_refuses_on_the_driver_what_its_backend_lacks():
    engine = object.__new__(RayEngine)  # no cluster: a refusal must come before any actor is asked
    settings = section("vllm", ray={"enabled": True, "num_actors": 2})
    engine.settings, engine.progress, engine._cluster = settings, False, None
    engine.kind, engine.capabilities = engine_kind(settings), CAPABILITIES[engine_kind(settings)]
    with pytest.raises(CapabilityError, match=r"^engine backend 'vllm' lacks ngram_penalty"):
        engine.generate([ask("hi")], SamplingParams(penalty_ngram=2))
    with pytest.raises(RuntimeError, match="closed"):  # what it can do goes on to the (missing) actors
        engine.generate([ask("hi")], SamplingParams(logit_bias={"Sorry": -100}))
