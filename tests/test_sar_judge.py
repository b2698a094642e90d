"""SAR as a judge (issue 18, `judge.signal: sar`): the ranking on fixed scores, SAO's judge stage and DNO's scores
on tiny models against R_SA computed by a forward pass of their own, judge-eval, and the recipe's spelling."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sao import methods
from sao.cli import app
from sao.engine.capabilities import CapabilityError
from sao.engine.config import EngineSection
from sao.engine.transformers_engine import TransformersEngine
from sao.errors import ConfigError
from sao.eval.config import EvalConfig, JudgeEvalConfig
from sao.eval.judge_eval import run_judge_eval
from sao.judge.config import JudgeSection
from sao.judge.sar import gap_drop_reason, preference, ranking_scores, scoring_tokenizer
from sao.methods.dno.config import DNOConfig, DNOJudgeSection
from sao.methods.dno.report import dno_markdown
from sao.methods.dno.sar import on_rubric_scale
from sao.methods.method import StageContext
from sao.models import load_model
from sao.recipe import validate
from sao.rewards.sar import context_pair, sar_from_model
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.pipeline import check_capabilities, synthesize
from sao.synth.ranking import highest_and_lowest
from scripted_engine import ScriptedEngine


def forward_sar(engine: TransformersEngine, conversations: list, texts: list[str]) -> list[float]:
    """R_SA by a forward pass of the engine's model itself, not through `score`: what the judge must agree with."""
    tok = engine.tokenizer
    answers = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    contexts = [context_pair(tok, c) for c in conversations]
    return sar_from_model(engine.model, contexts, answers, pad_id=tok.pad_token_id)


# --- the ranking, on fixed numbers -----------------------------------------------------------------------------


def test_candidates_rank_by_r_sa_alone_or_by_r_vr_plus_weighted_r_sa_where_a_verifier_exists():
    r_sa = [0.9, 0.1, -0.4]
    assert ranking_scores(r_sa, None) == r_sa
    # A verifier puts the correct answers (R_VR 1) first whatever their R_SA; R_SA orders within each group.
    ranked = ranking_scores(r_sa, [0.0, 1.0, 1.0])  # the paper's weight, 0.2
    assert ranked == pytest.approx([0.18, 1.02, 0.92])
    assert highest_and_lowest(ranked) == (1, 0)
    with pytest.raises(ValueError, match="2 verifier rewards for 3 candidates"):
        ranking_scores(r_sa, [1.0, 0.0], 0.2)


def test_ties_and_the_margin():
    assert highest_and_lowest([0.3, 0.3, 0.3]) == (0, 2)  # ties: best the first, worst the last
    assert [preference(0.4, 0.2), preference(0.2, 0.4), preference(0.3, 0.3 + 1e-12)] == [1.0, 0.0, 0.5]
    assert gap_drop_reason(0.05, 0.01) is None
    assert gap_drop_reason(0.005, 0.01) == "below_margin"
    assert gap_drop_reason(0.0, 0.0) == "below_margin"  # a tie is never a pair, even with no margin


def test_sar_scores_map_onto_dnos_rubric_scale():
    assert [on_rubric_scale(r) for r in (-1.0, 0.0, 2 / 3, 0.99)] == [0.0, 3.0, 5.0, 5.97]


# --- the recipe ------------------------------------------------------------------------------------------------


def test_a_prompted_judge_is_recorded_as_before_sar_and_a_sar_judge_says_so():
    before = ["mode", "order", "swap_rule", "margin", "template", "max_new_tokens"]
    assert list(SynthConfig().judge.model_dump()) == before  # SAO's manifests and pairs rows keep their bytes
    assert "signal" not in DNOJudgeSection().model_dump() and "signal" not in JudgeSection().model_dump()
    sar = SynthConfig(judge={"signal": "sar"}).judge.model_dump()
    assert list(sar) == [*before, "signal"] and sar["signal"] == "sar"


def test_judge_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^judge\.signal: Input should be 'prompt', 'sar' or 'rain'"):
        validate(SynthConfig, {"judge": {"signal": "reward"}})
    with pytest.raises(ConfigError, match=r"^judge\.model: 'sar' is a signal, not a model: set judge\.signal: sar"):
        validate(JudgeEvalConfig, {"pairs": "p.jsonl", "judge": {"model": "sar"}})
    with pytest.raises(ConfigError, match=r"^judge: signal: 'sar' chooses pairs in synthesis"):
        validate(
            EvalConfig, {"instructions": "i.jsonl", "candidates": ["a"], "baseline": "b", "judge": {"signal": "sar"}}
        )


def test_an_engine_that_cannot_score_token_ids_is_refused_before_any_model_loads():
    chat = EngineSection(backend="openai", openai={"base_url": "http://127.0.0.1:9/v1", "api": "chat"})
    for name, section in (("sao", SynthConfig(judge={"signal": "sar"})), ("dno", dno_section("p.jsonl"))):
        stage = "judgements" if name == "sao" else "scores"
        with pytest.raises(CapabilityError, match=rf"lacks score .* which method '{name}' \(stage '{stage}'\) needs"):
            check_capabilities(methods.get(name), section, chat)
    prompted = dno_section("p.jsonl").model_copy(update={"judge": DNOJudgeSection()})
    check_capabilities(methods.get("dno"), prompted, chat)  # the rubric is generated text: nothing needed


def test_a_judge_without_a_tokenizer_here_is_named():
    with pytest.raises(ConfigError, match=r"^judge\.signal: 'sar' renders the answers with the judge model's tok"):
        scoring_tokenizer(ScriptedEngine())


# --- SAO's judge stage -----------------------------------------------------------------------------------------


def test_sao_with_sar_chooses_the_highest_r_sa_and_reports_the_signal(tmp_path, chatty_tiny_dir):
    sampled = {"temperature": 0.7, "max_new_tokens": 48}
    section = validate(
        SynthConfig,
        {
            "num_prompts": 4,
            "personas": sampled,
            "prompts": {**sampled, "min_words": 1},
            "responses": {**sampled, "k": 3},
            "judge": {"signal": "sar", "margin": 0.0},
        },
    )
    model, out = str(chatty_tiny_dir), tmp_path / "synth"
    settings = EngineSection(dtype="float32")
    synthesize(methods.get("sao"), section, model, settings, out, progress=False)
    store = RunStore.load(out)
    judged, responses = store.rows("judgements"), {r["id"]: r for r in store.rows("responses")}
    assert judged, "the tiny model must give response rows to judge"
    engine = TransformersEngine(load_model(model, dtype="float32"), progress=False)
    for row in judged:
        response = responses[row["id"]]
        usable = response["usable"]
        texts = [response["samples"][i]["text"] for i in usable]
        expected = forward_sar(engine, [[{"role": "user", "content": response["prompt"]}]] * len(texts), texts)
        assert [row["sar"][i] for i in usable] == pytest.approx(expected, abs=1e-4)
        assert all(row["sar"][i] is None for i in range(len(response["samples"])) if i not in usable)
        assert row["chosen"] == usable[max(range(len(usable)), key=lambda i: expected[i])]
        assert row["rejected"] == usable[min(range(len(usable)), key=lambda i: expected[i])]
    pairs = store.rows("pairs")
    assert len(pairs) == sum(r["drop_reason"] is None for r in judged) > 0
    assert all(p["judge_probability"] is None and p["generation"]["judge"]["signal"] == "sar" for p in pairs)
    report = (out / "report.md").read_text()
    assert f"**judge**: SAR (self-aligned reward) under `{model}` (self), which chose the pairs" in report
    assert "mean sar chosen" in report


# --- DNO's scores ------------------------------------------------------------------------------------------------


def dno_section(source: str, gold: str | None = None) -> DNOConfig:
    return validate(
        DNOConfig,
        {
            "prompts": {"source": source, "gold": gold, "per_iteration": 3, "validation": 0},
            "samples": {"k": 2, "temperature": 0.7, "max_new_tokens": 32},
            "judge": {"signal": "sar"},
            "pairs": {"min_positive": 0.0, "policy_gap": 0.0, "gold_gap": 0.0},
        },
    )


def test_dno_scores_each_candidate_by_sar_on_the_rubric_scale(tmp_path, chatty_tiny_dir, tiny_engine):
    from sao.methods.dno import stages

    source, gold = tmp_path / "prompts.jsonl", tmp_path / "gold.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Say something about {i}."}) + "\n" for i in range(3))
    )
    gold.write_text("".join(json.dumps({"id": f"p{i}", "output": f"{i} is a number."}) + "\n" for i in range(3)))
    section = dno_section(str(source), str(gold))
    store = RunStore.open(tmp_path / "synth", section.model_dump(), {"spec": "the-policy"})
    policy = TransformersEngine(load_model(str(chatty_tiny_dir), dtype="float32"), progress=False)
    ctx = StageContext(
        section=section, store=store, engine=policy, judge=tiny_engine, iteration=1, earlier=(), progress=False
    )
    for run in (stages.run_prompts, stages.run_samples, stages.run_scores, stages.run_pairs):
        run(ctx)
    prompts, samples = {r["id"]: r for r in store.rows("prompts")}, {r["id"]: r for r in store.rows("samples")}
    scored = store.rows("scores")
    assert scored and all(r["candidates"][-1]["origin"] == "gold" for r in scored)  # the gold answer is scored too
    for row in scored:
        texts = [text for _, _, text in stages.line_up(prompts[row["id"]], samples[row["id"]])]
        expected = forward_sar(tiny_engine, [prompts[row["id"]]["messages"]] * len(texts), texts)
        assert [c["sar"] for c in row["candidates"]] == pytest.approx(expected, abs=1e-4)
        assert [c["score"] for c in row["candidates"]] == pytest.approx([3 * (r + 1) for r in expected], abs=1e-3)
        assert row["drop_reason"] is None and row["output"] == ""
    pairs = {r["id"]: r for r in store.rows("pairs")}
    for row in scored:  # no thresholds here: each pair is the highest score against the lowest
        scores = [c["score"] for c in row["candidates"] if not c["repetitive"]]
        assert pairs[row["id"]]["drop_reason"] is None and pairs[row["id"]]["chosen_score"] == max(scores)
    assert "SAR (self-aligned reward) under `the-policy` (self)" in dno_markdown(store)


# --- judge-eval --------------------------------------------------------------------------------------------------


LABELLED = [
    {"prompt": "Name a colour.", "response_a": "Red.", "response_b": "I like turtles very much.", "label": "a"},
    {"prompt": "Say hi.", "response_a": "Bye.", "response_b": "Hi there!", "label": "b"},
    {"prompt": "Count to three.", "response_a": "1, 2, 3.", "response_b": "1, 2, 3.", "label": "tie"},
]


def test_judge_eval_measures_sar_on_labelled_pairs(tmp_path, tiny_model_dir, tiny_engine):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LABELLED))
    result = CliRunner().invoke(
        app,
        ["judge-eval", "--pairs", str(path), "--out", str(tmp_path / "out"), "--judge", "sar"]
        + ["--set", f"judge.model={tiny_model_dir}", "--set", "engine.dtype=float32"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # By hand: the answer with the higher R_SA (a forward pass of the model) is preferred, equal answers tie.
    agree = []
    for row in LABELLED:
        conv = [{"role": "user", "content": row["prompt"]}]
        a, b = forward_sar(tiny_engine, [conv, conv], [row["response_a"], row["response_b"]])
        predicted = "tie" if abs(a - b) <= 1e-9 else "a" if a > b else "b"
        agree.append(1.0 if predicted == row["label"] else 0.5 if "tie" in (predicted, row["label"]) else 0.0)
    assert summary["judge"]["rate"] == pytest.approx(sum(agree) / len(agree), abs=1e-4)
    assert (summary["signal"], summary["pairs"], summary["position_consistency"]) == ("sar", 3, None)
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith(f"# sao judge-eval: SAR (self-aligned reward) under {tiny_model_dir}")
    assert "Position consistency: 1 by construction, not measured" in report
    assert "Position consistency: 1 by construction" in result.output


def test_judge_eval_refuses_sar_on_an_engine_that_cannot_score_token_ids(tmp_path, monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("sao.engine.lazy.build_engine", load)
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(LABELLED[0]) + "\n")
    config = JudgeEvalConfig(
        pairs=str(path),
        judge={"signal": "sar", "model": "served"},
        engine={"backend": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1"}},
    )
    with pytest.raises(CapabilityError, match=r"lacks token_prompts .* which judge\.signal 'sar' needs"):
        run_judge_eval(config, tmp_path / "out", progress=False)


def test_dno_report_names_the_prompted_judge_when_it_chose(tmp_path):
    store = RunStore.open(
        tmp_path / "synth",
        dno_section("p.jsonl").model_copy(update={"judge": DNOJudgeSection()}).model_dump(),
        {"spec": "m"},
    )
    assert "**judge**: `m` (self), asked with the judge prompt, which chose the pairs." in dno_markdown(store)
