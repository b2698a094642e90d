"""The judge stage's wiring on the tiny random model: requests, both modes, decisions, and the judge it runs."""

import logging

import pytest

from sao.engine import Completion, Sample
from sao.engine.config import EngineSection
from sao.engine.factory import engine_model_info
from sao.errors import ConfigError, LogprobsUnavailable
from sao.judge.build import build_judge
from sao.judge.verdict import run_judge
from sao.recipe import validate
from sao.stages.judge import judge_requests, judge_stats, make_rows
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


class NoLogprobsEngine:
    """An engine behind a server that echoes no prompt log-probs; its rankings always prefer 'aardvark'."""

    def __init__(self):
        self.generated = 0

    def score(self, conversations, continuations):
        raise LogprobsUnavailable("http://server/v1 returned no prompt log-probs")

    def generate(self, conversations, sampling):
        self.generated += len(conversations)
        completions = []
        for conv in conversations:
            text = conv[-1]["content"]
            ranking = "1 > 2" if text.index("aardvark") < text.index("zebu") else "2 > 1"
            completions.append(Completion([Sample(f"ranking: {ranking}", [0], "stop", None)]))
        return completions


def test_logprob_judge_falls_back_to_generated_rankings_when_the_engine_cannot_score(caplog):
    config = SynthConfig()
    assert config.judge.mode == "logprob" and config.judge.order == "swap"
    engine = NoLogprobsEngine()
    chunks = [[response_row("a", ["aardvark", "zebu"])], [response_row("b", ["zebu", "aardvark"])]]
    with caplog.at_level(logging.WARNING, logger="sao.judge.verdict"):
        rows = [row for chunk in chunks for row in make_rows(engine, config, chunk)]
    assert engine.generated == 4  # both orders of both rows, judged by generated rankings
    assert all(j.fallback and j.output and j.p_first in (0.0, 1.0) for r in rows for j in r.judgements)
    assert [(r.chosen, r.rejected, r.drop_reason) for r in rows] == [(0, 1, None), (1, 0, None)]
    warnings = [m for m in caplog.messages if "judging by generated rankings" in m]
    assert len(warnings) == 1 and "no prompt log-probs" in warnings[0]  # once, not once per chunk
    assert judge_stats([r.model_dump() for r in rows])["logprob_fallbacks"] == 4


def test_judge_stats_count_no_fallbacks_when_the_engine_scores(tiny_engine):
    rows = make_rows(tiny_engine, SynthConfig(), [response_row("a", ["red", "blue"])])
    assert not any(j.fallback for j in rows[0].judgements)
    assert judge_stats([r.model_dump() for r in rows])["logprob_fallbacks"] == 0


# --- the judge as a component (issue 15) ---------------------------------------------------------------------


def test_a_self_judge_is_the_policys_own_engine(tiny_engine):
    settings = EngineSection()
    judge = build_judge(
        SynthConfig().judge,
        policy_engine=tiny_engine,
        policy_model="tiny",
        engine_settings=settings,
        trust_remote_code=False,
        progress=False,
    )
    assert judge.engine is tiny_engine and judge.is_self
    assert (judge.spec, judge.settings, judge.label, judge.identity()) == ("tiny", settings, "self", {"model": "self"})
    judge.release()  # the policy's engine is its owner's to release
    assert tiny_engine.score([[{"role": "user", "content": "Hi"}]], ["Hello"])[0].logprobs
    with pytest.raises(ConfigError, match="judge.model: 'self' needs a model"):
        build_judge(
            SynthConfig().judge,
            policy_engine=None,
            policy_model=None,
            engine_settings=settings,
            trust_remote_code=False,
            progress=False,
        )


def test_a_named_judge_runs_on_its_own_engine_and_is_identified_once(tiny_model_dir, tiny_engine, monkeypatch):
    from sao.judge import build

    calls = []
    monkeypatch.setattr(build, "engine_model_info", lambda m, s: calls.append(m) or engine_model_info(m, s))
    own = EngineSection(dtype="float32", batch_size=4)
    section = SynthConfig(judge={"model": str(tiny_model_dir), "engine": own.model_dump()}).judge
    judge = build_judge(
        section,
        policy_engine=tiny_engine,
        policy_model="the-policy",
        engine_settings=EngineSection(),
        trust_remote_code=False,
        progress=False,
    )
    assert judge.engine is not tiny_engine and not judge.is_self
    assert (judge.spec, judge.settings, judge.label) == (str(tiny_model_dir), own, str(tiny_model_dir))
    assert judge.engine._engine is None  # nothing loads until the judge judges (a resumed run may not need it)
    assert judge.identity() == judge.identity() == engine_model_info(str(tiny_model_dir), own)
    assert judge.identity()["fingerprint"].startswith("sha256:") and calls == [str(tiny_model_dir)]
    # It judges as the same model on the policy's engine does: the verdict is the model's, not the wrapper's.
    requests = judge_requests([response_row("a", ["red", "blue"])], section)
    ours = run_judge(judge.engine, requests, section.mode, section.max_new_tokens)
    theirs = run_judge(tiny_engine, requests, section.mode, section.max_new_tokens)
    assert [j.p_first for j in ours] == pytest.approx([j.p_first for j in theirs], abs=1e-5)
    judge.release()
    assert judge.engine._engine is None


def test_a_self_judge_has_no_engine_of_its_own():
    with pytest.raises(ConfigError, match=r"^judge: engine: a 'self' judge runs on the answering model's engine"):
        validate(SynthConfig, {"judge": {"engine": {"backend": "vllm"}}})
