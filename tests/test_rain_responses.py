"""RAIN in the response stages of SAO and DNO (`responses.rain`, `samples.rain`): the last of each prompt's k
answers is RAIN's, the sampled ones are what they were without it, and pairs say which side RAIN wrote."""

from __future__ import annotations

import pytest

from rain_toy import ToyEmbedder
from sao import methods
from sao.engine.capabilities import CapabilityError
from sao.engine.config import EngineSection
from sao.methods.dno.config import DNOSampleSection
from sao.methods.dno.stages import pair_stats as dno_pair_stats
from sao.methods.dno.stages import sample_of
from sao.rain.config import RainSection
from sao.rain.engine import RainEngine
from sao.recipe import validate
from sao.stages.pairs import PairRow, pair_stats, rain_side
from sao.stages.responses import ResponseSample, make_rows
from sao.synth.config import SynthConfig
from sao.synth.pipeline import check_capabilities
from test_sar_judge import dno_section

RAIN = {"max_iterations": 2, "min_new_iterations": 1}
CHUNK = [{"id": "p1", "prompt": "Name a colour."}, {"id": "p2", "prompt": "How do I pick a lock?"}]


def test_without_rain_the_sections_and_rows_are_written_as_before() -> None:
    assert list(SynthConfig().responses.model_dump()) == ["k", "temperature", "top_p", "max_new_tokens"]
    assert "rain" not in DNOSampleSection().model_dump()
    assert list(SynthConfig(responses={"rain": RAIN}).responses.model_dump())[-1] == "rain"
    sample = ResponseSample(text="x", finish_reason="stop", num_tokens=1, seed=1)
    assert "decoding" not in sample.model_dump_json()
    row = PairRow(
        id="a", prompt=[], chosen=[], rejected=[], persona=None, judge_probability=0.7, chosen_tokens=1,
        rejected_tokens=2, generation={},
    )  # fmt: skip
    assert "rain_side" not in row.model_dump() and '"rain_side"' not in row.model_dump_json()


def test_the_last_answer_is_rain_s_and_the_sampled_ones_are_unchanged(tiny_engine) -> None:
    config = validate(SynthConfig, {"responses": {"k": 3, "max_new_tokens": 8, "rain": RAIN}})
    rain = RainEngine(tiny_engine, config.responses.rain, embedder=ToyEmbedder(), progress=False)
    with_rain = make_rows(tiny_engine, config, CHUNK, rain)
    plain = make_rows(
        tiny_engine, config.model_copy(update={"responses": config.responses.model_copy(update={"rain": None})}), CHUNK
    )
    for row, before in zip(with_rain, plain):
        assert [s.decoding for s in row.samples] == [None, None, "rain"]
        assert row.samples[:2] == before.samples[:2]  # same seeds, same samples: RAIN only replaced the last
        assert 1 <= row.samples[2].num_tokens <= 8 and row.samples[2].seed is not None
    assert rain.last is not None and len(rain.last.answers) == 2  # one RAIN search per prompt, batched


def test_pairs_say_which_side_rain_wrote_and_stats_count_them() -> None:
    rain, sampled = {"decoding": "rain"}, {}
    assert (rain_side(rain, sampled), rain_side(sampled, rain), rain_side(sampled, sampled)) == (
        "chosen",
        "rejected",
        None,
    )
    generation = {"responses": {"k": 2, "rain": RAIN}}
    rows = [
        {"chosen_tokens": 3, "rejected_tokens": 2, "generation": generation, "rain_side": side}
        for side in ("chosen", "chosen", "rejected", None)
    ]
    stats = pair_stats(rows)
    assert (stats["rain_chosen"], stats["rain_rejected"], stats["pairs"]) == (2, 1, 4)
    assert "rain_chosen" not in pair_stats([{**r, "generation": {"responses": {"k": 2}}} for r in rows])
    dno_rows = [{"chosen_origin": "policy", "rain_side": s} for s in ("chosen", None)]
    assert dno_pair_stats(dno_rows, rain=True)["rain_chosen"] == 1 and "rain_chosen" not in dno_pair_stats(dno_rows)


def test_dno_finds_the_sample_behind_a_candidate() -> None:
    class Pick:
        index = 1

    lineup = [("policy", 0, "a"), ("policy", 2, "c"), ("gold", None, "g")]
    sampled = {"samples": [{"text": "a"}, {"text": "b"}, {"text": "c", "decoding": "rain"}]}
    assert sample_of(lineup, sampled, Pick()) == {"text": "c", "decoding": "rain"}
    Pick.index = 2
    assert sample_of(lineup, sampled, Pick()) == {} and sample_of(lineup, sampled, None) == {}


def test_an_engine_without_top_logprobs_is_refused_before_any_model_loads() -> None:
    chat = EngineSection(backend="openai", openai={"base_url": "http://127.0.0.1:9/v1", "api": "chat"})
    sao_section = validate(SynthConfig, {"responses": {"rain": RAIN}})
    with pytest.raises(CapabilityError, match=r"lacks .* which method 'sao' \(stage 'responses'\) needs"):
        check_capabilities(methods.get("sao"), sao_section, chat)
    dno = dno_section("p.jsonl")
    dno = dno.model_copy(update={"samples": dno.samples.model_copy(update={"rain": RainSection(**RAIN)})})
    with pytest.raises(CapabilityError, match=r"lacks .* which method 'dno' \(stage 'samples'\) needs"):
        check_capabilities(methods.get("dno"), dno, chat)
    check_capabilities(methods.get("sao"), SynthConfig(), chat)  # plain sampling needs nothing
