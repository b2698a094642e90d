"""``sao eval --verifiable``: accuracy with Wilson intervals, answer lengths, reports, resuming."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import pytest

import sao.engine.lazy
from sao.engine.types import Completion, Sample, SamplingParams
from sao.errors import ConfigError, InputError, ResumeConflictError
from sao.eval.verifiable import (
    Candidate,
    evaluate_verifiable,
    summarise_accuracy,
    verifiable_candidates,
    verifiable_eval,
)
from sao.rewards.tasks import Task
from sao.rewards.verifiable import ANSWER_INSTRUCTION

TASKS = [Task(f"t{i}", f"What is {i} + {i}?", str(2 * i), "math") for i in range(10)]


def test_summary_counts_correct_and_missing_answers_with_a_wilson_interval():
    texts = [f"Answer: {2 * i}" for i in range(8)] + ["Answer: 99", "no idea"]
    summary = summarise_accuracy(texts, [4] * 8 + [10, 30], TASKS)
    assert (summary.n, summary.correct, summary.no_answer, summary.accuracy) == (10, 8, 1, 0.8)
    # 8 of 10: the Wilson 95% interval is (0.490, 0.943) (Newcombe 1998, method 3)
    assert summary.low == pytest.approx(0.4902, abs=1e-3) and summary.high == pytest.approx(0.9433, abs=1e-3)
    assert summary.mean_tokens == 7.2
    none = summarise_accuracy(["no"] * 10, [1] * 10, TASKS)
    assert (none.accuracy, none.low, none.no_answer) == (0.0, 0.0, 10) and 0.2 < none.high < 0.35


def test_summary_refuses_mismatched_or_empty_input():
    with pytest.raises(InputError, match="task set is empty"):
        summarise_accuracy([], [], [])
    with pytest.raises(ValueError, match="2 answers and 2 token counts for 10 tasks"):
        summarise_accuracy(["a", "b"], [1, 2], TASKS)


class AnswerEngine:
    """Answers "i + i" questions from a table of its own, one right and one wrong, and records what it was asked."""

    def __init__(self) -> None:
        self.prompts: list = []
        self.params: list[SamplingParams] = []

    def generate(self, prompts: Sequence, params: SamplingParams) -> list[Completion]:
        self.prompts.extend(prompts)
        self.params.append(params)
        out = []
        for prompt in prompts:
            i = int(prompt[-1]["content"].split()[2])
            text = f"{i} plus {i}.\nAnswer: {2 * i if i % 2 == 0 else 2 * i + 1}"
            out.append(Completion([Sample(text=text, token_ids=[0] * (i + 1), finish_reason="stop", seed=None)]))
        return out


def test_evaluate_verifiable_asks_each_task_greedily_and_scores_it():
    engine = AnswerEngine()
    result = evaluate_verifiable(engine, TASKS, max_new_tokens=64, system="Be brief.", progress=False)
    assert (result.n, result.correct, result.no_answer) == (10, 5, 0)  # the odd ones are answered wrongly
    assert result.mean_tokens == 5.5
    assert all(p.greedy and p.max_new_tokens == 64 and p.n == 1 for p in engine.params)
    first = engine.prompts[0]
    assert first[0] == {"role": "system", "content": "Be brief."}
    assert first[1]["content"] == f"What is 0 + 0?\n\n{ANSWER_INSTRUCTION}"


def test_candidates_are_the_baseline_then_the_named_models(tmp_path):
    values = {"candidates": ["runs/x/iter-1/model", "runs/x/iter-2/model"], "names": ["iter-1", "iter-2"]}
    values["baseline"] = "smollm2-135m"
    assert verifiable_candidates(values) == [
        Candidate("smollm2-135m", "smollm2-135m"),
        Candidate("iter-1", "runs/x/iter-1/model"),
        Candidate("iter-2", "runs/x/iter-2/model"),
    ]
    with pytest.raises(ConfigError, match="^candidates: --verifiable needs a model"):
        verifiable_candidates({})
    with pytest.raises(ConfigError, match="^names: 1 names for 2 candidates"):
        verifiable_candidates({"candidates": ["a", "b"], "names": ["a"]})
    with pytest.raises(ConfigError, match="^names: 'm' names two candidates"):
        verifiable_candidates({"candidates": ["x/m", "y/m"]})
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"id": "t0", "output": "Answer: 0"}\n')
    with pytest.raises(ConfigError, match="is an answer file"):
        verifiable_candidates({"candidates": [str(answers)]})


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [{"prompt": "What is 2 + 3?", "answer": 5}, {"prompt": "What is 10 - 4?", "answer": "6"}]
    rows.append({"id": "gsm", "prompt": "Tom has 3 boxes of 4 pens. How many pens?", "answer": "3 * 4 = 12\n#### 12"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sao_eval_verifiable_writes_the_report(tmp_path, task_file, tiny_model_dir, chatty_tiny_dir):
    out = tmp_path / "eval"
    args = ["eval", "--verifiable", str(task_file), "-m", str(tiny_model_dir), "--name", "tiny"]
    args += ["--baseline", str(chatty_tiny_dir), "--max-new-tokens", "16", "-o", str(out)]
    proc = subprocess.run([sys.executable, "-m", "sao", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "verifiable.json").read_text())
    assert summary["max_new_tokens"] == 16
    assert [c["name"] for c in summary["candidates"]] == [chatty_tiny_dir.name, "tiny"]  # the baseline first
    for c in summary["candidates"]:
        generations = (out / c["name"] / "verifiable" / "generations.jsonl").read_text().splitlines()
        samples = [json.loads(line)["samples"][0] for line in generations]
        assert c["n"] == len(samples) == 3
        assert c["correct"] + c["no_answer"] <= c["n"] and c["accuracy"] == round(c["correct"] / c["n"], 4)
        assert c["low"] <= c["accuracy"] <= c["high"]
        assert c["mean_tokens"] == round(sum(s["num_tokens"] for s in samples) / 3, 2) <= 16
        assert f"{c['name']}: accuracy {c['accuracy']:.1%}" in proc.stdout
    report = (out / "verifiable.md").read_text()
    assert f"| tiny | `{tiny_model_dir}` | {summary['candidates'][1]['correct']} / 3 |" in report
    assert "verifiable.png" in report and (out / "verifiable.png").stat().st_size > 0


def test_a_finished_candidate_is_not_answered_again(tmp_path, task_file, tiny_model_dir, monkeypatch):
    built = []
    build = sao.engine.lazy.build_engine
    monkeypatch.setattr(sao.engine.lazy, "build_engine", lambda *a, **kw: built.append(a[0]) or build(*a, **kw))
    values = {"candidates": [str(tiny_model_dir)], "decoding": {"max_new_tokens": 8}, "limit": 2}
    first = verifiable_eval(values, task_file, tmp_path, progress=False)
    assert built == [str(tiny_model_dir)] and first[0][1].n == 2
    again = verifiable_eval(values, task_file, tmp_path, progress=False)
    assert built == [str(tiny_model_dir)] and again == first  # resumed: the model was never loaded
    with pytest.raises(ResumeConflictError, match="max_new_tokens"):
        verifiable_eval(values | {"decoding": {"max_new_tokens": 9}}, task_file, tmp_path, progress=False)
