"""Verifiable task sets: questions with one reference final answer, for a 0/1 reward and for accuracy.

Four sources (`TaskSource.kind`):

- ``arithmetic`` (the default): sao's own seeded generator of multi-step integer expressions and short word
  problems (shopping, ages, travel, sharing, saving, baking). It needs no file and no network, and a training
  set and a held-out set come from two seeds.
- ``jsonl``: a file of ``{"prompt": ..., "answer": ...}`` rows (``id`` optional), the format
  ``sao eval --verifiable`` reads.
- ``hf``: a Hugging Face dataset, GSM8K's layout by default (``question``, and an ``answer`` that ends with
  ``#### N``); MATH-style answers with ``\\boxed{...}`` give the boxed content.
- ``reasoning_gym``: one of reasoning-gym's procedural generators (``pip install 'sao[reasoning-gym]'``; offline,
  Apache-2.0), e.g. ``gsm_symbolic`` for GSM8K-like problems.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sao.errors import ConfigError, InputError, first_line
from sao.jsonl import read_jsonl
from sao.recipe import Section
from sao.rewards.verifiable import ANSWER_INSTRUCTION, Checker

# Tries per task wanted before the generator gives up finding new questions (a tiny number space).
_TRIES_PER_TASK = 50


@dataclass(frozen=True)
class Task:
    """One question and its reference final answer, checked by ``checker`` (see `sao.rewards.verifiable`)."""

    id: str
    question: str
    answer: str
    checker: Checker


class TaskSource(Section):
    """Where a verifiable task set comes from."""

    kind: Literal["arithmetic", "jsonl", "hf", "reasoning_gym"] = Field(
        "arithmetic",
        description="arithmetic: sao's seeded generator of integer expressions and word problems (no file, no "
        "network); jsonl: a file of prompt/answer rows; hf: a Hugging Face dataset (GSM8K's layout by default); "
        "reasoning_gym: a reasoning-gym generator (the sao[reasoning-gym] extra).",
    )
    path: str | None = Field(
        None,
        description="jsonl: the file (rows with `prompt` and `answer`, `id` optional). hf: a dataset id on the hub "
        "(e.g. openai/gsm8k) or a local dataset directory.",
    )
    hf_config: str | None = Field(None, description="hf: the dataset's configuration (GSM8K: `main`).")
    split: str = Field("train", description="hf: the split to read.")
    question_field: str = Field("question", description="hf: the column holding the question.")
    answer_field: str = Field(
        "answer",
        description="hf: the column holding the answer; a GSM8K answer gives the number after its last `####`, a "
        "MATH-style one the content of its last `\\boxed{...}`.",
    )
    checker: Literal["math", "exact"] = Field(
        "math",
        description="How an answer is compared with the reference: math (math-verify: 1,000 = 1000, 1/2 = 0.5) or "
        "exact (the same text, ignoring case and whitespace).",
    )
    dataset: str | None = Field(
        None,
        description="reasoning_gym: the generator's name, e.g. gsm_symbolic, basic_arithmetic, chain_sum (its "
        "answers are not all numbers: set checker to exact for the text ones).",
    )
    steps: int = Field(3, ge=1, le=6, description="arithmetic: operations in each expression.")
    max_operand: int = Field(
        20, ge=2, le=1000, description="arithmetic: the largest number an expression or word problem starts from."
    )
    word_problems: float = Field(
        0.5, ge=0, le=1, description="arithmetic: the share of word problems; the rest are expressions."
    )

    @model_validator(mode="after")
    def _fields_match_kind(self) -> TaskSource:
        reads_path = self.kind in ("jsonl", "hf")
        if reads_path != bool(self.path):
            raise ValueError(f"path: kind '{self.kind}' " + ("needs a path" if reads_path else "reads no path"))
        if (self.kind == "reasoning_gym") != bool(self.dataset):
            raise ValueError(f"dataset: kind '{self.kind}' " + ("reads no dataset" if self.dataset else "needs one"))
        return self


def load_tasks(source: TaskSource, *, count: int | None, seed: int) -> list[Task]:
    """``count`` tasks from ``source``.

    arithmetic: ``count`` new problems from the generator seeded with ``seed`` (ids ``arithmetic-s<seed>-<i>``;
    no question repeats within a set; two seeds draw independently, so a held-out seed rarely meets a training
    question). reasoning_gym: the same, from its generator ``source.dataset``. jsonl and hf: the first ``count``
    rows in order (all of them when ``count`` is None; fewer when the source has fewer); ``seed`` is not used, so
    a source's order decides its split.

    Raises ConfigError for a ``count`` below 1, or None for a generator, or a generator that is not installed or
    too narrow to give ``count`` distinct questions; InputError for a bad file or dataset, naming the file and
    line or the field.
    """
    if count is not None and count < 1:
        raise ConfigError(f"count: must be >= 1, got {count}")
    if source.kind in ("arithmetic", "reasoning_gym"):
        if count is None:
            raise ConfigError(f"count: the {source.kind} generator needs a number of tasks")
        generate = arithmetic_tasks if source.kind == "arithmetic" else reasoning_gym_tasks
        return generate(source, count=count, seed=seed)
    if source.kind == "jsonl":
        return jsonl_tasks(Path(source.path), source.checker)[:count]
    return hf_tasks(source)[:count]


def task_prompt(task: Task, system: str | None) -> list[dict[str, str]]:
    """The conversation that asks ``task``: ``system`` (if any), then the question and `ANSWER_INSTRUCTION`."""
    user = {"role": "user", "content": f"{task.question}\n\n{ANSWER_INSTRUCTION}"}
    return [{"role": "system", "content": system}, user] if system else [user]


def reference_answer(text: str) -> str:
    """The final answer in a reference solution: after GSM8K's last ``####``, else inside the last
    ``\\boxed{...}`` (MATH), else the whole text; stripped."""
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    boxed = _last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces balanced; None when there is none (or it is unclosed)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i]
            depth -= 1
    return None


# --------------------------------------------------------------------------------------------- files and datasets


def jsonl_tasks(path: Path, checker: Checker) -> list[Task]:
    """The tasks of a JSONL file of ``prompt``/``answer`` rows (an ``id`` is optional: the line number).

    The answer is a string or a number, read through `reference_answer` (a pasted GSM8K solution gives its final
    number). Raises InputError naming the file and line for a missing prompt or answer or a repeated id, and for
    a file with no rows.
    """
    tasks, seen = [], {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
            raise InputError(f"{where}: needs a non-empty 'prompt' string")
        answer = obj.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float) or not str(answer).strip():
            raise InputError(f"{where}: needs an 'answer' (a string or a number)")
        task_id = str(obj.get("id", lineno))
        if task_id in seen:
            raise InputError(f"{where}: id '{task_id}' already used on line {seen[task_id]}")
        seen[task_id] = lineno
        tasks.append(Task(task_id, obj["prompt"], reference_answer(str(answer)), checker))
    if not tasks:
        raise InputError(f"{path}: no tasks")
    return tasks


def hf_tasks(source: TaskSource) -> list[Task]:
    """Every row of ``source``'s HF dataset split as a task (ids ``<split>-<row>``); InputError naming the field
    for a dataset that cannot be loaded or lacks a column."""
    from sao.hf_data import load_hf_split

    ds = load_hf_split(source.path, source.hf_config, split=source.split, field="path")
    for field in ("question_field", "answer_field"):
        column = getattr(source, field)
        if column not in ds.column_names:
            raise InputError(f"{field}: HF dataset '{source.path}' has no '{column}' column")
    return [
        Task(f"{source.split}-{i}", str(q), reference_answer(str(a)), source.checker)
        for i, (q, a) in enumerate(zip(ds[source.question_field], ds[source.answer_field]))
    ]


def reasoning_gym_tasks(source: TaskSource, *, count: int, seed: int) -> list[Task]:
    """``count`` problems of reasoning-gym's generator ``source.dataset`` (ids ``<dataset>-s<seed>-<i>``).

    reasoning-gym seeds item i with ``seed + i``, so its seeds 1 and 2 share all but one item; sao hands it a
    63-bit hash of ``seed`` instead, which keeps two seeds' items apart. Raises ConfigError when the extra is not
    installed or names no such generator.
    """
    try:
        import reasoning_gym
    except ImportError:
        raise ConfigError("kind: reasoning_gym needs the extra: pip install 'sao[reasoning-gym]'") from None
    from sao.engine.types import derive_seed

    try:
        items = reasoning_gym.create_dataset(source.dataset, size=count, seed=derive_seed("reasoning_gym", seed))
    except ValueError as exc:  # "Dataset 'x' not registered"
        raise ConfigError(f"dataset: {first_line(exc)}") from None
    return [
        Task(f"{source.dataset}-s{seed}-{i}", item["question"], str(item["answer"]), source.checker)
        for i, item in enumerate(items)
    ]


# ------------------------------------------------------------------------------------------ the arithmetic generator


def arithmetic_tasks(source: TaskSource, *, count: int, seed: int) -> list[Task]:
    """``count`` distinct problems from the generator seeded with ``seed``: each is a word problem with
    probability ``source.word_problems``, else an expression of ``source.steps`` operations. The same seed and
    settings give the same tasks. Raises ConfigError when ``count`` distinct questions cannot be found."""
    rng = random.Random(f"sao-arithmetic-{seed}")  # a string seed: neighbouring seeds share no stream
    tasks: list[Task] = []
    seen: set[str] = set()
    for _ in range(count * _TRIES_PER_TASK):
        if len(tasks) == count:
            break
        if rng.random() < source.word_problems:
            question, answer = rng.choice(WORD_PROBLEMS)(rng, source.max_operand)
        else:
            question, answer = expression_problem(rng, source.steps, source.max_operand)
        if question not in seen:
            seen.add(question)
            tasks.append(Task(f"arithmetic-s{seed}-{len(tasks)}", question, str(answer), source.checker))
    if len(tasks) < count:
        raise ConfigError(
            f"max_operand: only {len(tasks)} distinct problems of {count} found; raise max_operand or steps"
        )
    return tasks


# Binding strength of each operator, for parentheses: an operand binding less tightly than its operator needs them.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3
_SMALL = 12  # the largest multiplier or divisor, so that values stay in mental-arithmetic range


def expression_problem(rng: random.Random, steps: int, max_operand: int) -> tuple[str, int]:
    """An expression of ``steps`` operations on integers in [1, ``max_operand``] and its value.

    Each step combines the expression so far with a new number, on either side, by ``+``, ``-``, ``*`` or an
    exact ``/``; every intermediate value is a non-negative integer, so the answer is one too.
    """
    value = rng.randint(1, max_operand)
    text, precedence = str(value), _ATOM
    for _ in range(steps):
        op, number, number_first = _next_step(rng, value, max_operand)
        if number_first:
            left, right, left_prec, right_prec = str(number), text, _ATOM, precedence
        else:
            left, right, left_prec, right_prec = text, str(number), precedence, _ATOM
        if left_prec < _PRECEDENCE[op]:
            left = f"({left})"
        # a - (b + c) and a / (b * c): the right operand of - and / needs parentheses at equal precedence too
        if right_prec < _PRECEDENCE[op] or (right_prec == _PRECEDENCE[op] and op in "-/"):
            right = f"({right})"
        text, precedence = f"{left} {op} {right}", _PRECEDENCE[op]
        value = _apply(op, *((number, value) if number_first else (value, number)))
    phrase = rng.choice(("What is {}?", "Compute {}.", "Evaluate {}.", "Calculate {}."))
    return phrase.format(text), value


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b if op == "*" else a // b  # `_next_step` only divides exactly


def _next_step(rng: random.Random, value: int, max_operand: int) -> tuple[str, int, bool]:
    """An operator, a number, and whether the number goes first, such that the result is a whole number >= 0."""
    small = min(_SMALL, max_operand)
    while True:
        op, number_first = rng.choice("+-*/"), rng.random() < 0.5
        if op == "+":
            return op, rng.randint(1, max_operand), number_first
        if op == "*" and value <= 200:  # keeps products below a few thousand
            return op, rng.randint(2, small), number_first
        if op == "-" and number_first:
            return op, value + rng.randint(0, max_operand), True
        if op == "-" and value >= 1:
            return op, rng.randint(1, min(value, max_operand)), False
        if op == "/" and number_first and value >= 1:
            return op, value * rng.randint(2, small), True
        if op == "/" and not number_first and value >= 2:
            divisors = [d for d in range(2, small + 1) if value % d == 0]
            if divisors:
                return op, rng.choice(divisors), False


# Word problems: each takes the generator and the size of its numbers and returns (question, answer). The numbers
# appear in the question in the order the solution uses them.
_NAMES = (("Ana", "she"), ("Ben", "he"), ("Chen", "he"), ("Dara", "she"), ("Eli", "he"), ("Farah", "she"))
_ITEMS = ("notebooks", "apples", "pens", "tickets", "mugs", "stickers")


def _shopping(rng: random.Random, hi: int) -> tuple[str, int]:
    (name, pronoun), item = rng.choice(_NAMES), rng.choice(_ITEMS)
    count, price = rng.randint(2, min(hi, 12)), rng.randint(1, hi)
    cost = count * price
    bill = next((b for b in (10, 20, 50, 100, 200) if b >= cost), (cost // 100 + 1) * 100)
    return (
        f"{name} buys {count} {item} at ${price} each and pays with a ${bill} bill. "
        f"How many dollars of change does {pronoun} get?",
        bill - cost,
    )


def _ages(rng: random.Random, hi: int) -> tuple[str, int]:
    (first, _), (second, _) = rng.sample(_NAMES, 2)
    age, gap, later = rng.randint(2, hi), rng.randint(1, hi), rng.randint(1, 10)
    return (
        f"{first} is {age} years old. {second} is {gap} years older than {first}. "
        f"How old will {second} be in {later} years?",
        age + gap + later,
    )


def _travel(rng: random.Random, hi: int) -> tuple[str, int]:
    speed, hours, speed2, hours2 = rng.randint(2, hi) * 5, rng.randint(1, 6), rng.randint(2, hi) * 5, rng.randint(1, 6)
    return (
        f"A train travels at {speed} km per hour for {hours} hours, then at {speed2} km per hour for {hours2} hours. "
        "How many kilometres does it travel in all?",
        speed * hours + speed2 * hours2,
    )


def _sharing(rng: random.Random, hi: int) -> tuple[str, int]:
    (name, _), item = rng.choice(_NAMES), rng.choice(_ITEMS)
    friends, each = rng.randint(2, min(hi, 12)), rng.randint(2, hi)
    given = rng.randint(1, each - 1)
    return (
        f"{name} shares {friends * each} {item} equally among {friends} friends and keeps none. "
        f"Each friend then gives {given} away. How many {item} does each friend have left?",
        each - given,
    )


def _saving(rng: random.Random, hi: int) -> tuple[str, int]:
    name, pronoun = rng.choice(_NAMES)
    weekly, weeks = rng.randint(2, hi), rng.randint(2, 12)
    spent = rng.randint(1, weekly * weeks)
    return (
        f"{name} saves ${weekly} every week for {weeks} weeks, then {pronoun} spends ${spent} on a gift. "
        "How many dollars are left?",
        weekly * weeks - spent,
    )


def _baking(rng: random.Random, hi: int) -> tuple[str, int]:
    trays, per_tray = rng.randint(2, min(hi, 12)), rng.randint(2, min(hi, 24))
    sold = rng.randint(0, trays * per_tray)
    return (
        f"A bakery bakes {trays} trays of {per_tray} muffins and sells {sold} of them. How many muffins are left?",
        trays * per_tray - sold,
    )


WORD_PROBLEMS: tuple[Callable[[random.Random, int], tuple[str, int]], ...] = (
    _shopping,
    _ages,
    _travel,
    _sharing,
    _saving,
    _baking,
)
