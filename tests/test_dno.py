"""DNO-Prct (`method: dno`): its pair rules, mixing caps and splits on fixed numbers, and two iterations on a
tiny model: DPO against the previous iterate (first loss ln 2), and a run interrupted inside annotation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sao.cli import app
from sao.engine.types import Completion, Sample
from sao.methods.dno.mixing import mix, mix_caps
from sao.methods.dno.rubric import parse_scores, rubric_request
from sao.methods.dno.rules import GOLD, POLICY, Candidate, choose_pair, repeated_share
from sao.methods.dno.splits import deal
from scripted_engine import ScriptedEngine

RULES = dict(min_positive=5, gold_gap=2, policy_gap=1)


def line_up(*scores: float, gold: float | None = None, repetitive: tuple[int, ...] = ()) -> list[Candidate]:
    out = [Candidate(i, POLICY, f"s{i}", s, i in repetitive) for i, s in enumerate(scores)]
    return out + ([Candidate(len(scores), GOLD, "gold", gold)] if gold is not None else [])


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (line_up(5, 4, 3), ("kept", 0, 2)),  # the best policy sample against the worst
        (line_up(6, 5.5), ("small_gap", None, None)),  # policy positive needs a gap of 1
        (line_up(4.5, 1), ("low_positive", None, None)),  # a positive needs 5
        (line_up(3, 4, gold=6), ("kept", 2, 0)),  # gold over the worst sample, gap 3 >= 2
        (line_up(5, 5, gold=6), ("small_gap", None, None)),  # gold positive needs a gap of 2
        (line_up(6, 3, gold=6), ("kept", 0, 1)),  # a tie with the gold goes to the policy sample
        (line_up(6, 2, gold=4.5), ("kept", 0, 1)),  # student over gold: the policy's best beats the gold
        (line_up(6, 5.5, 5.8, repetitive=(1,)), ("kept", 0, 1)),  # a repetitive sample is a negative anyway
        (line_up(6, 6, repetitive=(0,)), ("kept", 1, 0)),  # ... and never a positive, even at the top score
    ],
)
def test_pair_rules_on_fixed_scores(candidates, expected) -> None:
    choice = choose_pair(candidates, **RULES)
    got = (choice.rule, choice.positive and choice.positive.index, choice.negative and choice.negative.index)
    assert got == expected


def test_a_student_over_gold_pair_has_the_gold_as_its_negative() -> None:
    choice = choose_pair(line_up(6, gold=4), **RULES)
    assert choice.rule == "kept" and choice.positive.origin == POLICY and choice.negative.origin == GOLD


def test_repetition_share() -> None:
    assert repeated_share("the cat sat on the mat", 2) == 0
    assert repeated_share("go go go go go go", 2) == pytest.approx(4 / 5)


def test_mixing_caps_hold() -> None:
    assert mix_caps(100, 3, 0.3) == [30, 15, 7]  # t-1, t-2, t-3
    own = [{"id": f"t3-{i}"} for i in range(20)]
    earlier = [[{"id": f"t{t}-{i}"} for i in range(50)] for t in (1, 2)]
    rows = mix(own, earlier, 0.3, seed=0)
    from_t = lambda t: sum(r["id"].startswith(f"t{t}-") for r in rows)  # noqa: E731
    assert (from_t(3), from_t(2), from_t(1)) == (20, 6, 3)
    assert len({r["id"] for r in rows}) == len(rows)
    assert mix(own, earlier, 0.3, seed=0) == rows  # seeded
    assert len(mix(own, [[{"id": "t1-0"}]], 0.3, seed=0)) == 21  # fewer earlier pairs than the cap: all of them


def test_prompt_splits_are_disjoint_and_the_validation_split_is_fixed() -> None:
    items = list(range(100))
    splits = [deal(items, validation=10, per_iteration=25, iteration=t, seed=3) for t in (1, 2, 3, 4)]
    validation = {tuple(v) for v, _ in splits}
    assert len(validation) == 1 and len(next(iter(validation))) == 10
    parts = [set(s) for _, s in splits] + [set(splits[0][0])]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 100
    assert deal(items, validation=10, per_iteration=25, iteration=5, seed=3)[1] == []


def test_rubric_scores_are_read_strictly() -> None:
    assert parse_scores("Response 1: 5\nResponse 2: 3/6", 2) == [5.0, 3.0]
    assert parse_scores("**Response 2** - 4\nResponse 1 = 6", 2) == [6.0, 4.0]
    assert parse_scores("Response 1: 5", 2) is None  # a candidate without a score
    assert parse_scores("Response 1: 5\nResponse 1: 4\nResponse 2: 1", 2) is None  # scored twice
    assert parse_scores("Response 1: 9\nResponse 2: 1", 2) is None  # out of range
    request = rubric_request("Name a colour.", ["Red.", "Blue."])
    assert "Response 1:\nRed." in request and "Response 2:\nBlue." in request and "2 candidate" in request


class RubricJudge(ScriptedEngine):
    """Scores each candidate by its length, deterministically; ``fail_after`` interrupts a call, as a kill would.
    Its log-probs (the validation judge's pairwise verdicts) are `ScriptedEngine`'s."""

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.fail_after, self.judged = fail_after, 0

    def generate(self, conversations, sampling):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        out = []
        for conversation in conversations:
            self.judged += 1
            request = conversation[0]["content"]
            texts = re.findall(r"Response (\d+):\n(.*?)(?=\n\nResponse \d+:|\n\nAnswer with)", request, re.S)
            text = "\n".join(f"Response {i}: {min(6, 2 + len(answer) % 5)}" for i, answer in texts)
            if conversation[-1]["role"] == "assistant":  # prefilled: the answer goes on after the prefill
                text = text.removeprefix(conversation[-1]["content"])
            out.append(Completion([Sample(text, [], "stop", None)]))
        return out


def _recipe(tmp_path: Path, policy: Path, judge: Path, prompts: int = 12) -> Path:
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"Say something about {i}."}) + "\n" for i in range(prompts))
    )
    recipe = {
        "method": "dno",
        "model": str(policy),
        "iterations": 2,
        "synth": {
            "prompts": {"source": str(source), "per_iteration": 5, "validation": 2},
            "samples": {"k": 3, "max_new_tokens": 24},
            "judge": {"model": str(judge)},
            "pairs": {"min_positive": 3, "policy_gap": 0.5},
        },
        "train": {
            "epochs": 1,
            "batch_size": 2,
            "max_length": 128,
            "report_to": "none",
            "dtype": "float32",
            "learning_rate": 1e-4,
        },
        "report": {"prompts": ["Hi."], "max_new_tokens": 8},
    }
    path = tmp_path / "dno.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_two_iterations_train_against_the_previous_iterate_and_resume_inside_annotation(
    tmp_path, chatty_tiny_dir, tiny_model_dir, monkeypatch
) -> None:
    import sao.engine.lazy
    import sao.train.trainers

    real_build = sao.engine.lazy.build_engine
    judges = [RubricJudge(fail_after=1), RubricJudge()]  # the first run is interrupted in iteration 1's scores

    def build(model, *args, **kwargs):
        return judges[0] if Path(model) == tiny_model_dir else real_build(model, *args, **kwargs)

    references = []
    real_trainer = sao.train.trainers.build_trainer

    def capture(*args, ref_model=None, **kwargs):
        references.append({k: v.detach().clone() for k, v in ref_model.state_dict().items()})
        return real_trainer(*args, ref_model=ref_model, **kwargs)

    monkeypatch.setattr("sao.engine.lazy.build_engine", build)
    monkeypatch.setattr("sao.train.trainers.build_trainer", capture)
    recipe, out = _recipe(tmp_path, chatty_tiny_dir, tiny_model_dir), tmp_path / "run"
    args = ["run", str(recipe), "--out", str(out), "--chunk-size", "1"]
    interrupted = CliRunner().invoke(app, args)
    assert isinstance(interrupted.exception, KeyboardInterrupt) or interrupted.exit_code != 0
    scores = out / "iter-1" / "synth" / "scores.jsonl"
    written = len(scores.read_text().splitlines())
    assert written == judges[0].judged == 1  # one chunk of one row, then the kill

    judges.pop(0)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    scored = len(scorable(out / "iter-1" / "synth" / "samples.jsonl"))
    assert len({r["id"] for r in rows}) == len(rows) == scored  # none lost, none judged twice
    assert judges[0].judged == (scored - 1) + len(scorable(out / "iter-2" / "synth" / "samples.jsonl"))

    # Iteration 2's reference is iteration 1's trained model; each iteration's first loss is ln 2.
    from safetensors.torch import load_file

    trained = load_file(str(out / "iter-1" / "model" / "model.safetensors"))
    reference = references[-1]
    assert all(torch.equal(reference[k], v) for k, v in trained.items() if k in reference)
    for index in (1, 2):
        history = [
            json.loads(line) for line in (out / f"iter-{index}" / "train" / "history.jsonl").read_text().splitlines()
        ]
        assert math.isclose(next(h["loss"] for h in history if "loss" in h), math.log(2), abs_tol=1e-4)
    # Ids stay unique across iterations, and iteration 2 mixed in iteration 1's pairs under the cap.
    training = [json.loads(line) for line in (out / "iter-2" / "synth" / "training.jsonl").read_text().splitlines()]
    own = [r for r in training if r["iteration"] == 2]
    assert len({r["id"] for r in training}) == len(training)
    assert sum(r["iteration"] == 1 for r in training) <= int(len(own) * 0.3)
    assert (out / "iter-2" / "synth" / "report.md").read_text().count("pair rules") == 1
    # The best iterate on the validation split, by one fixed judge (the named one), is recorded.
    selection = json.loads((out / "selection.json").read_text())
    assert list(selection["win_rates"]) == ["start", "iter-1", "iter-2"] and selection["judge"] == str(tiny_model_dir)
    assert selection["best"] == max(selection["win_rates"], key=selection["win_rates"].get)
    assert "Best iterate on the validation split" in (out / "report.md").read_text()
    assert (out / "selection.png").is_file()


def scorable(path: Path) -> list[dict]:
    """Sample rows with two candidates or more (there is no gold here): the ones the judge scores."""
    return [r for r in map(json.loads, path.read_text().splitlines()) if len(r["usable"]) >= 2]


def test_a_hf_dataset_prompt_set_is_read_from_its_column_and_named_in_errors(monkeypatch) -> None:
    import datasets

    import sao.models
    from sao.errors import InputError
    from sao.methods.dno.stages import prompt_set

    table = datasets.Dataset.from_dict({"instruction": ["Say hi.", "Count to 3.", "Say hi."]})
    monkeypatch.setattr(sao.models, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: table)
    prompts = prompt_set("hf:openbmb/UltraFeedback", "instruction")
    assert [p.messages[0]["content"] for p in prompts] == ["Say hi.", "Count to 3."]  # the repeat once
    assert len({p.id for p in prompts}) == 2
    with pytest.raises(
        InputError, match=r"^synth\.prompts\.source: HF dataset 'openbmb/UltraFeedback' has no 'prompt'"
    ):
        prompt_set("hf:openbmb/UltraFeedback", "prompt")


def test_pairwise_scores_are_six_times_the_mean_debiased_win_probability() -> None:
    from sao.judge.verdict import Judgement
    from sao.methods.dno.pairwise import win_scores

    # Three candidates; p_first is P(slot 1 wins). 0 beats 1 in both orders (p 0.8 / 0.2), 2 ties both.
    verdicts = {(0, 1): 0.8, (1, 0): 0.2, (0, 2): 0.5, (2, 0): 0.5, (1, 2): 0.5, (2, 1): 0.5}
    judgements = [Judgement(first=a, second=b, p_first=p) for (a, b), p in verdicts.items()]
    scores = win_scores(3, judgements)
    # debiased P(0 > 1) = (0.8 + (1 - 0.2)) / 2 = 0.8: wins 0: 0.8 + 0.5, 1: 0.2 + 0.5, 2: 0.5 + 0.5.
    assert scores == [pytest.approx(6 * 1.3 / 2), pytest.approx(6 * 0.7 / 2), pytest.approx(3.0)]
    broken = [j if (j.first, j.second) != (2, 1) else j.model_copy(update={"p_first": None}) for j in judgements]
    assert win_scores(3, broken) is None  # an unparsed verdict voids the line-up (counted as parse_failure)


@pytest.mark.slow
def test_the_dno_quickstart_recipe_runs_end_to_end_on_the_default_model(tmp_path) -> None:
    """recipes/dno-quickstart-cpu.yaml as shipped, with fewer and shorter samples so that it fits the suite."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    smaller = ["synth.prompts.per_iteration=6", "synth.prompts.validation=2", "synth.samples.k=2"]
    smaller += ["synth.samples.max_new_tokens=256", "train.max_length=512", "report.max_new_tokens=16"]
    command = [sys.executable, "-m", "sao", "run", "recipes/dno-quickstart-cpu.yaml", "--out", str(tmp_path / "run")]
    for item in smaller:
        command += ["--set", item]
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    for index in (1, 2):
        stages = json.loads((run / f"iter-{index}" / "synth" / "manifest.json").read_text())["stages"]
        assert [name for name, s in stages.items() if s["status"] == "done"] == [
            "prompts",
            "samples",
            "scores",
            "pairs",
            "training",
        ]
        assert stages["pairs"]["stats"]["kept"] > 0
        history = (run / f"iter-{index}" / "train" / "history.jsonl").read_text().splitlines()
        first = next(h["loss"] for h in map(json.loads, history) if "loss" in h)
        assert math.isclose(first, math.log(2), abs_tol=1e-3)  # DPO from the previous iterate
    selection = json.loads((run / "selection.json").read_text())
    assert list(selection["win_rates"]) == ["start", "iter-1", "iter-2"]
    assert selection["judge"] == "smollm2-135m"  # the fixed judge: the starting model, not each iterate
