"""DNO-Prct's stages for one iteration: prompts (split D_t) -> K samples -> scores (rubric, pairwise or SAR) ->
large-margin pairs -> training rows (this iteration's pairs plus capped draws of earlier ones). Each is a resumable
`sao.stage.run_stage`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from sao.engine import SamplingParams, derive_seed
from sao.eval.formats import Instruction, read_instructions, read_outputs
from sao.hf_data import hf_column
from sao.judge.config import SAR
from sao.judge.cut import answer_cut
from sao.methods.dno.config import DNOConfig, DNOPairSection
from sao.methods.dno.mixing import mix
from sao.methods.dno.pairwise import pairwise_scores
from sao.methods.dno.rubric import parse_scores, rubric_request
from sao.methods.dno.rules import GOLD, POLICY, Candidate, choose_pair, repeated_share
from sao.methods.dno.sar import line_up_sar, on_rubric_scale
from sao.methods.dno.splits import deal
from sao.methods.method import StageContext
from sao.omit import OmitWhenNone
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.stages.pairs import rain_counts, rain_side
from sao.stages.responses import ResponseSample, distinct_finished, draw_responses, rain_engine
from sao.store import read_rows
from sao.synth.extract import answer_text, request

PROMPTS, SAMPLES, SCORES, PAIRS, TRAINING = "prompts", "samples", "scores", "pairs", "training"
PREFILL = "Response 1:"  # the judge's answer starts with its first score line


class DNOPrompt(BaseModel):
    id: str  # "t<iteration>-<prompt id>": unique across iterations, whose splits never overlap
    schema_version: int = 1
    source_id: str
    messages: list[dict[str, str]]
    gold: str | None


class DNOSamples(BaseModel):
    id: str
    schema_version: int = 1
    samples: list[ResponseSample]
    usable: list[int]  # distinct, non-empty samples that ended by themselves
    drop_reason: str | None = None


class ScoredCandidate(BaseModel):
    origin: str  # "policy" or "gold"
    sample: int | None  # the sample's index; None for the gold answer
    score: float | None
    repetitive: bool


class DNOScores(BaseModel):
    id: str
    schema_version: int = 1
    candidates: list[ScoredCandidate]
    output: str  # the judge's text, kept for inspection
    drop_reason: str | None = None


class SARScoredCandidate(ScoredCandidate):
    sar: float  # R_SA; ``score`` is it on the rubric's scale (`sao.methods.dno.sar.on_rubric_scale`)


class DNOSARScores(DNOScores):
    """A line-up scored by SAR (judge.signal: sar): no judge text, and every candidate has a score."""

    candidates: list[SARScoredCandidate]


class DNOPair(OmitWhenNone):
    omit_when_none = ("rain_side",)

    id: str
    schema_version: int = 1
    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    chosen_origin: str | None
    chosen_score: float | None
    rejected_score: float | None
    iteration: int  # the iteration that made the pair (training rows may come from earlier ones)
    drop_reason: str | None = None
    rain_side: Literal["chosen", "rejected"] | None = None  # which side RAIN decoded (samples.rain), if either


def prompt_set(source: str, column: str) -> list[Instruction]:
    """The prompts of a file `sao eval` reads, or of a HF dataset's ``column`` (ids: a hash of the text)."""
    if not source.startswith("hf:"):
        return read_instructions(source)
    texts = hf_column(source, column, field="synth.prompts.source")
    return [
        Instruction(id=hashlib.sha256(text.encode()).hexdigest()[:12], messages=[{"role": "user", "content": text}])
        for text in dict.fromkeys(texts)  # a repeated prompt once: ids must be unique
    ]


def split_rows(section: DNOConfig, iteration: int) -> tuple[list[DNOPrompt], list[DNOPrompt]]:
    """(validation rows, iteration ``iteration``'s rows) from the prompt set and its gold answers."""
    instructions = prompt_set(section.prompts.source, section.prompts.field)
    gold = read_outputs(section.prompts.gold) if section.prompts.gold else {}
    p = section.prompts
    validation, split = deal(
        instructions, validation=p.validation, per_iteration=p.per_iteration, iteration=iteration, seed=p.seed
    )

    def row(instruction: Any, prefix: str) -> DNOPrompt:
        answer = gold.get(instruction.id)
        return DNOPrompt(
            id=f"{prefix}-{instruction.id}",
            source_id=instruction.id,
            messages=instruction.messages,
            gold=answer.text if answer else None,
        )

    return [row(i, "val") for i in validation], [row(i, f"t{iteration}") for i in split]


def run_prompts(ctx: StageContext) -> StageResult:
    _, split = split_rows(ctx.section, ctx.iteration)
    return run_stage(
        ctx.store,
        PROMPTS,
        split,
        key=lambda r: r.id,
        process=lambda chunk: chunk,
        chunk_size=ctx.chunk_size,
        progress=ctx.progress,
    )


def run_samples(ctx: StageContext) -> StageResult:
    s = ctx.section.samples
    rain = rain_engine(ctx.engine, s.rain)

    def process(chunk: list[dict[str, Any]]) -> list[DNOSamples]:
        params = [
            SamplingParams(
                n=s.k,
                temperature=s.temperature,
                top_p=s.top_p,
                max_new_tokens=s.max_new_tokens,
                seed=derive_seed(s.seed, SAMPLES, row["id"]),
            )
            for row in chunk
        ]
        rows = []
        for row, samples in zip(chunk, draw_responses(ctx.engine, rain, [r["messages"] for r in chunk], params)):
            usable = distinct_finished(samples)  # one is enough: the gold, or another sample, may be its rival
            reason = None if usable else "no_usable_sample"
            rows.append(DNOSamples(id=row["id"], samples=samples, usable=usable, drop_reason=reason))
        return rows

    return run_stage(
        ctx.store,
        SAMPLES,
        ctx.store.rows(PROMPTS),
        key=lambda r: r["id"],
        process=process,
        chunk_size=ctx.chunk_size,
        stats=drop_stats,
        progress=ctx.progress,
    )


def line_up(prompt: dict[str, Any], sampled: dict[str, Any]) -> list[tuple[str, int | None, str]]:
    """The candidates the judge scores, in order: the usable policy samples, then the gold answer."""
    out = [(POLICY, i, sampled["samples"][i]["text"]) for i in sampled["usable"]]
    return out + ([(GOLD, None, prompt["gold"])] if prompt.get("gold") else [])


def rubric_outputs(judge: Any, asked: list[tuple[str, list[str]]], section: Any) -> list[str]:
    """The judge's score lines for each (prompt, candidates) line-up, the prefill put back in front."""
    requests = [request(rubric_request(p, texts, section.template), PREFILL, section.prefill) for p, texts in asked]
    done = judge.generate(requests, SamplingParams(temperature=0, max_new_tokens=section.max_new_tokens))
    return [answer_text(c.samples[0].text, PREFILL, section.prefill) for c in done]


def is_repetitive(text: str, rules: DNOPairSection) -> bool:
    """Whether a candidate repeats itself enough to be a negative whatever its score."""
    return repeated_share(text, rules.repetition_ngram) > rules.max_repeated_share


def sar_rows(
    judge: Any, conversations: list[Any], chunk: list[dict[str, Any]], line_ups: list[Any], rules: DNOPairSection
) -> list[DNOSARScores]:
    """Each line-up scored by SAR after the conversation the policy answered (the gold answer after it too)."""
    scored = line_up_sar(judge, [(conv, [t for _, _, t in c]) for conv, c in zip(conversations, line_ups)])
    return [
        DNOSARScores(
            id=row["id"],
            candidates=[
                SARScoredCandidate(
                    origin=origin,
                    sample=sample,
                    score=on_rubric_scale(r_sa),
                    repetitive=is_repetitive(text, rules),
                    sar=round(r_sa, 6),
                )
                for (origin, sample, text), r_sa in zip(candidates, scores)
            ],
            output="",
        )
        for row, candidates, scores in zip(chunk, line_ups, scored)
    ]


def run_scores(ctx: StageContext) -> StageResult:
    assert ctx.judge is not None  # DNO names a judge ('self' by default)
    prompts = {r["id"]: r for r in ctx.store.rows(PROMPTS)}
    section = ctx.section

    def process(chunk: list[dict[str, Any]]) -> list[DNOScores]:
        line_ups = [line_up(prompts[row["id"]], row) for row in chunk]
        if section.judge.signal == SAR:
            conversations = [prompts[row["id"]]["messages"] for row in chunk]
            return sar_rows(ctx.judge, conversations, chunk, line_ups, section.pairs)
        j = section.judge
        cut = answer_cut(ctx.judge, j.max_answer_tokens)
        asked = [
            (prompts[row["id"]]["messages"][-1]["content"], cut([t for _, _, t in c]))
            for row, c in zip(chunk, line_ups)
        ]
        if j.scoring == "pairwise":
            scored = pairwise_scores(ctx.judge, asked, j.pairwise_template, j.mode, j.max_new_tokens)
            outputs = [""] * len(chunk)  # the verdicts are log-probs or rankings, summarised in the scores
        else:
            outputs = rubric_outputs(ctx.judge, asked, j)
            scored = [parse_scores(output, len(texts)) for output, (_, texts) in zip(outputs, asked)]
        return [
            DNOScores(
                id=row["id"],
                candidates=[
                    ScoredCandidate(
                        origin=origin,
                        sample=sample,
                        score=None if scores is None else scores[i],
                        repetitive=is_repetitive(text, section.pairs),
                    )
                    for i, (origin, sample, text) in enumerate(candidates)
                ],
                output=output,
                drop_reason="parse_failure" if scores is None else None,
            )
            for row, candidates, scores, output in zip(chunk, line_ups, scored, outputs)
        ]

    items = [row for row in kept(ctx.store.rows(SAMPLES)) if len(line_up(prompts[row["id"]], row)) >= 2]
    return run_stage(
        ctx.store,
        SCORES,
        items,
        key=lambda r: r["id"],
        process=process,
        chunk_size=ctx.chunk_size,
        stats=drop_stats,
        progress=ctx.progress,
    )


def sample_of(lineup: list[tuple[str, int | None, str]], sampled: dict[str, Any], candidate: Any) -> dict[str, Any]:
    """The response sample behind a chosen or rejected candidate ({} for the gold answer or no candidate)."""
    if candidate is None or lineup[candidate.index][1] is None:
        return {}
    return sampled["samples"][lineup[candidate.index][1]]


def pair_stats(rows: list[dict[str, Any]], rain: bool = False) -> dict[str, Any]:
    """Pairs kept and dropped per rule, the share whose positive is a policy sample (DNO's Table 2), and with
    ``rain`` (samples.rain set) how many kept pairs RAIN's answer is the positive or the negative of."""
    stats = drop_stats(rows)
    pairs = kept(rows)
    stats["policy_positive_share"] = (
        round(sum(r["chosen_origin"] == POLICY for r in pairs) / len(pairs), 4) if pairs else None
    )
    if rain:
        stats |= rain_counts(pairs)
    return stats


def run_pairs(ctx: StageContext) -> StageResult:
    prompts = {r["id"]: r for r in ctx.store.rows(PROMPTS)}
    samples = {r["id"]: r for r in ctx.store.rows(SAMPLES)}
    rules = ctx.section.pairs
    rules_rain = ctx.section.samples.rain is not None

    def process(chunk: list[dict[str, Any]]) -> list[DNOPair]:
        rows = []
        for scored in chunk:
            lineup = line_up(prompts[scored["id"]], samples[scored["id"]])
            texts = [text for _, _, text in lineup]
            candidates = [
                Candidate(index=i, origin=c["origin"], text=texts[i], score=c["score"], repetitive=c["repetitive"])
                for i, c in enumerate(scored["candidates"])
            ]
            choice = choose_pair(
                candidates, min_positive=rules.min_positive, gold_gap=rules.gold_gap, policy_gap=rules.policy_gap
            )
            chosen, rejected = choice.positive, choice.negative
            rows.append(
                DNOPair(
                    id=scored["id"],
                    prompt=prompts[scored["id"]]["messages"],
                    chosen=[{"role": "assistant", "content": chosen.text if chosen else ""}],
                    rejected=[{"role": "assistant", "content": rejected.text if rejected else ""}],
                    chosen_origin=chosen.origin if chosen else None,
                    chosen_score=chosen.score if chosen else None,
                    rejected_score=rejected.score if rejected else None,
                    iteration=ctx.iteration,
                    drop_reason=None if choice.rule == "kept" else choice.rule,
                    rain_side=rain_side(*(sample_of(lineup, samples[scored["id"]], c) for c in (chosen, rejected))),
                )
            )
        return rows

    return run_stage(
        ctx.store,
        PAIRS,
        kept(ctx.store.rows(SCORES)),
        key=lambda r: r["id"],
        process=process,
        chunk_size=ctx.chunk_size,
        stats=lambda rows: pair_stats(rows, rain=rules_rain),
        progress=ctx.progress,
    )


def earlier_pairs(directories: tuple[Path, ...]) -> list[list[dict[str, Any]]]:
    """Each earlier iteration's own kept pairs (not its mixed training rows), oldest first."""
    return [kept(read_rows(directory / f"{PAIRS}.jsonl")) for directory in directories]


def training_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_iteration: dict[int, int] = {}
    for row in rows:
        by_iteration[row["iteration"]] = by_iteration.get(row["iteration"], 0) + 1
    return {"rows": len(rows), "from_iteration": {str(k): v for k, v in sorted(by_iteration.items())}}


def run_training(ctx: StageContext) -> StageResult:
    own = kept(ctx.store.rows(PAIRS))
    rows = mix(
        own, earlier_pairs(ctx.earlier), ctx.section.mix.previous, derive_seed(ctx.section.mix.seed, ctx.iteration)
    )
    return run_stage(
        ctx.store,
        TRAINING,
        [DNOPair(**{k: v for k, v in r.items() if k != "input_digest"}) for r in rows],
        key=lambda r: r.id,
        process=lambda chunk: chunk,
        chunk_size=max(ctx.chunk_size, 1),
        stats=training_stats,
        progress=ctx.progress,
    )
