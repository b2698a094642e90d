"""Instruction and answer files of public benchmarks (AlpacaEval, MT-Bench) and plain JSONL, as typed records.

Reading detects the format from the file's content, not its name, because benchmark files are often renamed
and AlpacaEval's files are all called ``*.json`` whatever they hold. Writing produces the files that the official
tools read (``alpaca_eval --model_outputs`` and FastChat's ``llm_judge``), so a model tuned here can be scored
by them unchanged.

Formats read:

* AlpacaEval: a JSON array of objects with ``instruction`` (and, in ``model_outputs.json`` and the eval set,
  ``output`` and ``generator``; optionally ``dataset``). The same objects one per line, as ``datasets`` exports
  them, are read the same way. An item's id is its ``id`` field if it has one, else its 0-based position, because
  AlpacaEval itself has no ids and pairs outputs by position (or instruction text).
* MT-Bench (FastChat): ``question.jsonl`` lines with ``question_id`` and ``turns``; answer files under
  ``model_answer/`` with ``question_id``, ``model_id`` and ``choices[0].turns``.
* Plain JSONL: what ``sao generate`` reads (a ``prompt`` string or a ``messages`` list, optional ``id``), and for
  outputs, lines with ``id`` and ``output`` (or ``text``).

Every error is one `InputError` naming the file and the line (JSONL) or item (JSON array).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sao.atomic import write_text_atomic
from sao.errors import ConfigError, InputError
from sao.jsonl import parse_jsonl_lines
from sao.stages.generate import load_prompts

__all__ = [
    "Instruction",
    "Output",
    "read_instructions",
    "read_outputs",
    "write_alpaca_eval",
    "write_mt_bench_answers",
]

# (where, object): ``where`` is "file:line" for JSONL and "file: item i" for a JSON array, ready for messages.
_Record = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Instruction:
    """One benchmark item: the conversation a model is asked to answer.

    ``messages`` are {role, content} dicts. For MT-Bench read with ``turns="all"`` they are the user turns only,
    with no assistant messages between them (see `read_instructions`).
    """

    id: str
    messages: list[dict[str, str]]
    category: str | None = None
    dataset: str | None = None
    difficulty: float | None = None  # AlpacaEval's ``instruction_difficulty``, used by the LC win rate


@dataclass(frozen=True)
class Output:
    """One model's answer to one instruction (for MT-Bench, the answer to one turn: the first by default).

    ``later`` holds the answers to the turns after that one, when the source has them (MT-Bench answer files,
    multi-turn generations); MT-Bench exports write them after ``text``.
    """

    id: str
    text: str
    generator: str | None = None
    later: tuple[str, ...] = ()


@dataclass
class Answers:
    """One side of the comparison: who answered, and the answer to every instruction."""

    name: str
    spec: str
    is_file: bool
    outputs: dict[str, Output]
    truncated: int | None = None  # answers cut at max_new_tokens (None when read from a file)


def read_instructions(path: str | Path, *, turns: Literal["first", "all"] = "first") -> list[Instruction]:
    """The instructions of an AlpacaEval, MT-Bench ``question.jsonl`` or plain JSONL file, in file order.

    The format is detected from the content: a JSON array (or JSONL lines with ``instruction``) is AlpacaEval,
    JSONL whose first line has ``question_id`` is MT-Bench, and other JSONL is plain (ids as in ``sao generate``:
    the ``id`` field, else a hash of the messages).

    ``turns`` only matters for MT-Bench. ``"first"`` gives the first user turn, a complete single-turn
    instruction. ``"all"`` gives every user turn, back to back: MT-Bench's later turns ask about the model's own
    earlier answers, which no file holds, so the caller must answer turn 1, put that answer after it and only
    then ask turn 2. The messages are that list of user turns, not a conversation to send as it is.

    Raises InputError naming the file and line or item for a bad row, a repeated id or an empty file, and
    ConfigError for an unknown ``turns``.
    """
    if turns not in ("first", "all"):
        raise ConfigError(f"turns: must be 'first' or 'all', got {turns!r}")
    path = Path(path)
    kind, records = _load(path)
    if not records:
        raise InputError(f"{path}: no instructions")
    first = records[0][1]
    if kind == "json" or "instruction" in first:
        pairs = [(where, _alpaca_instruction(i, where, obj)) for i, (where, obj) in enumerate(records)]
    elif "question_id" in first:
        pairs = [(where, _mt_bench_instruction(where, obj, turns)) for where, obj in records]
    else:
        # Same ids and checks as the generate stage, so its generations line up with these instructions.
        prompts = load_prompts(path)
        pairs = [
            (
                where,
                Instruction(
                    id=prompt.id,
                    messages=prompt.messages,
                    category=_optional_str(obj, "category", where),
                    dataset=_optional_str(obj, "dataset", where),
                    difficulty=_difficulty(obj, where),
                ),
            )
            for prompt, (where, obj) in zip(prompts, records)
        ]
    return list(_unique(pairs).values())


def read_outputs(path: str | Path, *, turn: int = 0) -> dict[str, Output]:
    """One model's answers from an AlpacaEval, MT-Bench answer or plain JSONL file, keyed by instruction id.

    Detection as in `read_instructions`: a JSON array (or JSONL lines with ``instruction``) is AlpacaEval
    (``output``, optional ``generator``; keyed by ``id`` or position), JSONL with ``question_id`` is an MT-Bench
    answer file (``choices[0].turns[turn]``, generator ``model_id``), other JSONL is plain (``id`` and ``output``
    or ``text``, optional ``generator``).

    ``turn`` (0-based) picks which MT-Bench turn's answer to read; other formats have one answer per id.
    Raises InputError naming the file and line or item for a bad row, a repeated id or an empty file.
    """
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise ConfigError(f"turn: must be an integer >= 0, got {turn!r}")
    path = Path(path)
    kind, records = _load(path)
    if not records:
        raise InputError(f"{path}: no outputs")
    first = records[0][1]
    if kind == "json" or "instruction" in first:
        pairs = [(where, _alpaca_output(i, where, obj)) for i, (where, obj) in enumerate(records)]
    elif "question_id" in first:
        pairs = [(where, _mt_bench_output(where, obj, turn)) for where, obj in records]
    else:
        pairs = [(where, _plain_output(where, obj)) for where, obj in records]
    return _unique(pairs)


def write_alpaca_eval(
    path: str | Path, instructions: Sequence[Instruction], outputs: Mapping[str, Output], generator: str
) -> None:
    """Write AlpacaEval's ``model_outputs.json``: one {instruction, output, generator, dataset} per instruction.

    Rows follow ``instructions``' order, since AlpacaEval has no ids and our reader keys them by position. Each
    instruction must be one user turn (system messages are left out: AlpacaEval's judge never sees them).
    ``alpaca_eval`` picks its reader by suffix, so ``path`` should end in ``.json``. The write is atomic.
    Raises InputError naming ``path`` and the instruction id if an output is missing or an instruction has
    several turns.
    """
    path = Path(path)
    rows = [
        {
            "instruction": _single_turn(path, instruction),
            "output": output.text,
            "generator": generator,
            "dataset": instruction.dataset,
        }
        for instruction, output in _paired(path, instructions, outputs)
    ]
    write_text_atomic(path, json.dumps(rows, indent=2) + "\n")


def write_mt_bench_answers(
    path: str | Path, instructions: Sequence[Instruction], outputs: Mapping[str, Output], model_id: str
) -> None:
    """Write a FastChat answer file (``model_answer/<model_id>.jsonl``) with one turn per question.

    ``question_id`` is written as an integer when the id is one (FastChat matches answers to ``question.jsonl``'s
    integer ids). ``answer_id`` is a hash of model, question and text, so rewriting the same answers gives the
    same file apart from ``tstamp``. Each output's ``text`` and its ``later`` turns are written, so answers to
    both MT-Bench turns serve FastChat's multi-turn judgement too. The write is atomic.
    Raises InputError naming ``path`` and the instruction id if an output is missing.
    """
    path = Path(path)
    tstamp = time.time()
    lines = []
    for instruction, output in _paired(path, instructions, outputs):
        answer_id = hashlib.sha256(f"{model_id}\0{instruction.id}\0{output.text}".encode()).hexdigest()[:22]
        row = {
            "question_id": _question_id(instruction.id),
            "answer_id": answer_id,
            "model_id": model_id,
            "choices": [{"index": 0, "turns": [output.text, *output.later]}],
            "tstamp": tstamp,
        }
        lines.append(json.dumps(row) + "\n")
    write_text_atomic(path, "".join(lines))


def _load(path: Path) -> tuple[Literal["json", "jsonl"], list[_Record]]:
    """The objects of a JSON-array or JSONL file, each with where it came from."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if data.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"["):
        try:
            items = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from None
        records = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(f"{path}: item {i}: expected a JSON object, got {type(item).__name__}")
            records.append((f"{path}: item {i}", item))
        return "json", records
    try:
        return "jsonl", [(f"{path}:{lineno}", obj) for lineno, obj in parse_jsonl_lines(data, path)]
    except InputError as error:
        # A pretty-printed JSON object fails on its first line; say what the file is rather than "invalid JSON".
        try:
            whole = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise error from None
        if not isinstance(whole, dict):
            raise error from None
        raise InputError(
            f"{path}: one JSON object over several lines; expected a JSON array of objects (AlpacaEval) or one "
            "JSON object per line (JSONL)"
        ) from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Records keyed by their ``id``, in order; InputError naming both places when an id repeats."""
    seen: dict[str, str] = {}
    by_id: dict[str, Any] = {}
    for where, record in pairs:
        if record.id in seen:
            raise InputError(f"{where}: id '{record.id}' already used at {seen[record.id]}")
        seen[record.id] = where
        by_id[record.id] = record
    return by_id


def _id(obj: dict[str, Any], key: str, where: str) -> str:
    """``obj[key]`` as an id string; integers are allowed because FastChat's ids are integers."""
    value = obj.get(key)
    if value is None:
        raise InputError(f"{where}: needs '{key}'")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise InputError(f"{where}: '{key}' must be a non-empty string or an integer")
    return str(value)


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
    return value


def _difficulty(obj: dict[str, Any], where: str) -> float | None:
    value = obj.get("instruction_difficulty")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InputError(f"{where}: 'instruction_difficulty' must be a number, got {value!r}")
    return float(value)


def _alpaca_instruction(index: int, where: str, obj: dict[str, Any]) -> Instruction:
    text = obj.get("instruction")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: needs a non-empty 'instruction' string")
    # AlpacaFarm-style rows put part of the task in 'input'; joining it in some fixed way would silently change
    # the task, so refuse instead (AlpacaEval's own eval set has no 'input').
    if obj.get("input"):
        raise InputError(f"{where}: a non-empty 'input' field is not supported; merge it into 'instruction'")
    return Instruction(
        id=_id(obj, "id", where) if "id" in obj else str(index),
        messages=[{"role": "user", "content": text}],
        category=_optional_str(obj, "category", where),
        dataset=_optional_str(obj, "dataset", where),
        difficulty=_difficulty(obj, where),
    )


def _mt_bench_instruction(where: str, obj: dict[str, Any], turns: str) -> Instruction:
    user_turns = obj.get("turns")
    if not (isinstance(user_turns, list) and user_turns and all(isinstance(t, str) and t.strip() for t in user_turns)):
        raise InputError(f"{where}: MT-Bench question needs a non-empty 'turns' list of non-empty strings")
    chosen = user_turns[:1] if turns == "first" else user_turns
    return Instruction(
        id=_id(obj, "question_id", where),
        messages=[{"role": "user", "content": text} for text in chosen],
        category=_optional_str(obj, "category", where),
    )


def _alpaca_output(index: int, where: str, obj: dict[str, Any]) -> Output:
    text = obj.get("output")
    if not isinstance(text, str):
        raise InputError(f"{where}: needs an 'output' string")
    return Output(
        id=_id(obj, "id", where) if "id" in obj else str(index),
        text=text,
        generator=_optional_str(obj, "generator", where),
    )


def _mt_bench_output(where: str, obj: dict[str, Any], turn: int) -> Output:
    choices = obj.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        raise InputError(f"{where}: MT-Bench answer needs a non-empty 'choices' list of objects")
    answer_turns = choices[0].get("turns")
    if not (isinstance(answer_turns, list) and all(isinstance(t, str) for t in answer_turns)):
        raise InputError(f"{where}: 'choices[0].turns' must be a list of strings")
    if turn >= len(answer_turns):
        raise InputError(f"{where}: 'choices[0].turns' has {len(answer_turns)} turn(s), so no turn index {turn}")
    return Output(
        id=_id(obj, "question_id", where),
        text=answer_turns[turn],
        generator=_optional_str(obj, "model_id", where),
        later=tuple(answer_turns[turn + 1 :]),
    )


def _plain_output(where: str, obj: dict[str, Any]) -> Output:
    text = obj["output"] if "output" in obj else obj.get("text")
    if not isinstance(text, str):
        raise InputError(f"{where}: needs an 'output' (or 'text') string")
    return Output(id=_id(obj, "id", where), text=text, generator=_optional_str(obj, "generator", where))


def _paired(
    path: Path, instructions: Sequence[Instruction], outputs: Mapping[str, Output]
) -> list[tuple[Instruction, Output]]:
    """Each instruction with its output, checked before anything is written."""
    if not instructions:
        raise InputError(f"{path}: no instructions to write")
    _unique([(f"instruction {i}", instruction) for i, instruction in enumerate(instructions)])
    missing = [instruction.id for instruction in instructions if instruction.id not in outputs]
    if missing:
        raise InputError(
            f"{path}: no output for {len(missing)} of {len(instructions)} instructions (first: id '{missing[0]}')"
        )
    return [(instruction, outputs[instruction.id]) for instruction in instructions]


def _single_turn(path: Path, instruction: Instruction) -> str:
    """The one user message of a single-turn instruction (AlpacaEval has no multi-turn items)."""
    roles = [m["role"] for m in instruction.messages if m["role"] != "system"]
    if roles != ["user"]:
        raise InputError(
            f"{path}: instruction '{instruction.id}' has {len(roles)} non-system messages; AlpacaEval needs one "
            "user turn"
        )
    return next(m["content"] for m in instruction.messages if m["role"] == "user")


def _question_id(instruction_id: str) -> int | str:
    """The id as FastChat writes it: an int when it is the canonical spelling of one ("81", not "081")."""
    try:
        number = int(instruction_id)
    except ValueError:
        return instruction_id
    return number if str(number) == instruction_id else instruction_id
