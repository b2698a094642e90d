"""The OpenAI-compatible engine against a real llama.cpp server on loopback, plus its pure parts.

The server (llama-cpp-python) serves the embedded model's own GGUF file, the weights the
in-process engine dequantises, so the two engines can be compared output for output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from conftest import GREEDY_QUESTIONS, common_prefix
from llama_server import LlamaServer, embedded_gguf, free_port
from sao.engine import CapabilityError, RawPrompt, SamplingParams, TokenPrompt, derive_seed
from sao.engine.chat_template import encode_prompt, render_prompt
from sao.engine.config import EngineSection
from sao.engine.factory import engine_model_info
from sao.engine.openai_engine import (
    UNKNOWN_ID,
    EndpointError,
    OpenAIEngine,
    RetryPolicy,
    backoff_delay,
    continuation_logprobs,
    is_retryable,
    sampling_body,
    score_body,
    without_bos,
)
from sao.errors import LogprobsUnavailable
from sao.stages.generate import ChatPrompt, GenerateConfig, run_generate
from sao.stages.judge import make_rows
from sao.store import read_rows
from sao.synth.config import SynthConfig
from sao.synth.ranking import first_wins_probability

MODEL = "smollm2-135m"
KEY_ENV = "SAO_TEST_LLAMA_KEY"
KEY = "sk-test-3f9a1c77e2"  # the server demands it, so every test below proves the key is sent
# Quick retries: a killed server is back within seconds, and the tests should not idle.
PATIENT = RetryPolicy(max_retries=60, backoff=0.1, max_delay=1.0)


def ask(question: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": question}]


# ---------------------------------------------------------------------------------------- pure parts
def test_backoff_doubles_from_the_base_delay_up_to_the_cap_with_full_jitter():
    policy = RetryPolicy(max_retries=9, backoff=0.5, max_delay=30.0)
    assert [backoff_delay(policy, attempt, 1.0) for attempt in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(policy, 3, 0.0) == 0.0
    assert backoff_delay(policy, 3, 0.25) == 1.0


def status_error(status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://server/v1/completions")
    return openai.APIStatusError("refused", response=httpx.Response(status, request=request), body=None)


def test_retryable_errors_are_429_408_5xx_timeouts_and_lost_connections():
    request = httpx.Request("POST", "http://server/v1/completions")
    assert all(is_retryable(status_error(s)) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable(status_error(s)) for s in (400, 401, 403, 404, 422))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert is_retryable(openai.APITimeoutError(request=request))
    assert not is_retryable(ValueError("a bug, not the network"))


def test_sampling_body_sends_seed_and_top_p_only_when_sampling():
    greedy = sampling_body(SamplingParams(temperature=0, max_new_tokens=8, stop=("\n",)), None)
    assert greedy == {"max_tokens": 8, "temperature": 0, "stop": ["\n"]}
    sampled = sampling_body(SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=8), 123)
    assert sampled == {"max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 123}
    body = score_body("m")
    assert body["echo"] is True and body["max_tokens"] == 1 and "prompt" not in body  # added per request
    assert without_bos("<s>[INST] hi", "<s>") == "[INST] hi" and without_bos("[INST] hi", "<s>") == "[INST] hi"
    assert without_bos("<s>hi", None) == "<s>hi"


def test_continuation_is_found_from_the_end_whatever_the_server_makes_of_special_tokens():
    # llama.cpp: special tokens render as "" in text_offset; one generated token at the end.
    tokens = ["system", "\n", "Hi", "", "\n", "ass", "istant", "\n", "ranking", ":", " 1", "."]
    offsets = [0, 6, 7, 9, 9, 10, 13, 19, 20, 27, 28, 30]
    logprobs = [None, -1.0, -2.0, -3.0, -0.1, -0.2, -0.3, -0.4, -5.0, -0.5, -0.6, -0.7]
    assert continuation_logprobs(offsets, tokens, logprobs, generated=1, chars=len("ranking: 1")) == [-5.0, -0.5, -0.6]
    # The model ended at once (EOS is not echoed): the continuation ends with the last entry.
    assert continuation_logprobs(offsets[:-1], tokens[:-1], logprobs[:-1], 0, len("ranking: 1")) == [-5.0, -0.5, -0.6]
    # vLLM-style: special tokens spelled out; a token straddling the boundary is left out.
    tokens = ["<|im_start|>", "assistant", "\nranking", ":", " 1", "<|im_end|>"]
    offsets = [0, 12, 21, 29, 30, 32]
    assert continuation_logprobs(offsets, tokens, [None, -1.0, -2.0, -3.0, -4.0, -9.0], 1, len("ranking: 1")) == [
        -3.0,
        -4.0,
    ]


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 429, then 503, then a completion: what an overloaded server does. Keeps the request bodies."""

    statuses: list[int] = []
    bodies: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FlakyHandler.bodies.append(request)
        status = FlakyHandler.statuses.pop(0) if FlakyHandler.statuses else 200
        prompt = request.get("prompt")
        counted = len(prompt) if isinstance(prompt, list) else 3
        body = {"error": {"message": "slow down"}} if status != 200 else completion_json("done", counted)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def completion_json(text: str, prompt_tokens: int = 3) -> dict[str, object]:
    return {
        "id": "c",
        "object": "text_completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


def test_429_and_503_are_retried_and_counted(smol_dir):
    FlakyHandler.statuses, FlakyHandler.bodies = [429, 503], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    engine = OpenAIEngine(
        f"http://127.0.0.1:{server.server_port}/v1",
        MODEL,
        tokenizer=AutoTokenizer.from_pretrained(smol_dir),
        retry=RetryPolicy(max_retries=3, backoff=0.01),
        progress=False,
    )
    try:
        (completion,) = engine.generate([ask("Hi")], SamplingParams(temperature=0, max_new_tokens=4))
    finally:
        engine.close()
        server.shutdown()
    assert completion.samples[0].text == "done"
    assert engine.stats == {"requests": 3, "retries": 2, "logprobs_unavailable": 0, "prompt_token_mismatches": 0}
    # The prompt goes out as the in-process engine's token ids (issue 14: text would get a second BOS).
    tokenizer = engine.tokenizer
    assert FlakyHandler.bodies[-1]["prompt"] == encode_prompt(tokenizer, ask("Hi")) and engine.prompt_format == "ids"


def test_retries_give_up_with_a_clear_error_when_nothing_listens(smol_dir):
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIEngine(
        url, MODEL, tokenizer=AutoTokenizer.from_pretrained(smol_dir), retry=RetryPolicy(2, 0.01), progress=False
    )
    with pytest.raises(EndpointError, match=r"failed after 2 retries: APIConnectionError"):
        engine.generate([ask("Hi")], SamplingParams(temperature=0, max_new_tokens=4))
    engine.close()
    assert engine.stats["requests"] == 3 and engine.stats["retries"] == 2


def test_prompt_kinds_and_calls_it_lacks_are_refused_before_any_request(smol_dir):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: a request would fail otherwise
    completions = OpenAIEngine(url, MODEL, tokenizer=AutoTokenizer.from_pretrained(smol_dir), progress=False)
    chat = OpenAIEngine(url, MODEL, api="chat", progress=False)
    kind = r"^engine backend 'openai \(api: completions\)' lacks"
    try:
        with pytest.raises(CapabilityError, match=rf"{kind} token_prompts .* prompt 0 of a generate call needs$"):
            completions.generate([TokenPrompt([1, 2, 3])], SamplingParams())
        with pytest.raises(CapabilityError, match=rf"{kind} raw_prompts .* prompt 1 of a score call needs$"):
            completions.score([ask("Hi"), RawPrompt("Once")], ["a", "b"])
        with pytest.raises(CapabilityError, match=rf"{kind} token_prompts .* continuation 0 of a score call needs$"):
            completions.score([ask("Hi")], [[1, 2]])
        with pytest.raises(CapabilityError, match=rf"{kind} top_logprobs "):
            completions.top_logprobs([ask("Hi")], 5)
        parts = [{"role": "user", "content": [{"type": "image", "image": "https://example.com/cat.png"}]}]
        with pytest.raises(CapabilityError, match=r"^engine backend 'openai \(api: chat\)' lacks multimodal"):
            chat.generate([parts], SamplingParams())
        assert completions.stats["requests"] == chat.stats["requests"] == 0
    finally:
        completions.close()
        chat.close()


# ---------------------------------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (pip install it; CI does)")
    server = LlamaServer(embedded_gguf(MODEL), free_port(), KEY, tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def openai_settings(base_url: str, **openai_fields: object) -> EngineSection:
    fields = {"base_url": base_url, "api_key_env": KEY_ENV, "max_concurrency": 4, "timeout": 60.0}
    return EngineSection(backend="openai", openai=fields | openai_fields)


def build(base_url: str, retry: RetryPolicy = PATIENT, **openai_fields: object) -> OpenAIEngine:
    """An engine from a recipe's engine section, as `sao run` builds it, with the key in the environment."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY)
        engine = OpenAIEngine.from_spec(MODEL, openai_settings(base_url, **openai_fields), progress=False)
    engine.retry = retry
    return engine


@pytest.fixture(scope="module")
def engine(server: LlamaServer) -> Iterator[OpenAIEngine]:
    engine = build(server.base_url)
    yield engine
    engine.close()


class RecordingProxy:
    """A pass-through HTTP proxy in front of a server that keeps every request and answer, to see what the
    server itself counted (``usage.prompt_tokens``)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removesuffix("/v1")
        self.exchanges: list[tuple[dict[str, object], int, dict[str, object]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: self.headers[k] for k in ("Content-Type", "Authorization") if self.headers[k]}
                answer = httpx.post(proxy.upstream + self.path, content=data, headers=headers, timeout=120)
                proxy.exchanges.append((json.loads(data), answer.status_code, answer.json()))
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answered(self) -> list[tuple[dict[str, object], dict[str, object]]]:
        return [(request, answer) for request, status, answer in self.exchanges if status == 200]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def bos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The embedded GGUF with ``tokenizer.ggml.add_bos_token`` set, as Llama 3's and Gemma's GGUFs have it: the
    server puts a BOS (SmolLM2's is <|im_start|>) before every text prompt."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (pip install it; CI does)")
    import gguf

    root = tmp_path_factory.mktemp("bos")
    path = root / "smollm2-adds-bos.gguf"
    shutil.copyfile(embedded_gguf(MODEL), path)
    reader = gguf.GGUFReader(path, "r+")
    field = reader.get_field("tokenizer.ggml.add_bos_token")
    field.parts[field.data[0]][0] = True
    reader.data.flush()
    del reader
    server = LlamaServer(path, free_port(), KEY, root / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_template_that_renders_its_bos_reaches_the_server_with_one(bos_server):
    # Issue 14: the template renders its BOS and a text prompt gets the server's too. Before the fix the
    # server counted one token more than the prompt has (measured: 31 for 30, a doubled <|im_start|>).
    proxy = RecordingProxy(bos_server.base_url)
    engine = build(proxy.base_url)
    conv = ask("Name a colour.")
    tokenizer = engine.tokenizer
    assert render_prompt(tokenizer, conv).startswith(tokenizer.bos_token)  # as Llama 3's <|begin_of_text|>
    prompt = encode_prompt(tokenizer, conv)
    reply = tokenizer("Red.", add_special_tokens=False)["input_ids"]
    try:
        engine.generate([conv], SamplingParams(temperature=0, max_new_tokens=4))
        engine.generate([conv, ask("Say hi.")], SamplingParams(temperature=0, max_new_tokens=4))
        (scored,) = engine.score([conv], ["Red."])
    finally:
        engine.close()
        proxy.close()
    answered = proxy.answered()
    counted = [answer["usage"]["prompt_tokens"] for _, answer in answered]  # type: ignore[index]
    print(f"prompt tokens the server counted: {counted}; the prompt has {len(prompt)}, + reply {len(reply)}")
    hi = len(encode_prompt(tokenizer, ask("Say hi.")))
    assert counted[-1] == len(prompt + reply)  # the score request: prompt and reply, one BOS
    assert sorted(counted[-3:-1]) == sorted([len(prompt), hi])  # two conversations at once
    # llama-cpp-python's server refuses token ids (its schema takes strings): one probe, the first request's
    # own prompt as text, shows that it adds a BOS, and every prompt after it goes without the template's.
    # The probe's answer (two BOS) is not used.
    assert engine.prompt_format == "text" and len(counted) == 5
    assert counted[:2] == [len(prompt) + 1, len(prompt)]
    assert engine.stats["prompt_token_mismatches"] == 0
    assert len(scored.logprobs) == len(reply) and scored.token_ids == reply


def test_greedy_outputs_follow_the_in_process_engine(engine, smol_engine):
    greedy = SamplingParams(temperature=0, max_new_tokens=32)
    served = engine.generate([ask(q) for q in GREEDY_QUESTIONS], greedy)
    local = smol_engine.generate([ask(q) for q in GREEDY_QUESTIONS], greedy)
    tokenize = engine.tokenizer
    agreed = [
        common_prefix(tokenize(s.samples[0].text, add_special_tokens=False)["input_ids"], t.samples[0].token_ids)
        for s, t in zip(served, local)
    ]
    print(f"greedy common-prefix tokens (of 32): {agreed}")
    # Same weights, different arithmetic: llama.cpp quantises activations to 8 bits for its
    # Q4_1 dot products, transformers runs the dequantised weights in float32. Log-probs
    # differ by up to ~0.3 nats per token (see the score test), so greedy paths part where
    # two candidates are close, at a point that moves with the CPU's kernels. Measured:
    # [6, 1, 23, 14, 0, 11, 9, 11, 3, 15] (median 10; 9 of 10 agree on the first token).
    # A wrong prompt (no chat template, no assistant header) parts at once nearly everywhere.
    assert sorted(agreed)[len(agreed) // 2] >= 5
    assert sum(a > 0 for a in agreed) >= 8
    assert all(s.samples[0].seed is None and s.samples[0].finish_reason in ("stop", "length") for s in served)


def test_seeded_samples_reproduce_and_carry_the_in_process_seeds(engine):
    sampling = SamplingParams(n=2, temperature=0.8, max_new_tokens=16, seed=7)
    first = engine.generate([ask("Suggest a name for a cat.")], sampling)[0].samples
    again = engine.generate([ask("Suggest a name for a cat.")], sampling)[0].samples
    assert [s.seed for s in first] == [derive_seed(7, 0), derive_seed(7, 1)]
    assert [s.text for s in first] == [s.text for s in again]
    assert first[0].text != first[1].text


def test_scores_from_echoed_logprobs_match_the_in_process_engine(engine, smol_engine):
    judge = ask("Which answer to 'Name a colour.' is better? Response 1: Red. Response 2: I like turtles.", "Be brief.")
    convs = [ask("Capital of France?", "Be brief."), ask("What is 12 times 12?", "Be brief."), judge, judge]
    continuations = ["Paris.", "144", "ranking: 1", "ranking: 2"]
    served = engine.score(convs, continuations)
    local = smol_engine.score(convs, continuations)
    diffs = [max(abs(a - b) for a, b in zip(s.logprobs, t.logprobs)) for s, t in zip(served, local)]
    # The judge's verdict is the log-odds of "ranking: 1" against "ranking: 2".
    odds_served, odds_local = served[2].total - served[3].total, local[2].total - local[3].total
    p_served = first_wins_probability(served[2].total, served[3].total)
    p_local = first_wins_probability(local[2].total, local[3].total)
    print(f"score: max per-token diff {[round(d, 3) for d in diffs]}; judge p_first {p_served:.3f} vs {p_local:.3f}")
    assert [s.token_ids for s in served] == [t.token_ids for t in local]  # same tokens, found in the echo
    # Quantised vs float32 arithmetic (see the greedy test). Measured: at most 0.18 nats per
    # token here (0.33 on longer prompts), judge log-odds 0.28 apart (p_first 0.417 vs 0.487).
    # Scoring the wrong tokens (an off-by-one in the echo) is off by several nats.
    assert max(diffs) < 0.6
    assert abs(odds_served - odds_local) < 0.6


# ---------------------------------------------------------------------------------------- failures
PROMPTS = [
    ChatPrompt(id=f"p{i:02d}", messages=ask(q, "Be brief."))
    for i, q in enumerate(
        [
            "Name three primary colours.",
            "Write a haiku about the sea.",
            "Explain photosynthesis.",
            "Give me a tip for learning Python.",
            "What is the capital of Italy?",
            "Suggest a name for a cat.",
            "How do bees make honey?",
            "What is 7 plus 5?",
            "Describe a sunset.",
            "Why do we sleep?",
            "Name a famous painter.",
            "What is rain?",
        ]
    )
]
GREEDY = GenerateConfig(model=MODEL, n=1, temperature=0, max_new_tokens=16)


def texts(out_dir: Path) -> dict[str, str]:
    rows = read_rows(out_dir / "generations.jsonl")
    ids = [r["id"] for r in rows]
    assert sorted(ids) == sorted(p.id for p in PROMPTS) and len(set(ids)) == len(ids)  # each row once
    return {r["id"]: r["samples"][0]["text"] for r in rows}


@pytest.fixture(scope="module")
def uninterrupted(engine: OpenAIEngine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("uninterrupted")
    run_generate(engine, GREEDY, PROMPTS, out, chunk_size=4, progress=False)
    return texts(out)


class Killer:
    """On a thread: SIGKILL the server as soon as a run has written its first chunk, and maybe start it again."""

    def __init__(self, server: LlamaServer, out_dir: Path, restart_after: float | None):
        self.server = server
        self.rows = out_dir / "generations.jsonl"
        self.restart_after = restart_after
        self.rows_at_kill: int | None = None
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def written(self) -> int:
        return self.rows.read_bytes().count(b"\n") if self.rows.exists() else 0

    def watch(self) -> None:
        while not self.written():
            time.sleep(0.02)
        self.server.kill()
        self.rows_at_kill = self.written()
        if self.restart_after is not None:
            time.sleep(self.restart_after)
            self.server.start()


def test_a_server_killed_mid_run_is_survived_by_retries(server, uninterrupted, tmp_path):
    engine = build(server.base_url)
    killer = Killer(server, tmp_path, restart_after=2.0)
    try:
        run_generate(engine, GREEDY, PROMPTS, tmp_path, chunk_size=4, progress=False)
    finally:
        killer.thread.join(timeout=120)
        engine.close()
    assert killer.rows_at_kill is not None and killer.rows_at_kill < len(PROMPTS)  # killed mid-run
    assert engine.stats["retries"] > 0
    assert texts(tmp_path) == uninterrupted


def test_a_run_without_retries_fails_when_the_server_dies_and_resumes_after(server, uninterrupted, tmp_path):
    engine = build(server.base_url, retry=RetryPolicy(max_retries=0))
    killer = Killer(server, tmp_path, restart_after=None)
    with pytest.raises(EndpointError, match="request to http://127.0.0.1"):
        run_generate(engine, GREEDY, PROMPTS, tmp_path, chunk_size=4, progress=False)
    killer.thread.join(timeout=60)
    left = len(read_rows(tmp_path / "generations.jsonl"))
    assert 0 < left < len(PROMPTS) and engine.stats["retries"] == 0

    server.start()
    _, result = run_generate(engine, GREEDY, PROMPTS, tmp_path, chunk_size=4, progress=False)
    engine.close()
    assert (result.skipped, result.written, result.total) == (left, len(PROMPTS) - left, len(PROMPTS))
    assert texts(tmp_path) == uninterrupted


def test_a_refused_request_is_not_retried_and_names_the_status(server):
    engine = OpenAIEngine(
        server.base_url, MODEL, api="chat", api_key="sk-wrong", retry=RetryPolicy(max_retries=5), progress=False
    )
    with pytest.raises(EndpointError, match="HTTP 401") as refused:
        engine.generate([ask("Hi")], SamplingParams(temperature=0, max_new_tokens=4))
    engine.close()
    assert refused.value.status == 401 and "Invalid API key" in str(refused.value)
    assert engine.stats["requests"] == 1 and engine.stats["retries"] == 0


def test_the_api_key_is_never_shown_nor_logged(server, caplog):
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    with caplog.at_level(logging.DEBUG):  # every logger, the client's and httpx's included
        served = build(server.base_url)
        served.generate([ask("Hi")], SamplingParams(temperature=0, max_new_tokens=4))
        failing = build(nobody, retry=RetryPolicy(max_retries=1, backoff=0.01))
        with pytest.raises(EndpointError):  # a retried failure logs too
            failing.generate([ask("Hi")], SamplingParams(temperature=0, max_new_tokens=4))
        served.close()
        failing.close()
    assert failing.stats["retries"] == 1 and "retry 1" in caplog.text
    assert "Request options" in caplog.text and "HTTP Request: POST" in caplog.text  # the client's own logs
    assert KEY not in repr(served) + caplog.text
    settings = openai_settings(server.base_url)
    assert KEY not in json.dumps(engine_model_info(MODEL, settings)) + repr(settings)


def test_chat_api_generates_without_a_tokenizer_and_the_judge_falls_back(server, engine):
    chat = build(server.base_url, api="chat")
    assert chat.tokenizer is None
    greedy = SamplingParams(temperature=0, max_new_tokens=16)
    (completion,) = chat.generate([ask("Write a haiku about the sea.")], greedy)
    sample = completion.samples[0]
    assert sample.text and set(sample.token_ids) == {UNKNOWN_ID}  # ids unknown; their count is the server's
    # llama.cpp applies the GGUF's template, the same as the tokenizer's: same greedy text.
    assert sample.text == engine.generate([ask("Write a haiku about the sea.")], greedy)[0].samples[0].text

    with pytest.raises(LogprobsUnavailable, match="chat completions return no log-probs"):
        chat.score([ask("Hi")], ["Hello"])
    template = "Which answer to '{prompt}' is better?\n{responses}\nReply 'ranking: 1 > 2' or 'ranking: 2 > 1'."
    config = SynthConfig(judge={"template": template})
    row = {
        "id": "r",
        "prompt": "Name a colour.",
        "samples": [{"text": "Red."}, {"text": "I like turtles."}],
        "usable": [0, 1],
    }
    (judged,) = make_rows(chat, config, [row])
    chat.close()
    assert len(judged.judgements) == 2 and all(j.fallback and j.output is not None for j in judged.judgements)
    assert chat.stats["logprobs_unavailable"] == 2


def test_generate_works_from_a_thread_and_inside_a_running_event_loop(engine):
    greedy = SamplingParams(temperature=0, max_new_tokens=4)
    with ThreadPoolExecutor(1) as pool:
        from_thread = pool.submit(engine.generate, [ask("What is rain?")], greedy).result()

    async def caller() -> str:
        return engine.generate([ask("What is rain?")], greedy)[0].samples[0].text

    assert asyncio.run(caller()) == from_thread[0].samples[0].text
