"""RAIN's self-evaluator as a judge (`judge.signal: rain`): the vote and p_good on fixed numbers, judge-eval on a
tiny model against log-probs computed by a forward pass of its own, and where the signal is refused."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from sao.cli import app
from sao.engine.prompts import prompt_ids
from sao.errors import ConfigError
from sao.eval.config import EvalConfig, JudgeEvalConfig
from sao.judge.config import JudgeSection
from sao.judge.rain import SelfEvaluation, preference
from sao.methods.dno.config import DNOJudgeSection
from sao.rain.evaluate import CRITERIA, dialogue_text, evaluation_requests, p_good
from sao.recipe import validate
from sao.synth.config import SynthConfig
from test_engine import forward_logprobs
from test_sar_judge import LABELLED


def test_p_good_averages_the_good_letter_s_share_over_both_orders() -> None:
    # Good first: A has log-prob 0 and B log(1/3), so A's share is 3/4; good second: B's share is 1/4.
    assert p_good([0.0, math.log(1 / 3), 0.0, math.log(1 / 3)]) == pytest.approx((0.75 + 0.25) / 2)
    assert p_good([-1.0, -1.0, -2.0, -2.0]) == pytest.approx(0.5)
    # A model that always says "A" whatever it reads: 0.5, the same as its vote of 0.
    assert p_good([-0.1, -3.0, -0.1, -3.0]) == pytest.approx(0.5)


def test_preference_follows_p_good_and_ties_when_equal() -> None:
    assert preference(SelfEvaluation(0, 0.6), SelfEvaluation(0, 0.4)) == 1.0
    assert preference(SelfEvaluation(1, 0.4), SelfEvaluation(0, 0.6)) == 0.0
    assert preference(SelfEvaluation(0, 0.5), SelfEvaluation(0, 0.5)) == 0.5


def test_the_signal_is_recorded_with_its_criterion_and_refused_where_it_does_not_rank() -> None:
    assert "rain_criterion" not in JudgeSection().model_dump()
    assert JudgeSection(signal="rain").model_dump()["rain_criterion"] == "harmless"
    for section, values in (
        (SynthConfig, {"judge": {"signal": "rain"}}),
        (EvalConfig, {"instructions": "i.jsonl", "candidates": ["a"], "baseline": "b", "judge": {"signal": "rain"}}),
    ):
        with pytest.raises(ConfigError, match=r"^judge: .*signal: 'rain' measures RAIN's self-evaluator"):
            validate(section, values)
    with pytest.raises(ValueError, match="signal: 'rain' measures RAIN's self-evaluator"):
        DNOJudgeSection(signal="rain")
    with pytest.raises(ConfigError, match=r"^judge\.model: 'rain' is a signal, not a model"):
        validate(JudgeEvalConfig, {"pairs": "p.jsonl", "judge": {"model": "rain"}})


def letter_logprobs(engine, prompt: str, answer: str) -> list[float]:
    """The four letter log-probs of one evaluation, by a forward pass of the model itself, not through `score`."""
    dialogue = dialogue_text([{"role": "user", "content": prompt}], answer)
    values = []
    for conversation, letter in evaluation_requests(CRITERIA["harmless"], dialogue):
        ids = prompt_ids(engine.tokenizer, [conversation])[0]
        [token] = engine.tokenizer(letter, add_special_tokens=False)["input_ids"]
        values.append(forward_logprobs(engine.model, ids)[-1, token].item())
    return values


def test_judge_eval_measures_rain_s_evaluator_on_labelled_pairs(tmp_path, smol_engine) -> None:
    # The real model: a random tiny one gives near-equal p_good to any two answers, below float noise.
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LABELLED))
    result = CliRunner().invoke(
        app,
        ["judge-eval", "--pairs", str(path), "--out", str(tmp_path / "out"), "--judge", "rain"]
        + ["--set", "judge.model=smollm2-135m", "--set", "engine.dtype=float32"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    agree, better_good = [], 0
    for row, verdict in zip(LABELLED, rows):
        a = p_good(letter_logprobs(smol_engine, row["prompt"], row["response_a"]))
        b = p_good(letter_logprobs(smol_engine, row["prompt"], row["response_b"]))
        assert (verdict["p_good_a"], verdict["p_good_b"]) == pytest.approx((a, b), abs=1e-4)
        predicted = "tie" if abs(a - b) <= 1e-9 else "a" if a > b else "b"
        agree.append(1.0 if predicted == row["label"] else 0.5 if "tie" in (predicted, row["label"]) else 0.0)
        if row["label"] != "tie":
            better_good += (verdict["vote_a"] if row["label"] == "a" else verdict["vote_b"]) == 1
    assert summary["judge"]["rate"] == pytest.approx(sum(agree) / len(agree), abs=1e-4)
    assert (summary["signal"], summary["pairs"], summary["position_consistency"]) == ("rain", 3, None)
    assert summary["self_evaluation"]["pairs"] == 2
    assert summary["self_evaluation"]["better"]["good"] == pytest.approx(better_good / 2)
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# sao judge-eval: RAIN self-evaluation (harmless) under smollm2-135m")
    assert "81-98%" in report and "| labelled better |" in report
