"""Verifiable task sets: the arithmetic generator's answers are right, seeds split, files and datasets are read."""

from __future__ import annotations

import ast
import json
import operator
import re

import pytest

from sao.errors import ConfigError, InputError
from sao.recipe import validate
from sao.rewards.tasks import TaskSource, load_tasks, reference_answer, task_prompt
from sao.rewards.verifiable import ANSWER_INSTRUCTION

EXPRESSION = re.compile(r"^(?:What is|Compute|Evaluate|Calculate) (?P<expr>[\d\s+\-*/()]+)[?.]$")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression, read by Python's own parser (true division, so an inexact one shows)."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        return OPERATORS[type(node.op)](value(node.left), value(node.right))

    return value(ast.parse(expression, mode="eval").body)


def numbers(question: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", question)]


# Each word problem's answer from the numbers in its question, in the order they appear.
WORD_ANSWERS = {
    "pays with a": lambda count, price, bill: bill - count * price,
    "years older than": lambda age, gap, later: age + gap + later,
    "km per hour": lambda speed, hours, speed2, hours2: speed * hours + speed2 * hours2,
    "equally among": lambda total, friends, given: total // friends - given,
    "every week for": lambda weekly, weeks, spent: weekly * weeks - spent,
    "trays of": lambda trays, per_tray, sold: trays * per_tray - sold,
}


def test_arithmetic_answers_are_right():
    tasks = load_tasks(TaskSource(), count=400, seed=3)
    kinds = {"expression": 0} | dict.fromkeys(WORD_ANSWERS, 0)
    for task in tasks:
        assert int(task.answer) >= 0 and task.checker == "math"
        if match := EXPRESSION.match(task.question):
            assert evaluate(match["expr"]) == int(task.answer), task
            kinds["expression"] += 1
            continue
        (kind,) = [k for k in WORD_ANSWERS if k in task.question]
        assert WORD_ANSWERS[kind](*numbers(task.question)) == int(task.answer), task
        kinds[kind] += 1
    assert all(kinds.values()), kinds  # every kind of problem was drawn and checked
    assert 100 < kinds["expression"] < 300  # word_problems 0.5


def test_expression_settings_shape_the_problems():
    tasks = load_tasks(TaskSource(word_problems=0, steps=5, max_operand=9), count=50, seed=0)
    for task in tasks:
        expr = EXPRESSION.match(task.question)["expr"]
        assert len(re.findall(r" [+\-*/] ", expr)) == 5
        assert evaluate(expr) == int(task.answer)


def test_same_seed_same_tasks_other_seed_other_tasks():
    first = load_tasks(TaskSource(), count=200, seed=1)
    assert first == load_tasks(TaskSource(), count=200, seed=1)
    other = load_tasks(TaskSource(), count=200, seed=2)
    assert len({t.question for t in first} & {t.question for t in other}) <= 5
    assert len({t.question for t in first}) == 200  # no repeats within a set
    assert first[7].id == "arithmetic-s1-7" and other[7].id == "arithmetic-s2-7"


def test_a_generator_too_narrow_for_the_count_says_so():
    with pytest.raises(ConfigError, match="^max_operand: only .* distinct problems of 500"):
        load_tasks(TaskSource(word_problems=0, steps=1, max_operand=2), count=500, seed=0)
    with pytest.raises(ConfigError, match="^count: the arithmetic generator needs a number"):
        load_tasks(TaskSource(), count=None, seed=0)
    with pytest.raises(ConfigError, match="^count: must be >= 1"):
        load_tasks(TaskSource(), count=0, seed=0)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"path: kind 'jsonl' needs a path"):
        validate(TaskSource, {"kind": "jsonl"})
    with pytest.raises(ConfigError, match=r"path: kind 'arithmetic' reads no path"):
        validate(TaskSource, {"path": "tasks.jsonl"})
    with pytest.raises(ConfigError, match=r"dataset: kind 'reasoning_gym' needs one"):
        validate(TaskSource, {"kind": "reasoning_gym"})
    with pytest.raises(ConfigError, match=r"^checker: "):
        validate(TaskSource, {"checker": "fuzzy"})
    with pytest.raises(ConfigError, match=r"^steps: "):
        validate(TaskSource, {"steps": 0})


def test_jsonl_tasks_are_read_in_order(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [
        {"prompt": "What is 2 + 2?", "answer": 4},
        {"id": "gsm", "prompt": "Tom has 3 boxes of 4 pens.", "answer": "3 * 4 = 12\n#### 12"},
        {"prompt": "Simplify 2/4.", "answer": "$\\boxed{\\frac{1}{2}}$"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = load_tasks(TaskSource(kind="jsonl", path=str(path), checker="exact"), count=None, seed=0)
    assert [(t.id, t.answer, t.checker) for t in tasks] == [
        ("1", "4", "exact"),
        ("gsm", "12", "exact"),
        ("3", "\\frac{1}{2}", "exact"),
    ]
    assert [t.id for t in load_tasks(TaskSource(kind="jsonl", path=str(path)), count=2, seed=5)] == ["1", "gsm"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "Q1", "answer": "1"}', '{"prompt": "Q2"}'], r"tasks.jsonl:2: needs an 'answer'"),
        (['{"answer": "1"}'], r"tasks.jsonl:1: needs a non-empty 'prompt'"),
        (['{"prompt": "Q", "answer": "  "}'], r"tasks.jsonl:1: needs an 'answer'"),
        (['{"prompt": "Q", "answer": true}'], r"tasks.jsonl:1: needs an 'answer'"),
        (
            ['{"id": 1, "prompt": "Q", "answer": 1}', '{"id": "1", "prompt": "R", "answer": 2}'],
            r"tasks.jsonl:2: id '1'",
        ),
        (['{"prompt": "Q", "answer": 1}', "not json"], r"tasks.jsonl:2: invalid JSON"),
        ([""], r"tasks.jsonl: no tasks"),
    ],
)
def test_bad_jsonl_tasks_name_the_file_and_line(tmp_path, lines, message):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message):
        load_tasks(TaskSource(kind="jsonl", path=str(path)), count=None, seed=0)


def test_a_local_hf_dataset_in_gsm8k_layout(tmp_path):
    import datasets

    table = {
        "question": ["Ann has 2 cats and 3 dogs. How many pets?", "What is 10 less than 15?"],
        "answer": ["2 + 3 = <<2+3=5>>5\n#### 5", "15 - 10 = 5\n#### 5"],
    }
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(table)}).save_to_disk(str(tmp_path / "gsm"))
    source = TaskSource(kind="hf", path=str(tmp_path / "gsm"), split="test")
    tasks = load_tasks(source, count=None, seed=0)
    assert [(t.id, t.question, t.answer) for t in tasks] == [
        ("test-0", table["question"][0], "5"),
        ("test-1", table["question"][1], "5"),
    ]
    with pytest.raises(InputError, match=r"^path: HF dataset .* has no split 'train' \(it has test\)"):
        load_tasks(TaskSource(kind="hf", path=str(tmp_path / "gsm")), count=None, seed=0)
    with pytest.raises(InputError, match=r"^question_field: HF dataset .* has no 'problem' column"):
        load_tasks(source.model_copy(update={"question_field": "problem"}), count=None, seed=0)


def test_an_unreachable_hub_dataset_names_the_field(monkeypatch):
    import sao.models

    monkeypatch.setattr(sao.models, "hub_reachable", lambda: False)
    with pytest.raises(InputError, match=r"^path: cannot load HF dataset 'openai/gsm8k': .* unreachable"):
        load_tasks(TaskSource(kind="hf", path="openai/gsm8k", hf_config="main"), count=10, seed=0)


def test_reference_answers_from_solutions():
    assert reference_answer("He pays 3 * 6 = 18.\n#### 18") == "18"
    assert reference_answer("so $x = \\boxed{\\frac{a}{b}}$.") == "\\frac{a}{b}"
    assert reference_answer("\\boxed{1} first, then \\boxed{\\{2, 3\\}}") == "\\{2, 3\\}"
    assert reference_answer(" 42 ") == "42"


def test_reasoning_gym_tasks_offline_with_seeds_kept_apart():
    pytest.importorskip("reasoning_gym")
    source = TaskSource(kind="reasoning_gym", dataset="basic_arithmetic")
    first, second = (load_tasks(source, count=30, seed=s) for s in (1, 2))
    # reasoning-gym's own seeds 1 and 2 share 29 of 30 items; sao's hashed seeds share none.
    assert not {t.question for t in first} & {t.question for t in second}
    assert first == load_tasks(source, count=30, seed=1)
    assert first[0].id == "basic_arithmetic-s1-0" and first[0].answer.lstrip("-").isdigit()
    with pytest.raises(ConfigError, match="^dataset: .*'no_such_generator'"):
        load_tasks(source.model_copy(update={"dataset": "no_such_generator"}), count=3, seed=0)


def test_task_prompt_puts_the_answer_instruction_after_the_question():
    (task,) = load_tasks(TaskSource(), count=1, seed=0)
    assert task_prompt(task, None) == [{"role": "user", "content": f"{task.question}\n\n{ANSWER_INSTRUCTION}"}]
    with_system = task_prompt(task, "Be brief.")
    assert with_system[0] == {"role": "system", "content": "Be brief."} and with_system[1:] == task_prompt(task, None)
