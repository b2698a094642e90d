"""Stage 1: personas, from a file, a HF dataset, or written by the model itself (the offline default)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from sao.dedup import NearDuplicateIndex
from sao.engine import Engine, SamplingParams, derive_seed
from sao.errors import ConfigError, InputError
from sao.hf_data import hf_column
from sao.jsonl import read_jsonl
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.extract import answer_text, extract_after_marker, request
from sao.synth.personas import PERSONA_MARKER, PersonaSeed, build_persona_prompt, sample_seeds

log = logging.getLogger(__name__)

STAGE = "personas"


class PersonaRow(BaseModel):
    id: str
    schema_version: int = 1
    persona: str | None
    source: str
    attributes: dict[str, str] | None = None
    raw: str | None = None  # the model's output, for self-generated personas
    drop_reason: str | None = None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str | None  # None: the model writes it from ``seed``
    seed: PersonaSeed | None = None


def read_persona_texts(source: str) -> list[str]:
    """All personas of a file (.jsonl field 'persona', .txt lines, .parquet column 'persona') or 'hf:NAME[:CONFIG]'."""
    if source.startswith("hf:"):
        return _hf_personas(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"personas.source: {path}: no such file (or use 'self' or 'hf:NAME')")
    if path.suffix == ".txt":
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        texts = []
        for lineno, obj in read_jsonl(path):
            if not isinstance(obj.get("persona"), str):
                raise InputError(f"{path}:{lineno}: needs a 'persona' string")
            texts.append(obj["persona"])
        return texts
    if path.suffix == ".parquet":
        import datasets

        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        if "persona" not in ds.column_names:
            raise InputError(f"{path}: no 'persona' column (columns: {', '.join(ds.column_names)})")
        return list(ds["persona"])
    raise InputError(f"personas.source: {path}: expected a .jsonl, .txt or .parquet file")


def _hf_personas(source: str) -> list[str]:
    return hf_column(source, "persona", field="personas.source")


def persona_candidates(config: SynthConfig) -> list[Candidate]:
    """``num_prompts`` personas to use, each once: drawn without replacement with the recipe seed."""
    source, count = config.personas.source, config.num_prompts
    if source == "self":
        try:
            seeds = sample_seeds(count, config.seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return [Candidate(f"s{seed.index}", None, seed) for seed in seeds]
    texts = read_persona_texts(source)
    if count > len(texts):
        log.warning("personas: the source has %d personas, fewer than num_prompts=%d; using all", len(texts), count)
    picks = sorted(random.Random(config.seed).sample(range(len(texts)), min(count, len(texts))))
    return [Candidate(f"r{i}", texts[i]) for i in picks]


def _sampling(config: SynthConfig, row_id: str) -> SamplingParams:
    c = config.personas
    return SamplingParams(
        temperature=c.temperature,
        top_p=c.top_p,
        max_new_tokens=c.max_new_tokens,
        seed=derive_seed(config.seed, STAGE, row_id),
    )


def make_rows(
    engine: Engine, config: SynthConfig, chunk: list[Candidate], index: NearDuplicateIndex
) -> list[PersonaRow]:
    """Write (or take) the chunk's personas, then drop malformed ones and near-duplicates of earlier ones."""
    to_write = [c for c in chunk if c.text is None]
    outputs = {}
    if to_write:
        prefill = config.personas.prefill_marker
        convs = [
            request(build_persona_prompt(c.seed, config.personas.template), PERSONA_MARKER, prefill) for c in to_write
        ]
        completions = engine.generate(convs, [_sampling(config, c.id) for c in to_write])
        outputs = {c.id: comp.samples[0] for c, comp in zip(to_write, completions)}
    rows = []
    for c in chunk:
        source = "self" if c.text is None else config.personas.source
        attributes = None if c.seed is None else {k: v for k, v in vars(c.seed).items() if k != "index"}
        if c.text is None:
            sample = outputs[c.id]
            # Small models often skip the 'Persona:' marker or run past the budget; a persona
            # is description, so the whole answer and its complete sentences still serve.
            raw = answer_text(sample.text, PERSONA_MARKER, config.personas.prefill_marker)
            got = extract_after_marker(
                raw,
                PERSONA_MARKER,
                max_chars=config.personas.max_chars,
                finish_reason=sample.finish_reason,
                require_marker=False,
                trim_truncated=True,
            )
        else:
            text = c.text.strip()
            got = extract_after_marker(PERSONA_MARKER + text, PERSONA_MARKER, max_chars=config.personas.max_chars)
            raw = None
        row = PersonaRow(
            id=c.id, persona=got.text, source=source, attributes=attributes, raw=raw, drop_reason=got.drop_reason
        )
        if row.persona is not None and (earlier := index.claim(row.id, row.persona)) is not None:
            row.drop_reason, row.duplicate_of = "duplicate", earlier
        rows.append(row)
    return rows


def run_personas(
    engine: Engine, config: SynthConfig, store: RunStore, *, chunk_size: int = 32, progress: bool = True
) -> StageResult:
    candidates = persona_candidates(config)
    index: NearDuplicateIndex | None = None

    def process(chunk: list[Candidate]) -> list[PersonaRow]:
        nonlocal index
        if index is None:  # resumed: earlier personas still count for dedup (read after any --force redo)
            index = NearDuplicateIndex.of_rows(kept(store.rows(STAGE)), "persona", config.personas.dedup_threshold)
        return make_rows(engine, config, chunk, index)

    return run_stage(
        store,
        STAGE,
        candidates,
        key=lambda c: c.id,
        process=process,
        chunk_size=chunk_size,
        stats=drop_stats,
        progress=progress,
    )
