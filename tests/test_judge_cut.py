"""judge.max_answer_tokens: answers cut in the judge's tokens, at every site that builds a judge prompt."""

import pytest
from pydantic import ValidationError

from sao.errors import ConfigError
from sao.eval.pairwise import PairItem, judge_chunk
from sao.judge.config import JudgeSection
from sao.judge.cut import answer_cut, cut_texts
from sao.stages.judge import judge_requests
from sao.synth.config import SynthConfig
from test_judge_stage import response_row

LONG = "The quick brown fox jumps over the lazy dog, again and again, until the dog gets up. " * 20


def test_long_answers_are_cut_to_a_prefix_of_exactly_the_budget(tiny_engine):
    tok = tiny_engine.tokenizer
    long_cut, short = cut_texts(tok, [LONG, "Red."], 17)
    assert LONG.startswith(long_cut) and len(long_cut) < len(LONG)
    assert len(tok(long_cut, add_special_tokens=False)["input_ids"]) == 17
    assert short == "Red."


def test_a_slow_tokenizer_decodes_the_kept_tokens():
    class Slow:  # what a tokenizer without offsets offers: ids and decode
        is_fast = False

        def __call__(self, texts, add_special_tokens, return_offsets_mapping):
            assert not return_offsets_mapping
            return {"input_ids": [t.split() for t in texts]}

        def decode(self, ids, skip_special_tokens):
            return " ".join(ids)

    assert cut_texts(Slow(), ["one two three four", "one"], 2) == ["one two", "one"]


def test_no_budget_changes_nothing_and_an_engine_without_tokenizer_is_refused(tiny_engine):
    assert answer_cut(object(), None)([LONG]) == [LONG]
    with pytest.raises(ConfigError, match="judge.max_answer_tokens"):
        answer_cut(object(), 64)
    assert answer_cut(tiny_engine, 5)(["a b c d e f g h i j"]) != ["a b c d e f g h i j"]


def test_the_budget_is_recorded_only_when_set_and_only_for_a_prompted_judge():
    assert "max_answer_tokens" not in JudgeSection().model_dump()  # config hashes as before the field
    assert JudgeSection(max_answer_tokens=256).model_dump()["max_answer_tokens"] == 256
    with pytest.raises(ValidationError, match="max_answer_tokens"):
        JudgeSection(signal="sar", max_answer_tokens=256)
    with pytest.raises(ValidationError, match="max_answer_tokens"):
        JudgeSection(max_answer_tokens=0)


def test_the_synthesis_judge_prompt_holds_the_cut_answers(tiny_engine):
    judge = SynthConfig(judge={"max_answer_tokens": 8}).judge
    row = response_row("a", [LONG, "Blue."])
    whole = judge_requests([row], judge)[0].conversation[0]["content"]
    cut = judge_requests([row], judge, answer_cut(tiny_engine, 8))[0].conversation[0]["content"]
    assert LONG in whole and LONG not in cut
    assert cut_texts(tiny_engine.tokenizer, [LONG], 8)[0] in cut and "Blue." in cut


def test_judge_eval_cuts_both_answers_in_both_orders(tiny_engine):
    seen = []

    class Recording:  # the tiny engine, with the judge prompts it was asked kept
        tokenizer = tiny_engine.tokenizer
        capabilities = tiny_engine.capabilities
        kind = tiny_engine.kind

        def score(self, prompts, continuations):
            seen.extend(p[0]["content"] for p in prompts)
            return tiny_engine.score(prompts, continuations)

    item = PairItem(id="0", prompt="Say something.", a=LONG, b="B " + LONG)
    verdicts = judge_chunk(Recording(), [item], JudgeSection(max_answer_tokens=10))
    assert len(verdicts) == 1 and verdicts[0].preference is not None
    assert len(seen) >= 2 and all(LONG not in text for text in seen)
    head = cut_texts(tiny_engine.tokenizer, [LONG], 10)[0]
    assert all(head in text for text in seen)
