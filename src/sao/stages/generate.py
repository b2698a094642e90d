"""The ``generate`` stage: sample n responses for each prompt of a JSONL file.

Input rows have a ``prompt`` string or a ``messages`` list, and optionally an ``id``.
Rows without an id get one from their content, so reruns on the same file (or on a
file with rows appended) find the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from sao.engine import Conversation, Engine, SamplingParams, derive_seed
from sao.engine.chat_template import check_conversation
from sao.errors import ConfigError, InputError
from sao.jsonl import read_jsonl
from sao.rain.config import StrategySection, decoding_identity
from sao.recipe import validate
from sao.stage import StageResult, run_stage
from sao.store import RunStore

STAGE = "generations"
SCHEMA_VERSION = 1


class GenerateConfig(BaseModel, extra="forbid"):
    """Settings of a generate run. All of them change the rows, so all enter the config hash."""

    model: str = Field(description="Model alias, local directory or HF hub id.")
    n: int = Field(2, ge=1, description="Samples per prompt.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(256, ge=1, description="Token budget per sample.")
    stop: list[str] = Field(default_factory=list, description="Strings that end a sample (not kept).")
    seed: int = Field(0, description="Base seed; each row's seed derives from it and the row id.")
    system: str | None = Field(None, description="System message put before prompts that have none.")
    # Recorded with the engine (`decoding_identity`), not in the config hash: runs from before RAIN resume.
    decoding: StrategySection = Field(default_factory=StrategySection, description="sample, or RAIN's search.")


class ChatPrompt(BaseModel):
    id: str
    messages: list[dict[str, str]]


class SampleRecord(BaseModel):
    text: str
    finish_reason: Literal["stop", "length"]
    num_tokens: int
    seed: int | None


class GenerationRow(BaseModel):
    id: str
    schema_version: int = SCHEMA_VERSION
    messages: list[dict[str, str]]
    samples: list[SampleRecord]


def _conversation(obj: dict[str, Any], system: str | None, where: str) -> Conversation:
    if isinstance(obj.get("messages"), list):
        messages = obj["messages"]
    elif isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
        messages = [{"role": "user", "content": obj["prompt"]}]
    else:
        raise InputError(f"{where}: needs a non-empty 'prompt' string or a 'messages' list")
    check_conversation(messages, where)
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def load_prompts(path: str | Path, system: str | None = None) -> list[ChatPrompt]:
    """Read a prompt file into rows with stable ids.

    A row's ``id`` field wins; otherwise the id is a hash of its messages, with
    ``-2``, ``-3``... for repeats, so duplicates are kept rather than merged.
    Raises InputError naming the file and line for any bad row or repeated id.
    """
    rows: list[ChatPrompt] = []
    seen: dict[str, int] = {}
    repeats: Counter[str] = Counter()
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        messages = _conversation(obj, system, where)
        if "id" in obj:
            if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
                raise InputError(f"{where}: 'id' must be a string or an integer")
            row_id = str(obj["id"])
        else:
            digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
            repeats[digest] += 1
            row_id = digest if repeats[digest] == 1 else f"{digest}-{repeats[digest]}"
        if row_id in seen:
            raise InputError(f"{where}: id '{row_id}' already used on line {seen[row_id]}")
        seen[row_id] = lineno
        rows.append(ChatPrompt(id=row_id, messages=messages))
    if not rows:
        raise InputError(f"{path}: no prompts")
    return rows


def sampling_for(config: GenerateConfig, row_id: str) -> SamplingParams:
    """The row's sampling parameters; its seed depends only on the base seed and its id."""
    return SamplingParams(
        n=config.n,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        stop=tuple(config.stop),
        seed=derive_seed(config.seed, row_id),
    )


def generate_rows(engine: Engine, config: GenerateConfig, prompts: list[ChatPrompt]) -> list[GenerationRow]:
    """Sample responses for a chunk of prompts (pure apart from the engine call)."""
    completions = engine.generate([p.messages for p in prompts], [sampling_for(config, p.id) for p in prompts])
    return [
        GenerationRow(
            id=p.id,
            messages=p.messages,
            samples=[
                SampleRecord(text=s.text, finish_reason=s.finish_reason, num_tokens=s.num_tokens, seed=s.seed)
                for s in c.samples
            ],
        )
        for p, c in zip(prompts, completions)
    ]


def finish_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of samples by finish reason, and mean tokens per sample."""
    samples = [s for row in rows for s in row["samples"]]
    reasons = Counter(s["finish_reason"] for s in samples)
    return {
        "samples": len(samples),
        "finish_reasons": dict(reasons),
        "mean_tokens": round(sum(s["num_tokens"] for s in samples) / max(len(samples), 1), 2),
    }


def run_generate(
    engine: Engine,
    config: GenerateConfig,
    prompts: list[ChatPrompt],
    out_dir: str | Path,
    *,
    model_info: dict[str, Any] | None = None,
    chunk_size: int = 32,
    force: bool = False,
    progress: bool = True,
) -> tuple[RunStore, StageResult]:
    """Run (or resume) the generate stage over ``prompts`` (see `load_prompts`) into ``out_dir``."""
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: must be >= 1, got {chunk_size}")
    model_info = (model_info or {}) | decoding_identity(config.decoding) or None
    store = RunStore.open(out_dir, config.model_dump(exclude={"decoding"}), model_info, force=force)
    result = run_stage(
        store,
        STAGE,
        prompts,
        key=lambda p: p.id,
        process=lambda chunk: generate_rows(engine, config, chunk),
        chunk_size=chunk_size,
        stats=finish_stats,
        progress=progress,
    )
    return store, result


def validate_config(values: dict[str, Any]) -> GenerateConfig:
    """Build a GenerateConfig; a bad value is one ConfigError naming the field."""
    return validate(GenerateConfig, values)
