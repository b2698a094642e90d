"""Stage 2: prompts by persona role-play (or, for the ablation, with no persona)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sao.dedup import NearDuplicateIndex, distinct_n, repetition_rate
from sao.engine import Engine, SamplingParams, derive_seed
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.extract import answer_text, extract_after_marker, request
from sao.synth.prompts import PROMPT_MARKER, build_prompt_request

STAGE = "prompts"


class PromptRow(BaseModel):
    id: str  # the persona's id, or np<i> in the no-persona ablation
    schema_version: int = 1
    persona: str | None
    prompt: str | None
    raw: str
    finish_reason: str
    drop_reason: str | None = None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Request:
    id: str
    persona: str | None


def prompt_requests(config: SynthConfig, persona_rows: list[dict[str, Any]]) -> list[Request]:
    if config.prompts.no_personas:
        return [Request(f"np{i}", None) for i in range(config.num_prompts)]
    return [Request(r["id"], r["persona"]) for r in kept(persona_rows)]


def make_rows(engine: Engine, config: SynthConfig, chunk: list[Request], index: NearDuplicateIndex) -> list[PromptRow]:
    c = config.prompts
    template = c.no_persona_template if c.no_personas else c.template
    convs = [request(build_prompt_request(r.persona, template), PROMPT_MARKER, c.prefill_marker) for r in chunk]
    params = [
        SamplingParams(
            temperature=c.temperature,
            top_p=c.top_p,
            max_new_tokens=c.max_new_tokens,
            seed=derive_seed(config.seed, STAGE, r.id),
        )
        for r in chunk
    ]
    rows = []
    for item, completion in zip(chunk, engine.generate(convs, params)):
        sample = completion.samples[0]
        raw = answer_text(sample.text, PROMPT_MARKER, c.prefill_marker)
        got = extract_after_marker(
            raw, PROMPT_MARKER, max_chars=c.max_chars, min_words=c.min_words, finish_reason=sample.finish_reason
        )
        row = PromptRow(
            id=item.id,
            persona=item.persona,
            prompt=got.text,
            raw=raw,
            finish_reason=sample.finish_reason,
            drop_reason=got.drop_reason,
        )
        if row.prompt is not None and (earlier := index.claim(row.id, row.prompt)) is not None:
            row.drop_reason, row.duplicate_of = "duplicate", earlier
        rows.append(row)
    return rows


def prompt_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Drops, plus the diversity of the parsed prompts (before duplicates are removed)."""
    parsed = [r["prompt"] for r in rows if r["prompt"] is not None]
    stats = drop_stats(rows)
    stats["parse_failure_rate"] = round(1 - len(parsed) / len(rows), 4) if rows else 0.0
    stats["repetition_rate"] = round(repetition_rate(parsed), 4)
    stats["distinct_1"] = round(distinct_n(parsed, 1), 4)
    stats["distinct_2"] = round(distinct_n(parsed, 2), 4)
    return stats


def run_prompts(
    engine: Engine, config: SynthConfig, store: RunStore, *, chunk_size: int = 32, progress: bool = True
) -> StageResult:
    requests = prompt_requests(config, store.rows("personas"))
    index: NearDuplicateIndex | None = None

    def process(chunk: list[Request]) -> list[PromptRow]:
        nonlocal index
        if index is None:  # resumed: earlier prompts still count for dedup (read after any --force redo)
            index = NearDuplicateIndex.of_rows(kept(store.rows(STAGE)), "prompt", config.prompts.dedup_threshold)
        return make_rows(engine, config, chunk, index)

    return run_stage(
        store,
        STAGE,
        requests,
        key=lambda r: r.id,
        process=process,
        chunk_size=chunk_size,
        stats=prompt_stats,
        progress=progress,
    )
