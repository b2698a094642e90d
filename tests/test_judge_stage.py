"""The judge stage's wiring on the tiny random model: requests, both modes, and decisions."""

import pytest

from sao.stages.judge import judge_requests, make_rows, run_judge
from sao.synth.config import SynthConfig
from sao.synth.ranking import first_wins_probability


def response_row(row_id, texts):
    return {
        "id": row_id,
        "prompt": "Name a colour.",
        "samples": [{"text": t, "finish_reason": "stop", "num_tokens": 2, "seed": 1} for t in texts],
        "usable": list(range(len(texts))),
    }


def test_requests_cover_both_orders_of_every_pair():
    judge = SynthConfig().judge
    rows = [response_row("a", ["red", "blue"]), response_row("b", ["x", "y", "z"])]
    requests = judge_requests(rows, judge)
    assert [(q.row, q.first, q.second) for q in requests] == [
        (0, 0, 1),
        (0, 1, 0),
        (1, 0, 1),
        (1, 1, 0),
        (1, 0, 2),
        (1, 2, 0),
        (1, 1, 2),
        (1, 2, 1),
    ]
    single = judge_requests(rows, judge.model_copy(update={"order": "single"}))
    assert len(single) == 4
    text = requests[1].conversation[0]["content"]
    assert text.index("blue") < text.index("red")  # swapped order shows sample 1 first


def test_logprob_judge_is_the_renormalised_score(tiny_engine):
    judge = SynthConfig().judge
    requests = judge_requests([response_row("a", ["red", "blue"])], judge)
    judgements = run_judge(tiny_engine, requests, judge.mode, judge.max_new_tokens)
    conv = requests[0].conversation
    one, two = tiny_engine.score([conv, conv], ["ranking: 1", "ranking: 2"])
    assert judgements[0].p_first == pytest.approx(first_wins_probability(one.total, two.total), abs=1e-5)
    assert all(0 < j.p_first < 1 for j in judgements)


def test_generate_judge_counts_unparsable_answers(tiny_engine):
    config = SynthConfig(judge={"mode": "generate"})
    rows = make_rows(tiny_engine, config, [response_row("a", ["red", "blue"])])
    (row,) = rows
    # A random model never writes a valid ranking: both judgements fail to parse, and the row says so.
    assert all(j.p_first is None and j.output is not None for j in row.judgements)
    assert row.drop_reason == "parse_failure" and row.chosen is None
