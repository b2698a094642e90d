"""Stage 3: K sampled responses per prompt (the paper's temperature 0.6, top-p 0.95); with ``responses.rain``
the last of the K is decoded by RAIN (issue 19), for the judge to rank beside the sampled ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from sao.engine import Completion, Conversation, Engine, SamplingParams, derive_seed
from sao.omit import OmitWhenNone
from sao.rain.config import RainSection
from sao.rain.engine import RainEngine
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.store import RunStore
from sao.synth.config import SynthConfig

STAGE = "responses"


class ResponseSample(OmitWhenNone):
    omit_when_none = ("decoding",)

    text: str
    finish_reason: str
    num_tokens: int
    seed: int | None
    decoding: str | None = None  # "rain" for the answer RAIN decoded (responses.rain); unset for sampled ones


class ResponseRow(BaseModel):
    id: str
    schema_version: int = 1
    prompt: str
    samples: list[ResponseSample]
    usable: list[int]  # indices of distinct samples that ended by themselves and are not empty
    drop_reason: str | None = None


def distinct_finished(samples: list[ResponseSample]) -> list[int]:
    """Indices of the samples that are non-empty, ended by themselves and differ from every earlier one."""
    usable, seen = [], set()
    for i, s in enumerate(samples):
        text = s.text.strip()
        if text and s.finish_reason != "length" and text not in seen:
            usable.append(i)
            seen.add(text)
    return usable


def usable_samples(samples: list[ResponseSample]) -> tuple[list[int], str | None]:
    """Indices of usable samples, and the reason the row is dropped when fewer than two remain.

    A sample is usable when it is non-empty, was not cut off by the token budget, and
    differs from every earlier usable sample. The reason names what removed most: a
    truncated sample first, then an empty one, else identical samples.
    """
    usable = distinct_finished(samples)
    if len(usable) >= 2:
        return usable, None
    if any(s.finish_reason == "length" for s in samples):
        return usable, "truncated"
    if any(not s.text.strip() for s in samples):
        return usable, "empty"
    return usable, "identical"


def as_samples(completion: Completion, decoding: str | None = None) -> list[ResponseSample]:
    return [
        ResponseSample(
            text=s.text, finish_reason=s.finish_reason, num_tokens=s.num_tokens, seed=s.seed, decoding=decoding
        )
        for s in completion.samples
    ]


def draw_responses(
    engine: Engine, rain: Engine | None, conversations: list[Conversation], params: list[SamplingParams]
) -> list[list[ResponseSample]]:
    """Each conversation's ``n`` answers, sampled by ``engine``; with ``rain`` (a `sao.rain.engine.RainEngine`
    over it), the last of the ``n`` is RAIN's instead, seeded from the request's seed. The sampled ones keep the
    seeds, hence the texts, they have without RAIN."""
    if rain is None:
        return [as_samples(c) for c in engine.generate(conversations, params)]
    sampled = engine.generate(conversations, [replace(p, n=p.n - 1) for p in params])
    by_rain = rain.generate(
        conversations,
        [SamplingParams(max_new_tokens=p.max_new_tokens, seed=derive_seed(p.seed, "rain")) for p in params],
    )
    return [as_samples(s) + as_samples(r, "rain") for s, r in zip(sampled, by_rain)]


def make_rows(
    engine: Engine, config: SynthConfig, chunk: list[dict[str, Any]], rain: Engine | None = None
) -> list[ResponseRow]:
    c = config.responses
    params = [
        SamplingParams(
            n=c.k,
            temperature=c.temperature,
            top_p=c.top_p,
            max_new_tokens=c.max_new_tokens,
            seed=derive_seed(config.seed, STAGE, row["id"]),
        )
        for row in chunk
    ]
    conversations = [[{"role": "user", "content": row["prompt"]}] for row in chunk]
    rows = []
    for row, samples in zip(chunk, draw_responses(engine, rain, conversations, params)):
        usable, reason = usable_samples(samples)
        rows.append(ResponseRow(id=row["id"], prompt=row["prompt"], samples=samples, usable=usable, drop_reason=reason))
    return rows


def response_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats = drop_stats(rows)
    lengths = [s["num_tokens"] for r in rows for s in r["samples"]]
    stats["mean_tokens"] = round(sum(lengths) / len(lengths), 1) if lengths else 0.0
    stats["truncated_samples"] = sum(s["finish_reason"] == "length" for r in rows for s in r["samples"])
    by_rain = [s["num_tokens"] for r in rows for s in r["samples"] if s.get("decoding") == "rain"]
    if by_rain:
        stats["mean_rain_tokens"] = round(sum(by_rain) / len(by_rain), 1)
    return stats


def rain_engine(engine: Engine, rain: RainSection | None) -> Engine | None:
    """A RAIN engine over ``engine`` when a response section sets ``rain``, else None."""
    return None if rain is None else RainEngine(engine, rain, progress=False)


def run_responses(
    engine: Engine, config: SynthConfig, store: RunStore, *, chunk_size: int = 32, progress: bool = True
) -> StageResult:
    rain = rain_engine(engine, config.responses.rain)
    return run_stage(
        store,
        STAGE,
        kept(store.rows("prompts")),
        key=lambda r: r["id"],
        process=lambda chunk: make_rows(engine, config, chunk, rain),
        chunk_size=chunk_size,
        stats=response_stats,
        progress=progress,
    )
