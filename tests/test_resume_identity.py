"""Issue 14: what a resume compares (the input of each row, the engine, the hub revision), what it
keeps (stage times) and what a refused run leaves behind (the recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sao import methods
from sao.engine.config import EngineSection
from sao.engine.factory import engine_model_info
from sao.errors import ResumeConflictError
from sao.eval.config import EvalConfig
from sao.eval.run import run_eval
from sao.loop.config import validate_run
from sao.loop.report import stage_seconds
from sao.loop.run import Iteration, answer_report_prompts, run_loop
from sao.models import model_info
from sao.store import RunStore


def _fake_hub_model(cache: Path, repo_id: str, commit: str) -> None:
    """The HF cache layout: models--org--name/refs/main holds the commit, snapshots/<commit>/ the files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_models_are_identified_by_their_cached_commit(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert model_info("some-org/some-model")["fingerprint"] == "hf:some-org/some-model@unknown"  # not downloaded
    _fake_hub_model(cache, "some-org/some-model", "a" * 40)
    first = model_info("some-org/some-model")
    assert first == {
        "spec": "some-org/some-model",
        "path": "some-org/some-model",
        "fingerprint": f"hf:some-org/some-model@{'a' * 40}",
    }
    RunStore.open(tmp_path / "run", {"n": 1}, first)
    _fake_hub_model(cache, "some-org/some-model", "b" * 40)  # the hub's main moved on, and was downloaded
    with pytest.raises(
        ResumeConflictError, match=r"model \(fingerprint hf:some-org/some-model@a+ -> hf:some-org/some-model@b+\)"
    ):
        RunStore.open(tmp_path / "run", {"n": 1}, model_info("some-org/some-model"))


def test_engine_identity_is_recorded_and_a_changed_backend_refused(tmp_path, tiny_model_dir):
    spec = str(tiny_model_dir)
    transformers = engine_model_info(spec, EngineSection(dtype="float32"))
    assert (transformers["backend"], transformers["dtype"]) == ("transformers", "float32")
    llamacpp = engine_model_info(spec, EngineSection(backend="llamacpp"))
    assert (llamacpp["backend"], llamacpp["weights"]) == ("llamacpp", "f16")
    assert llamacpp["fingerprint"] == transformers["fingerprint"]  # same weights, other engine
    RunStore.open(tmp_path / "run", {"n": 1}, transformers)
    with pytest.raises(ResumeConflictError, match=r"engine \(backend 'transformers' -> 'llamacpp'"):
        RunStore.open(tmp_path / "run", {"n": 1}, llamacpp)


def test_eval_refuses_stale_answers_when_the_instructions_or_system_change(tmp_path, tiny_model_dir):
    """AlpacaEval ids are positions: another instruction file into the same directory must not keep old answers."""
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ["Name a colour.", "Say hello."]))
    answers = tmp_path / "ref.jsonl"
    answers.write_text("".join(json.dumps({"id": str(i), "output": "Blue."}) + "\n" for i in range(2)))
    other = tmp_path / "b.jsonl"
    other.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ["Name a colour.", "Count to three."]))
    for path in (first, other):  # AlpacaEval-style: ids by position
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({"id": str(i), **r}) + "\n" for i, r in enumerate(rows)))

    def config(instructions: Path, **decoding) -> EvalConfig:
        return EvalConfig(
            instructions=str(instructions),
            candidates=[str(tiny_model_dir)],
            names=["tiny"],
            baseline=str(answers),
            judge={"model": str(tiny_model_dir)},
            decoding={"max_new_tokens": 4, **decoding},
            n_boot=2,
        )

    out = tmp_path / "eval"
    run_eval(config(first), out, progress=False)
    with pytest.raises(ResumeConflictError, match=r"turn-1/generations\.jsonl: the row for id '1'"):
        run_eval(config(other), out, progress=False)
    with pytest.raises(ResumeConflictError, match=r"turn-1/generations\.jsonl: the row for id '0'"):
        run_eval(config(first, system="Answer in French."), out, progress=False)
    # --force answers the new instructions before judging them.
    run_eval(config(other), out, force=True, progress=False)
    rows = RunStore.load(out / "tiny" / "answers" / "turn-1").rows("generations")
    assert [r["messages"][-1]["content"] for r in rows] == ["Name a colour.", "Count to three."]


def test_report_times_survive_a_resume_and_are_labelled(tmp_path, tiny_engine, tiny_model_dir):
    config = validate_run(
        {"model": str(tiny_model_dir), "report": {"prompts": ["Hi.", "Bye.", "Yes?"], "max_new_tokens": 8}}
    )
    info = engine_model_info(str(tiny_model_dir), config.engine)
    done = answer_report_prompts(tiny_engine, config, info, tmp_path / "before", progress=False)
    # A run killed after one chunk of the after-samples, then resumed.
    killed = answer_report_prompts(tiny_engine, config, info, tmp_path / "after", progress=False)
    path = killed.stage_path("generations")
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    manifest = json.loads((tmp_path / "after" / "manifest.json").read_text())
    manifest["stages"]["generations"]["status"] = "running"
    (tmp_path / "after" / "manifest.json").write_text(json.dumps(manifest))
    after = answer_report_prompts(tiny_engine, config, info, tmp_path / "after", progress=False)
    before = answer_report_prompts(tiny_engine, config, info, tmp_path / "before", progress=False)  # done: resumes
    synth = RunStore.open(tmp_path / "synth", {})
    iteration = Iteration(1, tmp_path, "m", tmp_path / "model", synth, "pairs", {"seconds": 1.0}, before, after, 0.0)
    times = dict(stage_seconds(iteration))
    assert isinstance(times["report samples before"], float)  # not n/a after a resume that had nothing to do
    assert times["report samples before"] == round(done.manifest.stages["generations"].seconds, 1)
    assert "sum of 2 attempts" in times["report samples after"]


def test_a_refused_run_leaves_the_recipe_it_was_made_with(tmp_path, tiny_model_dir):
    values = {"model": str(tiny_model_dir), "synth": {"num_prompts": 4}}
    old = validate_run(values)
    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.yaml").write_text(yaml.safe_dump(old.model_dump(), sort_keys=False))
    synth = methods.get("sao").for_iteration(old.synth, 1, old.model)
    RunStore.open(out / "iter-1" / "synth", synth.model_dump(), engine_model_info(old.model, old.engine))
    before = (out / "recipe.yaml").read_text()
    changed = validate_run({**values, "synth": {"num_prompts": 5}})
    with pytest.raises(ResumeConflictError, match=r"num_prompts: 4 -> 5"):
        run_loop(changed, out, progress=False)
    assert (out / "recipe.yaml").read_text() == before
