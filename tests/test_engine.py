"""The transformers engine on a tiny random model: batching, budgets, stops, scoring, prompt kinds, top-k."""

import pytest
import torch

from conftest import ask
from sao.engine import CapabilityError, RawPrompt, SamplingParams, TokenPrompt
from sao.engine.chat_template import encode_prompt, render_prompt
from sao.engine.logit_controls import bias_ids
from sao.engine.scoring import group_requests
from sao.engine.transformers_engine import TransformersEngine
from sao.errors import ConfigError, InputError
from sao.models import load_model

PROMPTS = [ask("hi"), ask("a much longer question about several different things " * 3), ask("what is two plus two?")]


def test_n_samples_per_conversation_in_order(tiny_engine):
    out = tiny_engine.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=5, seed=1))
    assert [len(c.samples) for c in out] == [3, 3, 3]
    # Each of a request's n samples draws from its own stream; a shared SamplingParams
    # shares its seed across requests, as in vLLM (the stages give each row its own seed).
    seeds = [[s.seed for s in c.samples] for c in out]
    assert len(set(seeds[0])) == 3
    assert seeds[0] == seeds[1] == seeds[2]


def test_budget_gives_length_finish_reason(tiny_engine):
    out = tiny_engine.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=4))
    for c in out:
        s = c.samples[0]
        assert s.num_tokens <= 4
        assert s.finish_reason == ("length" if s.num_tokens == 4 else "stop")


def test_seeded_sample_does_not_depend_on_its_batch(tiny_engine):
    params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=42)
    alone = tiny_engine.generate([PROMPTS[2]], params)[0].samples[0]
    batched = tiny_engine.generate(PROMPTS, params)[2].samples[0]
    assert alone.token_ids == batched.token_ids
    other = tiny_engine.generate([PROMPTS[2]], SamplingParams(temperature=1.0, max_new_tokens=12, seed=43))
    assert other[0].samples[0].token_ids != alone.token_ids


def test_rows_with_one_prompt_share_its_prefill_and_decode_as_they_would_alone(tiny_engine, monkeypatch):
    forward = tiny_engine.model.forward
    prefill_rows = []

    def counting(*args, **kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # a prefill, not a decoding step
            prefill_rows.append(ids.shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_engine.model, "forward", counting)
    sampled = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=7)
    [together] = tiny_engine.generate([PROMPTS[1]], sampled)
    assert prefill_rows == [1]  # four samples, one prefill
    assert len({tuple(s.token_ids) for s in together.samples}) > 1  # each row still draws from its own generator
    assert tiny_engine.generate([PROMPTS[1]], sampled)[0] == together
    # Each row continues its own prompt's cache: the rows of a mixed batch sample as each request alone.
    prompts = [PROMPTS[1], PROMPTS[2], PROMPTS[1]]
    params = [SamplingParams(temperature=1.0, max_new_tokens=8, seed=seed) for seed in (1, 2, 3)]
    prefill_rows.clear()
    mixed = tiny_engine.generate(prompts, params)
    assert prefill_rows == [2]
    alone = [tiny_engine.generate([p], q)[0].samples[0].token_ids for p, q in zip(prompts, params)]
    assert [c.samples[0].token_ids for c in mixed] == alone
    assert len({tuple(a) for a in alone}) == 3


def test_greedy_matches_model_generate(tiny_engine):
    """The engine's decode loop gives the same greedy tokens as transformers' own generate."""
    model, tok = tiny_engine.model, tiny_engine.tokenizer
    ours = tiny_engine.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=10))
    for conv, completion in zip(PROMPTS, ours):
        ids = torch.tensor([encode_prompt(tok, conv)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
        ref_tokens = [t for t in ref[0, ids.shape[1] :].tolist() if t not in tiny_engine.eos_ids]
        assert completion.samples[0].token_ids == ref_tokens[: len(completion.samples[0].token_ids)]


def test_stop_string_ends_the_sample(tiny_engine):
    free = tiny_engine.generate([PROMPTS[0]], SamplingParams(temperature=0, max_new_tokens=20))[0].samples[0]
    assert len(free.text) > 6
    stop = free.text[3:6]
    cut = tiny_engine.generate([PROMPTS[0]], SamplingParams(temperature=0, max_new_tokens=20, stop=(stop,)))[0].samples[
        0
    ]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert free.text.startswith(cut.text)


def test_score_matches_a_manual_forward_pass(tiny_engine):
    model, tok = tiny_engine.model, tiny_engine.tokenizer
    conts = ["Paris is the capital.", "4", "a b c d e f g"]
    scored = tiny_engine.score(PROMPTS, conts)
    for conv, cont, got in zip(PROMPTS, conts, scored):
        prompt = encode_prompt(tok, conv)
        target = tok(cont, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        want = [logp[len(prompt) + i - 1, t].item() for i, t in enumerate(target)]
        assert got.token_ids == target
        assert got.logprobs == pytest.approx(want, abs=1e-4)


def test_requests_differing_in_their_last_token_share_a_pass_and_score_as_alone(tiny_engine):
    conts = ["Ranking: 1", "Ranking: 2", "Ranking: 2 then", "", "Ranking: 1"]
    convs = [PROMPTS[0], PROMPTS[0], PROMPTS[0], PROMPTS[0], PROMPTS[1]]
    tok = tiny_engine.tokenizer
    targets = [tok(c, add_special_tokens=False)["input_ids"] for c in conts]
    groups = group_requests([encode_prompt(tok, c) for c in convs], targets)
    # "Ranking: 1" and "Ranking: 2" after the same prompt share a pass; a longer continuation,
    # an empty one and another prompt each get their own.
    assert [g.members for g in groups] == [[0, 1], [2], [3], [4]]
    together = tiny_engine.score(convs, conts)
    for conv, cont, got in zip(convs, conts, together):
        alone = tiny_engine.score([conv], [cont])[0]
        assert got.token_ids == alone.token_ids
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-5)
    assert together[3].logprobs == []
    assert together[0].logprobs[:-1] == pytest.approx(together[1].logprobs[:-1], abs=1e-6)
    assert together[0].logprobs[-1] != pytest.approx(together[1].logprobs[-1], abs=1e-3)


def test_bad_conversation_and_sampling_list(tiny_engine):
    with pytest.raises(InputError, match="message 0"):
        tiny_engine.generate([[{"role": "robot", "content": "x"}]], SamplingParams())
    with pytest.raises(ConfigError, match="^sampling:"):
        tiny_engine.generate(PROMPTS, [SamplingParams()])


# ------------------------------------------------------------------------------------------ prompt kinds
STORY = "Once upon a time, in a land far away,"


def forward_logprobs(model, ids: list[int]) -> torch.Tensor:
    """Log-softmax of every position's logits for ``ids`` alone: no batch, no padding."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)


def test_raw_prompts_skip_the_chat_template(tiny_engine):
    model, tok = tiny_engine.model, tiny_engine.tokenizer
    ids = tok(STORY)["input_ids"]
    assert ids != encode_prompt(tok, ask(STORY))
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    ours = tiny_engine.generate([RawPrompt(STORY), PROMPTS[0]], greedy)[0].samples[0]
    ref = model.generate(
        torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=8
    )
    assert ours.token_ids == [t for t in ref[0, len(ids) :].tolist() if t not in tiny_engine.eos_ids][: ours.num_tokens]
    assert ours.num_tokens > 0
    (scored,) = tiny_engine.score([RawPrompt(STORY)], [" there lived a cat"])
    target = tok(" there lived a cat", add_special_tokens=False)["input_ids"]
    logp = forward_logprobs(model, ids + target)
    assert scored.logprobs == pytest.approx([logp[len(ids) + i - 1, t].item() for i, t in enumerate(target)], abs=1e-4)


def test_token_prompts_are_read_as_they_are_in_generate_and_score(tiny_engine):
    tok = tiny_engine.tokenizer
    as_ids = [TokenPrompt(encode_prompt(tok, c)) for c in PROMPTS]
    for sampling in (SamplingParams(temperature=0, max_new_tokens=6), SamplingParams(n=2, max_new_tokens=6, seed=9)):
        assert tiny_engine.generate(as_ids, sampling) == tiny_engine.generate(PROMPTS, sampling)
    conts = ["Paris.", "4", "a b c"]
    by_text = tiny_engine.score(PROMPTS, conts)
    assert tiny_engine.score(as_ids, conts) == by_text
    # Token-id continuations: the exact tokens a sample had, with no re-tokenisation of its text.
    assert tiny_engine.score(PROMPTS, [s.token_ids for s in by_text]) == by_text
    # RAIN's join: a prefix and a next token whose text re-tokenises into other tokens ("ti" + "me" is
    # " time"). Given as ids, they are scored as they are.
    prefix, token = tok("Once upon a ti")["input_ids"], tok("me")["input_ids"][0]
    assert tok(tok.decode([*prefix, token]))["input_ids"] != [*prefix, token]
    (scored,) = tiny_engine.score([TokenPrompt(prefix)], [[token]])
    assert scored.token_ids == [token]
    assert scored.logprobs == pytest.approx([forward_logprobs(tiny_engine.model, prefix)[-1, token].item()], abs=1e-4)


def test_top_logprobs_match_a_direct_forward_pass_and_do_not_depend_on_the_batch(tiny_engine):
    model, tok = tiny_engine.model, tiny_engine.tokenizer
    prompts = [*PROMPTS, RawPrompt(STORY), TokenPrompt([tok.bos_token_id, 42, 7])]
    ids = [encode_prompt(tok, c) for c in PROMPTS] + [tok(STORY)["input_ids"], [tok.bos_token_id, 42, 7]]
    tiny_engine.score_batch_size = 2  # three batches, each left-padded to its longest prompt
    try:
        batched = tiny_engine.top_logprobs(prompts, 5)
    finally:
        tiny_engine.score_batch_size = 8
    for prompt, prompt_ids, got in zip(prompts, ids, batched):
        values, tokens = forward_logprobs(model, prompt_ids)[-1].topk(5)
        assert got.token_ids == tokens.tolist()
        assert got.logprobs == pytest.approx(values.tolist(), abs=1e-4)
        assert got.logprobs == sorted(got.logprobs, reverse=True)
        (alone,) = tiny_engine.top_logprobs([prompt], 5)
        assert alone.token_ids == got.token_ids and alone.logprobs == pytest.approx(got.logprobs, abs=1e-5)
    # The same numbers as scoring each candidate as a one-token continuation.
    scored = tiny_engine.score([PROMPTS[0]] * 5, [[t] for t in batched[0].token_ids])
    assert [s.logprobs[0] for s in scored] == pytest.approx(batched[0].logprobs, abs=1e-5)
    vocabulary = model.config.vocab_size
    (everything,) = tiny_engine.top_logprobs([PROMPTS[0]], vocabulary + 10)  # at most the vocabulary
    assert len(everything.token_ids) == vocabulary
    assert torch.tensor(everything.logprobs).exp().sum().item() == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ConfigError, match="^k: top_logprobs needs k >= 1, got 0"):
        tiny_engine.top_logprobs([PROMPTS[0]], 0)


def test_sar_scores_an_answer_after_an_empty_user_turn(tiny_engine):
    """SAR's prior: the log-prob of an answer with no question, a conversation whose one user turn is empty."""
    model, tok = tiny_engine.model, tiny_engine.tokenizer
    empty = [{"role": "user", "content": ""}]
    assert "<|im_start|>user\n<|im_end|>" in render_prompt(tok, empty)
    answer = "The capital of France is Paris."
    (scored,) = tiny_engine.score([empty], [answer])
    prompt, target = encode_prompt(tok, empty), tok(answer, add_special_tokens=False)["input_ids"]
    logp = forward_logprobs(model, prompt + target)
    assert scored.token_ids == target
    assert scored.logprobs == pytest.approx(
        [logp[len(prompt) + i - 1, t].item() for i, t in enumerate(target)], abs=1e-4
    )
    (asked,) = tiny_engine.score([ask("What is the capital of France?")], [answer])
    assert asked.total != pytest.approx(scored.total, abs=1e-3)  # the question does condition the answer


class Untouchable:
    def __getattr__(self, name):
        raise AssertionError(f"the tokenizer was used ({name})")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the tokenizer was used")


def test_message_parts_are_refused_naming_the_engine_before_the_tokenizer(tiny_engine, monkeypatch):
    frames = [{"role": "user", "content": [{"type": "video", "frames": ["0.png", "1.png"]}]}]
    monkeypatch.setattr(tiny_engine, "tokenizer", Untouchable())
    calls = [
        lambda: tiny_engine.generate([PROMPTS[0], frames], SamplingParams()),
        lambda: tiny_engine.score([PROMPTS[0], frames], ["a", "b"]),
        lambda: tiny_engine.top_logprobs([frames], 3),
    ]
    for call, where in zip(calls, ["prompt 1 of a generate call", "prompt 1 of a score call", "prompt 0 of a top_"]):
        with pytest.raises(CapabilityError, match=r"^engine backend 'transformers' lacks multimodal \(") as refused:
            call()
        assert where in str(refused.value) and "\n" not in str(refused.value)


def test_bad_token_prompts_name_the_prompt(tiny_engine):
    with pytest.raises(InputError, match="^prompt 1: it has no tokens"):
        tiny_engine.generate([PROMPTS[0], TokenPrompt([])], SamplingParams())
    with pytest.raises(InputError, match=r"^prompt 0: token id 999999 is outside the vocabulary \(0\.\.49151\)"):
        tiny_engine.top_logprobs([TokenPrompt([1, 999999])], 2)
    with pytest.raises(InputError, match="^continuation 0: token id -1 is outside"):
        tiny_engine.score([PROMPTS[0]], [[-1]])


# ---------------------------------------------------------------------------------------- top-k, logprobs
def test_top_k_1_samples_the_greedy_tokens(tiny_engine):
    greedy = tiny_engine.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=12))
    one = tiny_engine.generate(PROMPTS, SamplingParams(n=2, temperature=1.3, top_k=1, max_new_tokens=12, seed=5))
    for g, o in zip(greedy, one):
        assert [s.token_ids for s in o.samples] == [g.samples[0].token_ids] * 2
    free = tiny_engine.generate(PROMPTS, SamplingParams(temperature=1.3, max_new_tokens=12, seed=5))
    assert [c.samples[0].token_ids for c in free] != [c.samples[0].token_ids for c in greedy]


def test_top_k_draws_only_among_the_k_most_likely(tiny_engine):
    tok = tiny_engine.tokenizer

    def outside_top(k_checked: int, sampling: SamplingParams) -> int:
        """How many generated tokens are not among the ``k_checked`` most likely after their prefix."""
        out = tiny_engine.generate(PROMPTS, sampling)
        prefixes, tokens = [], []
        for conv, completion in zip(PROMPTS, out):
            prompt = encode_prompt(tok, conv)
            for sample in completion.samples:
                for i, token in enumerate(sample.token_ids):
                    prefixes.append(TokenPrompt(prompt + sample.token_ids[:i]))
                    tokens.append(token)
        tops = tiny_engine.top_logprobs(prefixes, k_checked)
        assert len(tokens) > 50
        return sum(token not in top.token_ids for token, top in zip(tokens, tops))

    # Temperature 3 flattens the distribution: without the limit the draws land far outside the top 3.
    assert outside_top(3, SamplingParams(n=3, temperature=3.0, top_k=3, max_new_tokens=8, seed=2)) == 0
    assert outside_top(3, SamplingParams(n=3, temperature=3.0, max_new_tokens=8, seed=2)) > 10


def test_sample_logprobs_are_the_scores_of_its_tokens_before_temperature(tiny_engine):
    """Greedy or sampled (temperature, top-k, top-p), rows leaving the batch at different steps: each token's
    log-prob is the model's, as `score` gives it for the same tokens after the same prompt."""
    params = [
        SamplingParams(temperature=0, max_new_tokens=9, logprobs=True),
        SamplingParams(n=2, temperature=0.5, top_k=5, top_p=0.9, max_new_tokens=12, seed=3, logprobs=True),
        SamplingParams(n=2, temperature=1.5, max_new_tokens=5, seed=4, logprobs=True),
    ]
    out = tiny_engine.generate(PROMPTS, params)
    convs = [conv for conv, c in zip(PROMPTS, out) for _ in c.samples]
    samples = [s for c in out for s in c.samples]
    scored = tiny_engine.score(convs, [s.token_ids for s in samples])
    for sample, want in zip(samples, scored):
        assert sample.num_tokens > 0 and len(sample.logprobs) == sample.num_tokens
        assert sample.logprobs == pytest.approx(want.logprobs, abs=1e-4)


def test_logprobs_are_none_unless_asked(tiny_engine):
    out = tiny_engine.generate(
        PROMPTS, [SamplingParams(temperature=0, max_new_tokens=4), SamplingParams(n=2, max_new_tokens=4, seed=1),
                  SamplingParams(temperature=0, max_new_tokens=4, logprobs=True)]
    )  # fmt: skip
    assert [[s.logprobs is None for s in c.samples] for c in out] == [[True], [True, True], [False]]
    assert len(out[2].samples[0].logprobs) == out[2].samples[0].num_tokens


def test_logprobs_stay_aligned_when_a_stop_string_ends_the_sample(tiny_engine):
    free = tiny_engine.generate([PROMPTS[0]], SamplingParams(temperature=0, max_new_tokens=20))[0].samples[0]
    stop = free.text[3:6]
    (cut,) = tiny_engine.generate(
        [PROMPTS[0]], SamplingParams(temperature=0, max_new_tokens=20, stop=(stop,), logprobs=True)
    )[0].samples
    assert cut.finish_reason == "stop" and stop not in cut.text
    # The tokens that spelled the stop string stay in token_ids, each with its log-prob.
    assert stop in tiny_engine.tokenizer.decode(cut.token_ids)
    (scored,) = tiny_engine.score([PROMPTS[0]], [cut.token_ids])
    assert len(cut.logprobs) == cut.num_tokens
    assert cut.logprobs == pytest.approx(scored.logprobs, abs=1e-4)


def test_logprobs_follow_the_logit_controls(tiny_engine):
    """The log-probs are those of the distribution the tokens were chosen from: after the logit bias."""
    tok = tiny_engine.tokenizer
    params = SamplingParams(temperature=0, max_new_tokens=6, logit_bias={" the": 8.0}, logprobs=True)
    (sample,) = tiny_engine.generate([PROMPTS[2]], params)[0].samples
    prompt = encode_prompt(tok, PROMPTS[2])
    with torch.no_grad():
        logits = tiny_engine.model(torch.tensor([prompt + sample.token_ids])).logits[0, len(prompt) - 1 : -1].float()
    biased = logits.clone()
    for token, bias in bias_ids(tok, params.logit_bias).items():
        biased[:, token] += bias
    want = biased.log_softmax(-1).gather(-1, torch.tensor(sample.token_ids)[:, None]).squeeze(-1)
    assert sample.logprobs == pytest.approx(want.tolist(), abs=1e-4)
    raw = tiny_engine.score([PROMPTS[2]], [sample.token_ids])[0].logprobs
    assert max(abs(a - b) for a, b in zip(sample.logprobs, raw)) > 0.1


def test_an_eos_ends_the_sample_without_a_logprob(chatty_tiny_dir):
    engine = TransformersEngine(load_model(str(chatty_tiny_dir), dtype="float32"), progress=False)
    params = SamplingParams(n=4, temperature=0.7, max_new_tokens=40, seed=11, logprobs=True)
    samples = engine.generate([PROMPTS[0], PROMPTS[2]], params)
    samples = [(conv, s) for conv, c in zip([PROMPTS[0], PROMPTS[2]], samples) for s in c.samples]
    ended = [(conv, s) for conv, s in samples if s.eos_token_id is not None]
    assert ended, "no sample ended on EOS"
    scored = engine.score([conv for conv, _ in ended], [s.token_ids for _, s in ended])
    for (_, sample), want in zip(ended, scored):
        assert len(sample.logprobs) == sample.num_tokens
        assert sample.logprobs == pytest.approx(want.logprobs, abs=1e-4)
