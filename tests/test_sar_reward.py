"""The self-aligned reward (`sao.rewards.sar`): the formula, its two contexts, and its ordering of answers on
the default model."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sao.engine.transformers_engine import TransformersEngine
from sao.errors import InputError
from sao.models import load_model
from sao.rewards.sar import (
    context_pair,
    fold_system,
    sar_from_model,
    sar_scores,
    self_aligned_reward,
    standalone_conversation,
)
from sao.train.tokenize import end_of_turn_id

# --- the formula, on synthetic log-probs -------------------------------------------------------------------


def test_the_reward_is_the_relative_drop_in_perplexity():
    # ppl(a) = e^2, ppl(a|q) = e^1: (e^2 - e) / e^2 = 1 - 1/e
    assert self_aligned_reward(-1.0, -2.0) == pytest.approx(1 - math.exp(-1))
    assert self_aligned_reward(-1.5, -1.5) == 0.0  # the query does not help: no reward
    assert self_aligned_reward(-0.5, -30.0) < 1.0  # bounded below 1 by itself


@pytest.mark.parametrize("gap", [math.log(2), math.log(2) + 1e-9, 3.0, 40.0])
def test_it_is_minus_one_once_the_query_doubles_the_perplexity(gap):
    # ppl(a|q) >= 2 ppl(a)  <=>  mean_lp(a) - mean_lp(a|q) >= ln 2
    assert self_aligned_reward(-1.0 - gap, -1.0) == pytest.approx(-1.0, abs=1e-12)
    assert self_aligned_reward(-1.0 - gap, -1.0) >= -1.0


def test_just_under_double_perplexity_is_above_the_floor():
    assert -1.0 < self_aligned_reward(-1.0 - math.log(1.9), -1.0) == pytest.approx(-0.9)


# --- the two contexts ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    return AutoTokenizer.from_pretrained(smol_dir)


def test_the_standalone_context_keeps_the_system_prompt_and_empties_the_user_turn():
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    assert standalone_conversation(conv) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": ""},
    ]
    assert standalone_conversation(conv[1:]) == [{"role": "user", "content": ""}]


def test_the_standalone_prefix_is_the_chat_template_of_system_and_an_empty_user_turn(tokenizer):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    with_query, alone = context_pair(tokenizer, conv)
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": ""}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert alone == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert (
        with_query
        == tokenizer(
            tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False), add_special_tokens=False
        )["input_ids"]
    )
    assert len(alone) < len(with_query)


def test_a_template_with_no_system_role_gets_the_system_text_in_the_user_turn(tokenizer):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    assert fold_system(conv) == [{"role": "user", "content": "Be brief.\n\nWhat is 2 + 2?"}]
    assert fold_system(standalone_conversation(conv)) == [{"role": "user", "content": "Be brief."}]

    no_system = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    no_system.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    )
    with_query, alone = context_pair(no_system, conv)
    assert no_system.decode(with_query) == "<u>Be brief.\n\nWhat is 2 + 2?</u><a>"
    assert no_system.decode(alone) == "<u>Be brief.</u><a>"


def test_an_empty_standalone_context_stands_on_bos_or_is_refused(tokenizer):
    empty = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    empty.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # renders '' for an empty turn
    conv = [{"role": "user", "content": "What is 2 + 2?"}]
    _, alone = context_pair(empty, conv)
    assert alone == [empty.bos_token_id]  # SmolLM2's tokenizer has a BOS (<|endoftext|>)
    empty.bos_token = None
    with pytest.raises(InputError, match="standalone context renders to no tokens"):
        context_pair(empty, conv)


# --- the two paths agree, and the reward ranks answers as the paper says ----------------------------------

QUESTION = (  # GSM8K train item 1 (MIT licence, github.com/openai/grade-school-math)
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
ANSWERS = {
    "copy": QUESTION,
    "concise": "In May she sold 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips.\nAnswer: 72",
    "verbose": (
        "Let me think about this problem carefully and explain every step in detail, because it is important to "
        "be thorough. First, we know that Natalia sold some clips in April. The problem tells us that number is 48. "
        "Then, in May, she sold half as many clips as she did in April. To find half of 48, we divide 48 by 2, "
        "which gives us 24. So in May she sold 24 clips. Now, to find the total number of clips she sold in both "
        "months together, we need to add the April amount and the May amount: 48 + 24 = 72. Therefore, after "
        "carefully considering all of the information, the total is 72.\nAnswer: 72"
    ),
    "unrelated": "The capital of France is Paris, a city known for the Eiffel Tower and its museums.",
}


@pytest.fixture(scope="module")
def smol_sar(smol_dir):
    engine = TransformersEngine(load_model("smollm2-135m", dtype="float32"), progress=False)
    tok = engine.tokenizer
    end = end_of_turn_id(tok)
    ids = [tok(a, add_special_tokens=False)["input_ids"] + [end] for a in ANSWERS.values()]
    conv = [{"role": "user", "content": QUESTION}]
    scores = sar_scores(engine, [conv] * len(ids), ids, tok)
    return engine, conv, ids, dict(zip(ANSWERS, scores))


def test_on_the_default_model_sar_ranks_copy_concise_verbose_then_unrelated(smol_sar):
    _, _, _, sar = smol_sar
    assert sar["copy"] > sar["concise"] > sar["verbose"] > 0 > sar["unrelated"], sar


def test_the_live_model_path_matches_the_engine_path(smol_sar):
    engine, conv, ids, sar = smol_sar
    tok = engine.tokenizer
    live = sar_from_model(engine.model, [context_pair(tok, conv)] * len(ids), ids, pad_id=tok.pad_token_id)
    assert live == pytest.approx(list(sar.values()), abs=1e-4)


def test_an_empty_answer_scores_zero(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    pair = context_pair(tok, [{"role": "user", "content": "hi"}])
    with torch.no_grad():
        rewards = sar_from_model(model, [pair, pair], [[], [tok.eos_token_id]], pad_id=tok.pad_token_id)
    assert rewards[0] == 0.0 and rewards[1] != 0.0
