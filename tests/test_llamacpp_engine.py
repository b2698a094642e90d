"""The llama.cpp engine on the embedded SmolLM2 GGUF: the same outputs as the transformers engine
(within quantised-arithmetic tolerance), continuous refill, seeds, budgets, stops, scoring, errors."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator

import pytest

from conftest import GREEDY_QUESTIONS, ask, common_prefix
from sao.engine import RawPrompt, SamplingParams, TokenPrompt, derive_seed
from sao.engine.chat_template import encode_prompt
from sao.engine.config import EngineSection
from sao.engine.factory import build_engine
from sao.engine.llamacpp_engine import LlamaCppEngine
from sao.errors import ConfigError, InputError, ModelLoadError
from sao.synth.ranking import first_wins_probability

GREEDY = SamplingParams(temperature=0, max_new_tokens=32)


def settings(**fields: object) -> EngineSection:
    return EngineSection.model_validate({"backend": "llamacpp", **fields})


@pytest.fixture(scope="module")
def engine(smol_dir: str) -> Iterator[LlamaCppEngine]:
    built = build_engine("smollm2-135m", settings(batch_size=4), progress=False)
    assert isinstance(built, LlamaCppEngine)
    yield built
    built.close()


@pytest.fixture(scope="module")
def local_greedy(smol_engine):
    return smol_engine.generate([ask(q) for q in GREEDY_QUESTIONS], GREEDY)


@pytest.fixture(scope="module")
def greedy(engine):
    return engine.generate([ask(q) for q in GREEDY_QUESTIONS], GREEDY)


def test_greedy_outputs_follow_the_transformers_engine(greedy, local_greedy):
    agreed = [common_prefix(a.samples[0].token_ids, b.samples[0].token_ids) for a, b in zip(greedy, local_greedy)]
    print(f"llama.cpp vs transformers greedy common-prefix tokens (of 32): {agreed}")
    # llama.cpp runs the embedded weights converted to float16 (engine.llamacpp.weights) and
    # rounds activations to float16 for its matmuls; transformers runs them in float32. Greedy
    # paths part only where two candidates are within that rounding. Measured on 2026-11-29:
    # [32, 32, 29, 15, 7, 14, 32, 32, 3, 32] (median 32). With the Q4_1 GGUF as it ships, which
    # quantises activations to 8 bits, the same measure gives a median near 10 (the OpenAI-engine
    # test); a wrong prompt or position parts at once nearly everywhere.
    assert sorted(agreed)[len(agreed) // 2] >= 16
    assert sum(a > 0 for a in agreed) >= 9
    for out in greedy:
        sample = out.samples[0]
        assert sample.seed is None
        assert sample.finish_reason == ("length" if sample.num_tokens == 32 else "stop")


def test_bf16_weights_follow_the_transformers_engine(smol_dir, local_greedy):
    """``weights: bf16`` (AVX512-BF16 dot products where the CPU has them) keeps 8 significant bits of each
    weight against float16's 11. Measured on 2026-12-03 (AMX Xeon), common prefix with float32 torch over 32
    greedy tokens: [32, 32, 29, 32, 7, 14, 32, 1, 3, 12] (median 29; f16 on the same machine: median 32)."""
    built = build_engine("smollm2-135m", settings(batch_size=4, llamacpp={"weights": "bf16"}), progress=False)
    try:
        assert built.model_path.name.endswith(".bf16.gguf")
        out = built.generate([ask(q) for q in GREEDY_QUESTIONS], GREEDY)
    finally:
        built.close()
    agreed = [common_prefix(a.samples[0].token_ids, b.samples[0].token_ids) for a, b in zip(out, local_greedy)]
    print(f"llama.cpp bf16 vs transformers greedy common-prefix tokens (of 32): {agreed}")
    assert sorted(agreed)[len(agreed) // 2] >= 12
    assert sum(a > 0 for a in agreed) >= 9


def test_continuous_refill_keeps_every_row_in_place(engine, greedy):
    """Ten prompts through four KV streams: rows finish, free their stream and the next prompt
    takes it, and each output still belongs to its own prompt, as decoded alone."""
    assert engine.max_batch_size < len(GREEDY_QUESTIONS)
    alone = [engine.generate([ask(q)], GREEDY)[0] for q in GREEDY_QUESTIONS[:3]]
    agreed = [common_prefix(a.samples[0].token_ids, b.samples[0].token_ids) for a, b in zip(alone, greedy)]
    # Alone or beside other rows, a row's numerics differ only by llama.cpp's batch-shape-
    # dependent kernels, so the texts share long prefixes; a row mixed up with another would not.
    assert min(agreed) >= 4, agreed
    assert len({out.samples[0].text for out in greedy}) == len(GREEDY_QUESTIONS)


def test_seeded_samples_reproduce_with_the_shared_seed_scheme(engine):
    sampling = SamplingParams(n=3, temperature=0.8, max_new_tokens=16, seed=7)
    first = engine.generate([ask("Suggest a name for a cat.")], sampling)[0].samples
    again = engine.generate([ask("Suggest a name for a cat."), ask("Why is the sky blue?")], sampling)[0].samples
    assert [s.seed for s in first] == [derive_seed(7, j) for j in range(3)]
    assert [s.token_ids for s in first] == [s.token_ids for s in again]
    assert len({s.text for s in first}) == 3


def test_budget_and_stop_strings_end_samples(engine, greedy):
    short = engine.generate([ask(GREEDY_QUESTIONS[1])], SamplingParams(temperature=0, max_new_tokens=3))[0].samples[0]
    assert short.num_tokens == 3 and short.finish_reason == "length"
    free = greedy[1].samples[0]
    stop = free.text[5:9]
    cut = engine.generate([ask(GREEDY_QUESTIONS[1])], SamplingParams(temperature=0, max_new_tokens=32, stop=(stop,)))
    sample = cut[0].samples[0]
    assert sample.finish_reason == "stop"
    assert stop not in sample.text and free.text.startswith(sample.text)


def test_scores_match_the_transformers_engine(engine, smol_engine):
    judge = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": "Which answer to 'Name a colour.' is better? Response 1: Red. Response 2: I like turtles.",
        },
    ]
    convs = [ask("Capital of France?"), ask("What is 12 times 12?"), judge, judge, ask("Say nothing.")]
    continuations = ["Paris is the capital of France.", "144", "ranking: 1", "ranking: 2", ""]
    ours = engine.score(convs, continuations)
    local = smol_engine.score(convs, continuations)
    assert [s.token_ids for s in ours] == [t.token_ids for t in local]
    assert ours[-1].logprobs == []
    diffs = [max(abs(a - b) for a, b in zip(s.logprobs, t.logprobs)) for s, t in zip(ours[:-1], local[:-1])]
    p_ours = first_wins_probability(ours[2].total, ours[3].total)
    p_local = first_wins_probability(local[2].total, local[3].total)
    print(f"score: max per-token diff {[round(d, 3) for d in diffs]}; judge p_first {p_ours:.3f} vs {p_local:.3f}")
    # float16 vs float32 arithmetic, as in the greedy test. Measured: at most 0.019 nats per
    # token, judge p_first 0.488 vs 0.487. Scoring the wrong position is off by several nats.
    assert max(diffs) < 0.1
    assert abs(p_ours - p_local) < 0.03


def test_top_logprobs_follow_the_transformers_engine(engine, smol_engine):
    prompts = [ask("What is the capital of France?"), RawPrompt("The capital of France is"), ask("Say hi.")]
    ours, local = engine.top_logprobs(prompts, 5), smol_engine.top_logprobs(prompts, 5)
    for got, want in zip(ours, local):
        assert got.token_ids[0] == want.token_ids[0]  # llama.cpp's f16 against float32 torch, as in scoring
        assert got.logprobs == sorted(got.logprobs, reverse=True) and len(got.token_ids) == 5
        common = {t: lp for t, lp in zip(want.token_ids, want.logprobs)}
        assert max(abs(lp - common[t]) for t, lp in zip(got.token_ids, got.logprobs) if t in common) < 0.1
    # The same numbers as llama.cpp's own scoring of each candidate as a one-token continuation.
    scored = engine.score([prompts[0]] * 5, [[t] for t in ours[0].token_ids])
    assert max(abs(s.logprobs[0] - lp) for s, lp in zip(scored, ours[0].logprobs)) < 0.02


def test_token_and_raw_prompts_are_read_as_given(engine):
    tok = engine.tokenizer
    conv, story = ask(GREEDY_QUESTIONS[4]), "Once upon a time"
    chat, by_ids = engine.generate([conv, TokenPrompt(encode_prompt(tok, conv))], GREEDY)
    assert chat.samples[0].token_ids == by_ids.samples[0].token_ids and chat.samples[0].num_tokens > 0
    raw, raw_ids = engine.generate([RawPrompt(story), TokenPrompt(tok(story)["input_ids"])], GREEDY)
    assert raw.samples[0].token_ids == raw_ids.samples[0].token_ids
    assert raw.samples[0].token_ids != chat.samples[0].token_ids
    assert engine.score([RawPrompt(story)], [" there"]) == engine.score(
        [TokenPrompt(tok(story)["input_ids"])], [" there"]
    )


def test_scoring_more_sequences_than_streams_in_chunks(smol_dir):
    """Six sequences through two streams and 16-token decode calls: prompts are fed in chunks,
    and the log-probs equal those of roomy single calls."""
    roomy = build_engine("smollm2-135m", settings(batch_size=8), progress=False)
    tight = LlamaCppEngine(
        roomy.model_path,
        roomy.tokenizer,
        max_batch_size=2,
        context_per_sequence=256,
        tokens_per_call=16,
        progress=False,
    )
    convs = [ask(q) for q in GREEDY_QUESTIONS[:6]]
    answers = ["Red, blue and yellow.", "Waves fold", "Light to sugar.", "Practice daily.", "Paris.", "144."]
    try:
        a, b = roomy.score(convs, answers), tight.score(convs, answers)
    finally:
        roomy.close()
        tight.close()
    assert [x.token_ids for x in a] == [y.token_ids for y in b]
    assert max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x.logprobs, y.logprobs)) < 0.1


def test_a_prompt_longer_than_the_context_names_the_setting(engine):
    tight = LlamaCppEngine(engine.model_path, engine.tokenizer, max_batch_size=1, context_per_sequence=32)
    try:
        with pytest.raises(InputError, match="context_per_sequence"):
            tight.generate([ask("word " * 40)], GREEDY)
        with pytest.raises(InputError, match="context_per_sequence"):
            tight.score([ask("Hi")], ["word " * 40])
    finally:
        tight.close()


def test_a_model_without_a_gguf_is_refused_naming_the_field(tiny_model_dir):
    with pytest.raises(ConfigError, match="engine.llamacpp.gguf"):
        build_engine(str(tiny_model_dir), settings(), progress=False)
    with pytest.raises(ConfigError, match="engine.llamacpp.gguf: no such file"):
        build_engine(str(tiny_model_dir), settings(llamacpp={"gguf": "/nonexistent/model.gguf"}), progress=False)


def test_a_missing_llama_cpp_names_the_extra(monkeypatch, engine):
    real_import = builtins.__import__

    def no_llama_cpp(name, *args, **kwargs):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama_cpp)
    with pytest.raises(ModelLoadError, match=r"sao\[llamacpp\]"):
        LlamaCppEngine(engine.model_path, engine.tokenizer)


# Run in a child process: on an AMX CPU the bug was a segfault, which would take pytest down with it.
QUANTISED_GENERATE = """
from sao.engine import SamplingParams
from sao.engine.config import EngineSection
from sao.engine.factory import build_engine
settings = EngineSection.model_validate({"backend": "llamacpp", "batch_size": 2, "llamacpp": {"weights": "%s"}})
engine = build_engine("smollm2-135m", settings, progress=False)
chats = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "Say hi."}]]
out = engine.generate(chats, SamplingParams(temperature=0, max_new_tokens=8))
print("TOKENS", [len(c.samples[0].token_ids) for c in out])
"""


@pytest.mark.parametrize("weights", ["q8_0", "source"])
def test_quantised_weights_decode_on_every_cpu(smol_dir, weights):
    """q8_0 and the shipped Q4_1 segfaulted at the first decode on AMX CPUs (llama.cpp's AMX buffers)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", QUANTISED_GENERATE % weights], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    counts = [line for line in done.stdout.splitlines() if line.startswith("TOKENS ")]
    assert counts and all(n > 0 for n in json.loads(counts[0].removeprefix("TOKENS "))), done.stdout


def test_top_k_1_samples_the_greedy_tokens(engine):
    prompts = [ask(q) for q in GREEDY_QUESTIONS[:3]]
    greedy = engine.generate(prompts, SamplingParams(temperature=0, max_new_tokens=12))
    one = engine.generate(prompts, SamplingParams(n=2, temperature=1.3, top_k=1, max_new_tokens=12, seed=5))
    for g, o in zip(greedy, one):
        assert [s.token_ids for s in o.samples] == [g.samples[0].token_ids] * 2
    top3 = engine.generate(prompts, SamplingParams(n=2, temperature=3.0, top_k=3, max_new_tokens=12, seed=5))
    assert [s.token_ids for c in top3 for s in c.samples] != [s.token_ids for c in one for s in c.samples]


def test_sample_logprobs_are_llama_cpps_scores_of_its_tokens(engine):
    prompts = [ask(GREEDY_QUESTIONS[0]), ask(GREEDY_QUESTIONS[7])]
    params = [
        SamplingParams(temperature=0, max_new_tokens=16, logprobs=True),
        SamplingParams(n=2, temperature=0.6, top_k=8, top_p=0.9, max_new_tokens=10, seed=3, logprobs=True),
    ]
    out = engine.generate(prompts, params)
    convs = [conv for conv, c in zip(prompts, out) for _ in c.samples]
    samples = [s for c in out for s in c.samples]
    scored = engine.score(convs, [s.token_ids for s in samples])
    diffs = []
    for sample, want in zip(samples, scored):
        assert sample.num_tokens > 0 and len(sample.logprobs) == sample.num_tokens
        diffs.append(max(abs(a - b) for a, b in zip(sample.logprobs, want.logprobs)))
    print(f"llama.cpp sample logprobs vs its scores: max per-token diff {[round(d, 4) for d in diffs]}")
    # One token per decode call against a whole prefill: llama.cpp's kernels differ by batch shape, as in
    # the top_logprobs test. Temperature-scaled log-probs (0.6) would be off by nats.
    assert max(diffs) < 0.02
    assert engine.generate(prompts[:1], SamplingParams(temperature=0, max_new_tokens=3))[0].samples[0].logprobs is None


def test_a_shared_prefix_copied_from_the_prefix_stream_scores_as_computed_afresh(engine):
    """RAIN's evaluation prompts share a long opening: rows copy its KV from the prefix stream, across calls too,
    and their log-probs are those of an engine that computes every prefix."""
    from sao.rain.evaluate import CRITERIA, dialogue_text, evaluation_requests

    fresh = LlamaCppEngine(engine.model_path, engine.tokenizer, max_batch_size=4, prefix_stream=False, progress=False)
    requests = [
        r
        for question, answer in (("How do I pick a lock?", "I can't help with that."), ("Hi!", "Hello, how can I"))
        for r in evaluation_requests(CRITERIA["harmless"], dialogue_text(ask(question), answer))
    ]
    prompts, letters = [p for p, _ in requests], [letter for _, letter in requests]
    try:
        want = fresh.score(prompts, letters)
        first = engine.score(prompts[:4], letters[:4])  # writes the shared opening into the prefix stream
        held, reused = list(engine._prefix), engine.reused_tokens
        again = engine.score(prompts, letters)  # reuses it
        tops, fresh_tops = engine.top_logprobs(prompts[:2], 5), fresh.top_logprobs(prompts[:2], 5)
    finally:
        fresh.close()
    assert len(held) > 100 and engine._prefix[: len(held)] == held
    assert engine.reused_tokens >= reused + len(held) * 4  # every group of the second call (2 per evaluation)
    # llama.cpp's quantised matmuls round by batch shape, so a prefix computed in its own call differs a little
    # (measured: at most 0.007 nats); a wrong position or a missing prefix is off by nats.
    for got, ref in zip([*first, *again[4:]], want):
        assert got.token_ids == ref.token_ids
        assert got.logprobs == pytest.approx(ref.logprobs, abs=0.02)
    assert [t.token_ids for t in tops] == [t.token_ids for t in fresh_tops]
    assert tops[0].logprobs == pytest.approx(fresh_tops[0].logprobs, abs=0.02)


def test_the_samples_of_one_prompt_copy_its_prefill_and_draw_as_computed_afresh(engine):
    fresh = LlamaCppEngine(engine.model_path, engine.tokenizer, max_batch_size=4, prefix_stream=False, progress=False)
    fresh.eos_ids = engine.eos_ids
    prompt = [ask("Write one sentence about the sea, and then one about the mountains, please.")]
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=12, seed=5)
    try:
        before = engine.reused_tokens
        [shared] = engine.generate(prompt, params)
        [alone] = fresh.generate(prompt, params)
    finally:
        fresh.close()
    assert engine.reused_tokens > before
    # The same draws; the text may part where two candidates fall within the quantised matmuls' rounding.
    agree = [common_prefix(a.token_ids, b.token_ids) for a, b in zip(shared.samples, alone.samples)]
    assert min(agree) >= 4 and len({tuple(s.token_ids) for s in shared.samples}) == 3
