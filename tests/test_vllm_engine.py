"""The vLLM engine without vLLM: request building, output mapping and the missing-vLLM error.

vLLM's outputs are stood in for by SimpleNamespace objects shaped like its RequestOutput,
CompletionOutput and Logprob. The last test runs the real engine and only runs where vLLM
and a GPU are present.
"""

import builtins
import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from conftest import ask, save_with_tokenizer
from sao.engine import RawPrompt, SamplingParams, TokenPrompt, derive_seed
from sao.engine.chat_template import encode_prompts
from sao.engine.config import EngineSection
from sao.engine.transformers_engine import TransformersEngine
from sao.engine.vllm_engine import (
    INSTALL_HINT,
    SCORE_SAMPLING,
    GenerationRequest,
    ScoreRequest,
    VLLMEngine,
    check_device,
    check_logprobs,
    generation_requests,
    import_vllm,
    llm_kwargs,
    sampling_kwargs,
    score_requests,
    to_completions,
    to_next_token_logprobs,
    to_token_logprobs,
    top_k_sampling,
)
from sao.errors import ConfigError
from sao.models import load_model

PREFILL = [*ask("Name a colour."), {"role": "assistant", "content": "The colour is"}]
CONVERSATIONS = [ask("hi"), ask("what is two plus two?"), PREFILL]


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    return AutoTokenizer.from_pretrained(smol_dir)


# ---------------------------------------------------------------------------------------------- requests
def test_each_sample_is_its_own_request_with_the_in_process_seed(tokenizer):
    params = SamplingParams(n=3, temperature=0.8, top_p=0.9, max_new_tokens=20, stop=("\n\n", "User:"), seed=7)
    requests = generation_requests(tokenizer, CONVERSATIONS[:2], params)
    assert [(r.conv, r.sample) for r in requests] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    for r in requests:
        assert r.seed == derive_seed(7, r.sample)
        assert r.sampling == {
            "n": 1,
            "temperature": 0.8,
            "top_p": 0.9,
            "max_tokens": 20,
            "stop": ["\n\n", "User:"],
            "seed": r.seed,
        }


def test_greedy_requests_have_no_seed(tokenizer):
    requests = generation_requests(tokenizer, CONVERSATIONS, SamplingParams(temperature=0, max_new_tokens=5, seed=3))
    assert [r.seed for r in requests] == [None, None, None]
    assert all(r.sampling["temperature"] == 0 and r.sampling["n"] == 1 for r in requests)


def test_unseeded_samples_still_get_their_own_seed(tokenizer):
    requests = generation_requests(tokenizer, [CONVERSATIONS[0]], SamplingParams(n=4, temperature=1.0))
    seeds = [r.seed for r in requests]
    assert None not in seeds and len(set(seeds)) == 4


def test_per_request_params_and_prompt_ids(tokenizer):
    params = [SamplingParams(n=2, seed=1), SamplingParams(temperature=0), SamplingParams(n=1, seed=2, stop=("x",))]
    requests = generation_requests(tokenizer, CONVERSATIONS, params)
    assert [(r.conv, r.sample) for r in requests] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert [r.sampling["stop"] for r in requests] == [[], [], [], ["x"]]
    prompts = encode_prompts(tokenizer, CONVERSATIONS)
    assert [r.prompt_token_ids for r in requests] == [prompts[0], prompts[0], prompts[1], prompts[2]]
    # The prefill continues the assistant message rather than opening a new turn.
    assert tokenizer.decode(prompts[2]).endswith("The colour is")
    with pytest.raises(ConfigError, match="2 SamplingParams for 3"):
        generation_requests(tokenizer, CONVERSATIONS, params[:2])


def test_score_requests_append_the_continuation_tokenized_on_its_own(tokenizer):
    conts = ["Hello there!", " 4"]
    requests = score_requests(tokenizer, CONVERSATIONS[:2], conts)
    for request, prompt, cont in zip(requests, encode_prompts(tokenizer, CONVERSATIONS[:2]), conts):
        target = tokenizer(cont, add_special_tokens=False)["input_ids"]
        assert request.prompt_token_ids == prompt + target
        assert request.start == len(prompt) and request.target == target
    with pytest.raises(ValueError, match="2 prompts but 1"):
        score_requests(tokenizer, CONVERSATIONS[:2], conts[:1])


def test_raw_and_token_prompts_become_prompt_token_ids_as_in_process(tokenizer):
    story = "Once upon a time"
    prompts = [RawPrompt(story), TokenPrompt([5, 6, 7]), CONVERSATIONS[0]]
    requests = generation_requests(tokenizer, prompts, SamplingParams(temperature=0))
    assert [r.prompt_token_ids for r in requests] == [
        tokenizer(story)["input_ids"],
        [5, 6, 7],
        encode_prompts(tokenizer, CONVERSATIONS[:1])[0],
    ]
    (scored,) = score_requests(tokenizer, [TokenPrompt([5, 6, 7])], [[8, 9]])
    assert (scored.prompt_token_ids, scored.start) == ([5, 6, 7, 8, 9], 3)


# ----------------------------------------------------------------------------------------------- outputs
def completion_output(token_ids, finish_reason, stop_reason=None, text="t", logprobs=None):
    return SimpleNamespace(
        index=0, text=text, token_ids=token_ids, finish_reason=finish_reason, stop_reason=stop_reason, logprobs=logprobs
    )


def request_output(*completion_outputs, prompt_logprobs=None):
    return SimpleNamespace(prompt_logprobs=prompt_logprobs, outputs=list(completion_outputs))


def request(conv, sample, seed=None):
    return GenerationRequest(conv, sample, [1, 2], {"seed": seed})


def test_outputs_land_in_their_conversation_and_sample_slot():
    requests = [request(1, 0, 10), request(0, 1, 11), request(0, 0, 12)]
    outputs = [request_output(completion_output([i], "length", text=f"r{i}")) for i in range(3)]
    completions = to_completions(requests, outputs, counts=[2, 1])
    assert [[s.text for s in c.samples] for c in completions] == [["r2", "r1"], ["r0"]]
    assert [[s.seed for s in c.samples] for c in completions] == [[12, 11], [10]]
    with pytest.raises(RuntimeError, match="2 outputs for 3 requests"):
        to_completions(requests, outputs[:2], counts=[2, 1])


@pytest.mark.parametrize(
    ("finish", "stop_reason", "want_ids", "want_reason"),
    [
        ("stop", None, [5, 6], "stop"),  # EOS: vLLM keeps it, sao drops it
        ("stop", 7, [5, 6], "stop"),  # an extra EOS id from generation_config
        ("stop", "\n\n", [5, 6, 7], "stop"),  # stop string: the token that completed it stays
        ("length", None, [5, 6, 7], "length"),
        ("abort", None, [5, 6, 7], "length"),  # did not end on its own: cut off
    ],
)
def test_finish_reasons_and_trailing_eos(finish, stop_reason, want_ids, want_reason):
    out = request_output(completion_output([5, 6, 7], finish, stop_reason, text="five six"))
    sample = to_completions([request(0, 0, 3)], [out], counts=[1])[0].samples[0]
    assert (sample.token_ids, sample.finish_reason, sample.text, sample.seed) == (want_ids, want_reason, "five six", 3)


def logprob(value):
    return SimpleNamespace(logprob=value, rank=1, decoded_token=None)


def test_score_reads_the_actual_token_at_each_continuation_position():
    # Prompt [10, 11, 12], continuation [20, 21]; other ids are decoys that must not be read.
    req = ScoreRequest([10, 11, 12, 20, 21], start=3)
    positions = [
        None,
        {11: logprob(-1.0), 99: logprob(-0.1)},
        {12: logprob(-2.0)},
        {20: logprob(-3.0), 21: logprob(-0.2)},
        {99: logprob(-0.3), 21: logprob(-4.0)},
    ]
    scored = to_token_logprobs(req, request_output(completion_output([0], "length"), prompt_logprobs=positions))
    assert scored.token_ids == [20, 21]
    assert scored.logprobs == [-3.0, -4.0]
    empty = to_token_logprobs(ScoreRequest([10, 11], start=2), request_output(prompt_logprobs=positions[:2]))
    assert (empty.token_ids, empty.logprobs) == ([], [])


def test_top_logprobs_ask_one_greedy_token_and_rank_its_position():
    # vLLM's position holds the top k and, when it is not among them, the sampled token: here 7 is the extra.
    position = {3: logprob(-2.0), 5: logprob(-0.5), 9: logprob(-1.0), 7: logprob(-6.0)}
    output = request_output(completion_output([5], "length", logprobs=[position]))
    top = to_next_token_logprobs(output, 3)
    assert (top.token_ids, top.logprobs) == ([5, 9, 3], [-0.5, -1.0, -2.0])
    assert top_k_sampling(10) == {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprobs": 10, "detokenize": False}


def test_engine_top_logprobs_feed_token_ids_and_map_back(tokenizer, fake_vllm):
    class TopK(FakeLLM):
        def generate(self, prompts, sampling_params, use_tqdm):
            self.calls.append((prompts, sampling_params))
            return [
                request_output(
                    completion_output(
                        [0], "length", logprobs=[{p["prompt_token_ids"][-1]: logprob(-0.1), 0: logprob(-3.0)}]
                    )
                )
                for p in prompts
            ]

    llm = TopK()
    engine = VLLMEngine(llm, tokenizer, progress=False)
    tops = engine.top_logprobs([TokenPrompt([1, 2, 3]), CONVERSATIONS[0]], 2)
    prompts, params = llm.calls[0]
    assert prompts == [
        {"prompt_token_ids": [1, 2, 3]},
        {"prompt_token_ids": encode_prompts(tokenizer, CONVERSATIONS[:1])[0]},
    ]
    assert params == [top_k_sampling(2)] * 2
    assert tops[0].token_ids == [3, 0] and tops[0].logprobs == [-0.1, -3.0]


def test_top_k_and_logprobs_are_sent_only_when_set():
    plain = sampling_kwargs(SamplingParams(temperature=0.7, max_new_tokens=5), 1)
    assert "top_k" not in plain and "logprobs" not in plain
    asked = sampling_kwargs(SamplingParams(temperature=0.7, top_k=15, max_new_tokens=5, logprobs=True), 1)
    # logprobs=0: vLLM returns the sampled token's log-prob and no others.
    assert asked == plain | {"top_k": 15, "logprobs": 0}


@pytest.mark.parametrize(
    ("finish", "stop_reason", "want_ids"),
    [
        ("stop", None, [5, 6]),  # the EOS's entry goes with the EOS
        ("stop", "\n\n", [5, 6, 7]),  # a stop string's last token keeps its entry
        ("length", None, [5, 6, 7]),
    ],
)
def test_sample_logprobs_are_read_for_the_kept_tokens(finish, stop_reason, want_ids):
    # One {token id: Logprob} per generated token; the decoys are other tokens and must not be read.
    positions = [{5: logprob(-0.5), 1: logprob(-9.0)}, {6: logprob(-1.5)}, {2: logprob(-8.0), 7: logprob(-2.5)}]
    out = request_output(completion_output([5, 6, 7], finish, stop_reason, logprobs=positions))
    sample = to_completions([request(0, 0, 3)], [out], counts=[1])[0].samples[0]
    assert sample.token_ids == want_ids
    assert sample.logprobs == [-0.5, -1.5, -2.5][: len(want_ids)]
    plain = to_completions([request(0, 0, 3)], [request_output(completion_output([5], "length"))], counts=[1])
    assert plain[0].samples[0].logprobs is None


def test_logprobs_with_logit_controls_are_refused_on_vllm():
    check_logprobs([SamplingParams(logprobs=True), SamplingParams(frequency_penalty=1.0)])
    with pytest.raises(ConfigError, match=r"^logprobs: backend 'vllm' reports them before logit_bias .* request 1 "):
        check_logprobs([SamplingParams(), SamplingParams(logprobs=True, logit_bias={"Sorry": -5})])
    with pytest.raises(ConfigError, match=r"^logprobs: backend 'vllm'"):
        check_logprobs([SamplingParams(logprobs=True, presence_penalty=0.5)])


# ------------------------------------------------------------------------------------------------ engine
def test_llm_kwargs_follow_the_recipe():
    settings = EngineSection.model_validate(
        {"backend": "vllm", "dtype": "bfloat16", "vllm": {"tensor_parallel_size": 2, "max_model_len": 4096}}
    )
    kwargs = llm_kwargs("/m", settings, trust_remote_code=True, seed=5)
    assert kwargs == {
        "model": "/m",
        "dtype": "bfloat16",
        "trust_remote_code": True,
        "seed": 5,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
        "enable_prefix_caching": True,
        "enforce_eager": False,
        "max_model_len": 4096,
    }
    defaults = llm_kwargs("/m", EngineSection(), trust_remote_code=False, seed=0)
    assert defaults["dtype"] == "auto" and "max_model_len" not in defaults


def test_device_must_be_left_to_vllm():
    check_device("auto")
    check_device("cuda")
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES"):
        check_device("cpu")


def test_missing_vllm_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(ConfigError) as info:
        import_vllm()
    assert str(info.value) == INSTALL_HINT
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs vLLM and a GPU"):
        VLLMEngine.from_spec("smollm2-135m", EngineSection(backend="vllm"))


def test_broken_vllm_install_names_the_cause(monkeypatch):
    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "vllm":
            raise ImportError("libcudart.so.12: cannot open shared object file\nmore detail", name="vllm._C")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(ConfigError) as info:
        import_vllm()
    cause = "libcudart.so.12: cannot open shared object file"
    assert str(info.value) == f"backend 'vllm': vLLM is installed but does not import: {cause}"


class FakeLLM:
    """Answers like vllm.LLM.generate: one RequestOutput per prompt, in order."""

    def __init__(self):
        self.calls = []
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=self.shutdown))
        self.shut_down = False

    def shutdown(self):
        self.shut_down = True

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            positions = [None] + [{t: logprob(-float(i))} for i, t in enumerate(ids[1:], 1)]
            # With logprobs: the sampled tokens' own, as vLLM gives them for logprobs=0 (the EOS's included).
            sampled = [{ids[-1]: logprob(-0.25)}, {0: logprob(-0.75)}] if params.get("logprobs") == 0 else None
            output = completion_output([ids[-1], 0], "stop", logprobs=sampled)
            outputs.append(request_output(output, prompt_logprobs=positions))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in vllm module whose SamplingParams keeps its keywords."""
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)


def test_engine_feeds_token_ids_and_maps_back(tokenizer, fake_vllm):
    llm = FakeLLM()
    engine = VLLMEngine(llm, tokenizer, progress=False)
    out = engine.generate(CONVERSATIONS[:2], SamplingParams(n=2, seed=1, max_new_tokens=4))
    prompts, params = llm.calls[0]
    assert prompts == [{"prompt_token_ids": p} for p in encode_prompts(tokenizer, CONVERSATIONS[:2]) for _ in range(2)]
    assert [p["seed"] for p in params] == [derive_seed(1, 0), derive_seed(1, 1)] * 2
    # FakeLLM echoes the prompt's last token, then an EOS that the mapping drops.
    last = [p["prompt_token_ids"][-1] for p in prompts[::2]]
    assert [[s.token_ids for s in c.samples] for c in out] == [[[last[0]]] * 2, [[last[1]]] * 2]
    assert all(s.logprobs is None for c in out for s in c.samples)
    (asked,) = engine.generate(CONVERSATIONS[:1], SamplingParams(temperature=0, top_k=4, logprobs=True))
    assert llm.calls[-1][1][0]["logprobs"] == 0 and llm.calls[-1][1][0]["top_k"] == 4
    assert (asked.samples[0].token_ids, asked.samples[0].logprobs) == ([last[0]], [-0.25])
    with pytest.raises(ConfigError, match="^logprobs: backend 'vllm'"):
        engine.generate(CONVERSATIONS[:1], SamplingParams(logprobs=True, frequency_penalty=0.5))
    del llm.calls[1:]

    scored = engine.score(CONVERSATIONS[:1], ["Hi!"])[0]
    prompts, params = llm.calls[1]
    start = len(encode_prompts(tokenizer, CONVERSATIONS[:1])[0])
    assert params == [SCORE_SAMPLING]
    assert scored.token_ids == prompts[0]["prompt_token_ids"][start:]
    assert scored.logprobs == [-float(i) for i in range(start, len(prompts[0]["prompt_token_ids"]))]

    assert engine.generate([], SamplingParams()) == []
    engine.close()
    engine.close()  # a second close is a no-op
    assert llm.shut_down
    with pytest.raises(RuntimeError, match="after close"):
        engine.generate(CONVERSATIONS[:1], SamplingParams())


def test_engine_refuses_what_it_lacks_before_vllm_sees_it(tokenizer, fake_vllm):
    llm = FakeLLM()
    engine = VLLMEngine(llm, tokenizer, progress=False)
    image = [{"role": "user", "content": [{"type": "image", "image": "cat.png"}, {"type": "text", "text": "Who?"}]}]
    # A text model's engine (no processor) takes no images: one line, before vLLM sees anything.
    with pytest.raises(ConfigError, match=r"^multimodal: this vLLM engine's model is not a vision-language model"):
        engine.generate([CONVERSATIONS[0], image], SamplingParams())
    with pytest.raises(ConfigError, match=r"^top_logprobs: vLLM returns at most 20 log-probs a position; asked for 21"):
        engine.top_logprobs([TokenPrompt([1, 2])], 21)
    assert llm.calls == []
    engine.generate([RawPrompt("Once upon a time")], SamplingParams(max_new_tokens=2))
    assert llm.calls[0][0] == [{"prompt_token_ids": tokenizer("Once upon a time")["input_ids"]}]


# -------------------------------------------------------------------------------------------- real vLLM
needs_vllm_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None, reason="needs vLLM and a CUDA GPU"
)


@pytest.fixture(scope="module")
def wide_tiny_dir(tmp_path_factory, smol_dir) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer and 64-wide heads.

    The conftest tiny model has 16-wide heads, below what vLLM's float32 attention (Triton) takes.
    """
    tok = AutoTokenizer.from_pretrained(smol_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    return save_with_tokenizer(LlamaForCausalLM(config), tok, tmp_path_factory.mktemp("wide-tiny"))


@needs_vllm_gpu
def test_real_vllm_matches_the_in_process_engine(wide_tiny_dir):
    # float32 on both sides: bf16 rounding would flip near-tied greedy choices of a random model.
    reference = TransformersEngine(load_model(str(wide_tiny_dir), dtype="float32"), progress=False)
    settings = EngineSection.model_validate(
        {
            "backend": "vllm",
            "dtype": "float32",
            "vllm": {"gpu_memory_utilization": 0.3, "max_model_len": 512, "enforce_eager": True},
        }
    )
    engine = VLLMEngine.from_spec(str(wide_tiny_dir), settings, progress=False)
    try:
        greedy = SamplingParams(temperature=0, max_new_tokens=12)
        ours, ref = engine.generate(CONVERSATIONS, greedy), reference.generate(CONVERSATIONS, greedy)
        for got, want in zip(ours, ref):
            assert got.samples[0].token_ids == want.samples[0].token_ids
            assert got.samples[0].finish_reason == want.samples[0].finish_reason

        # The sampled tokens' log-probs (raw, as the in-process engine's), and top_k=1 sampling is greedy.
        with_logprobs = SamplingParams(temperature=0, max_new_tokens=12, logprobs=True)
        ours, ref = engine.generate(CONVERSATIONS, with_logprobs), reference.generate(CONVERSATIONS, with_logprobs)
        for got, want in zip(ours, ref):
            assert len(got.samples[0].logprobs) == got.samples[0].num_tokens
            assert got.samples[0].logprobs == pytest.approx(want.samples[0].logprobs, abs=2e-3)
        one = engine.generate(CONVERSATIONS, SamplingParams(temperature=1.0, top_k=1, max_new_tokens=12, seed=3))
        assert [c.samples[0].token_ids for c in one] == [c.samples[0].token_ids for c in ours]

        conts = ["Paris is the capital.", "4", "a b c d e f g"]
        for got, want in zip(engine.score(CONVERSATIONS, conts), reference.score(CONVERSATIONS, conts)):
            assert got.token_ids == want.token_ids
            assert got.logprobs == pytest.approx(want.logprobs, abs=2e-3)

        # A seeded sample comes out the same alone as in a batch of other requests.
        sampled = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=42)
        alone = engine.generate([CONVERSATIONS[1]], sampled)[0].samples
        batched = engine.generate(CONVERSATIONS, sampled)[1].samples
        assert [s.token_ids for s in alone] == [s.token_ids for s in batched]
        assert [s.seed for s in alone] == [derive_seed(42, 0), derive_seed(42, 1)]
    finally:
        engine.close()
