"""SELF-ALIGN's human-written inputs: principles, worked exemplars, red-teaming question types, the verbose
prompt and the seed tasks. sao ships its own (``data/``, Apache-2.0, written for sao); a recipe may point
each field at the user's own file, the paper's originals included. Each loader returns typed records and
raises InputError naming the file and the entry that is malformed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sao.errors import InputError

DATA = "data"


@dataclass(frozen=True)
class Principle:
    name: str
    text: str


@dataclass(frozen=True)
class Exemplar:
    user: str
    thoughts: str  # which rules apply, as the assistant thinks before it answers
    answer: str
    markers: tuple[str, ...]  # words only a copy of this exemplar would contain


@dataclass(frozen=True)
class QuestionType:
    name: str
    description: str
    seed_topic: str
    seed_question: str


@dataclass(frozen=True)
class VerbosePrompt:
    description: str
    exemplar: Exemplar  # thoughts unused: verbose cloning has none


@dataclass(frozen=True)
class SeedTask:
    id: str
    instruction: str


def _path(given: str | None, default: str) -> Path:
    if given is not None:
        return Path(given)
    return Path(str(resources.files("sao.methods.self_align") / DATA / default))


def _yaml(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({exc})".replace("\n", " ")) from None


def _entries(path: Path, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The file's list of mappings, each checked to have a non-empty string under every one of ``keys``."""
    data = _yaml(path)
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty YAML list")
    for i, entry in enumerate(data):
        _check(entry, keys, f"{path}: entry {i + 1}")
    return data


def _check(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a mapping with {', '.join(keys)}")
    for key in keys:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise InputError(f"{where}: '{key}' must be a non-empty string")


def _markers(entry: dict[str, Any], where: str) -> tuple[str, ...]:
    markers = entry.get("markers", [])
    if not isinstance(markers, list) or not all(isinstance(m, str) and m.strip() for m in markers):
        raise InputError(f"{where}: 'markers' must be a list of non-empty strings")
    return tuple(m.strip().lower() for m in markers)


def load_principles(path: str | None = None) -> list[Principle]:
    file = _path(path, "principles.yaml")
    return [Principle(e["name"].strip(), e["text"].strip()) for e in _entries(file, ("name", "text"))]


def load_exemplars(path: str | None = None) -> list[Exemplar]:
    file = _path(path, "exemplars.yaml")
    entries = _entries(file, ("user", "thoughts", "answer"))
    return [
        Exemplar(e["user"].strip(), e["thoughts"].strip(), e["answer"].strip(), _markers(e, f"{file}: entry {i + 1}"))
        for i, e in enumerate(entries)
    ]


def load_question_types(path: str | None = None) -> list[QuestionType]:
    file = _path(path, "question_types.yaml")
    entries = _entries(file, ("name", "description", "seed_topic", "seed_question"))
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise InputError(f"{file}: two question types share a name")
    return [
        QuestionType(*(e[k].strip() for k in ("name", "description", "seed_topic", "seed_question"))) for e in entries
    ]


def load_verbose_prompt(path: str | None = None) -> VerbosePrompt:
    file = _path(path, "verbose.yaml")
    data = _yaml(file)
    _check(data, ("description",), str(file))
    exemplar = data.get("exemplar")
    _check(exemplar, ("user", "answer"), f"{file}: exemplar")
    example = Exemplar(
        exemplar["user"].strip(), "", exemplar["answer"].strip(), _markers(exemplar, f"{file}: exemplar")
    )
    return VerbosePrompt(data["description"].strip(), example)


def load_seed_tasks(path: str | None = None) -> list[SeedTask]:
    file = _path(path, "seed_tasks.jsonl")
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    tasks = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{file}: line {number} is not JSON") from None
        _check(row, ("instruction",), f"{file}: line {number}")
        tasks.append(SeedTask(str(row.get("id", number)), row["instruction"].strip()))
    if not tasks:
        raise InputError(f"{file}: no seed tasks")
    return tasks
