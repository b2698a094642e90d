"""The transformers engine on a tiny random model: batching, budgets, stops, scoring."""

import pytest
import torch

from conftest import ask
from sao.engine import SamplingParams
from sao.engine.chat_template import encode_prompt
from sao.engine.scoring import group_requests
from sao.errors import ConfigError, InputError

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
