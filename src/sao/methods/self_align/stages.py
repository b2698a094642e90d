"""SELF-ALIGN's stages for one iteration, each a resumable `sao.stage.run_stage` (or, for the engraving,
a resumable `sao.train.run.run_train`):

topics -> questions (TGRT) and tasks (plain self-instruct) -> prompts -> answers (principle-driven) ->
held_out / engrave_data -> engrave (SFT of the starting model) -> verbose (the engraved model, at
length) -> training (the rows the loop trains the starting model on: context distillation).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sao.engine import SamplingParams, derive_seed
from sao.engine.types import RawPrompt
from sao.methods.method import StageContext
from sao.methods.self_align import content
from sao.methods.self_align.answers import principle_prompt, read_answer
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.questions import Hint, match_hints, parse_written, question_prompt
from sao.methods.self_align.rows import SFTRow, sft_row
from sao.methods.self_align.selection import candidates, select_prompts, split_held_out
from sao.methods.self_align.tasks import parse_task, task_problem, task_prompt
from sao.methods.self_align.topics import add_topics, balance, brainstorm_prompt, parse_topics
from sao.methods.self_align.training import engrave, release
from sao.methods.self_align.turns import Turns
from sao.methods.self_align.verbose import read_verbose, verbose_prompt
from sao.stage import StageResult, drop_stats, kept, run_stage

TOPICS, QUESTIONS, TASKS, PROMPTS, ANSWERS = "topics", "questions", "tasks", "prompts", "answers"
HELD_OUT, ENGRAVE_DATA, ENGRAVE, VERBOSE, TRAINING = "held_out", "engrave_data", "engrave", "verbose", "training"


class TopicRow(BaseModel):
    id: str  # the question type's name
    schema_version: int = 1
    topics: list[str]  # new topics, in the order they were written (the seed topic is not one)
    dropped: dict[str, int]  # rejected candidates by reason
    outputs: list[str]  # each brainstorm's text, for inspection


class QuestionRow(BaseModel):
    id: str
    schema_version: int = 1
    hints: list[dict[str, str]]
    questions: list[dict[str, str]]  # {hint, question}: matched back to a hint of this request
    unmatched: int  # questions naming no hint of the request
    output: str
    drop_reason: str | None = None


class TaskRow(BaseModel):
    id: str
    schema_version: int = 1
    examples: list[str]  # the seed tasks shown, by id
    output: str
    task: str
    drop_reason: str | None = None


class AnswerRow(BaseModel):
    id: str
    schema_version: int = 1
    query: str
    output: str  # the continuation after the self-identification sentence
    thoughts: str | None  # kept for inspection; never in a training row
    answer: str | None
    finish_reason: str
    drop_reason: str | None = None


class VerboseRow(BaseModel):
    id: str
    schema_version: int = 1
    query: str
    answer: str
    finish_reason: str
    num_tokens: int
    drop_reason: str | None = None


def _raw(texts: Sequence[str]) -> list[RawPrompt]:
    return [RawPrompt(text) for text in texts]


def _first_samples(
    engine: Any,
    texts: list[str],
    rows: list[dict[str, Any]],
    s: Any,
    stage: str,
    stop: tuple[str, ...],
    **controls: Any,
) -> list[Any]:
    """One sample per raw prompt, with ``s``'s temperature, top-p, budget and a seed per row id."""
    params = [
        SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            max_new_tokens=s.max_new_tokens,
            stop=stop,
            seed=derive_seed(s.seed, stage, r["id"]),
            **controls,
        )
        for r in rows
    ]
    return [done.samples[0] for done in engine.generate(_raw(texts), params)]


def _resumable(
    ctx: StageContext,
    stage: str,
    items: Sequence[Any],
    process: Callable[[list[Any]], Sequence[BaseModel]],
    *,
    key: Callable[[Any], str] = lambda r: r["id"],
    stats: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = drop_stats,
) -> StageResult:
    return run_stage(
        ctx.store, stage, items, key=key, process=process, chunk_size=ctx.chunk_size, stats=stats, progress=ctx.progress
    )


# ------------------------------------------------------------------------------------------------ stage 1
def topic_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    dropped: dict[str, int] = {}
    for row in rows:
        for reason, count in row["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    counts = {row["id"]: len(row["topics"]) for row in rows}
    return {
        "types": len(rows),
        "types_without_topics": sum(n == 0 for n in counts.values()),
        "topics": counts,
        "balanced_per_type": min((n for n in counts.values() if n), default=0),
        "dropped": dropped,
    }


def run_topics(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    t = section.topics
    kinds = content.load_question_types(section.question_types)

    def process(chunk: list[content.QuestionType]) -> list[TopicRow]:
        pools = {k.name: [k.seed_topic] for k in chunk}
        dropped: dict[str, dict[str, int]] = {k.name: {} for k in chunk}
        outputs: dict[str, list[str]] = {k.name: [] for k in chunk}
        for round_ in range(t.rounds):  # each round sees the topics of the rounds before it
            shown = [
                random.Random(derive_seed(t.seed, TOPICS, k.name, round_)).sample(
                    pools[k.name], min(t.shown, len(pools[k.name]))
                )
                for k in chunk
            ]
            params = [
                SamplingParams(
                    temperature=t.temperature,
                    top_p=t.top_p,
                    max_new_tokens=t.max_new_tokens,
                    stop=("\n\n",),
                    seed=derive_seed(t.seed, TOPICS, k.name, round_),
                )
                for k in chunk
            ]
            texts = [brainstorm_prompt(k, s, t.per_type) for k, s in zip(chunk, shown)]
            for k, s, done in zip(chunk, shown, ctx.engine.generate(_raw(texts), params)):
                text = done.samples[0].text
                outputs[k.name].append(text)
                found = parse_topics(text, len(s) + 1)
                pools[k.name], rejected = add_topics(pools[k.name], found, t.max_words, limit=t.per_type)
                for reason, count in rejected.items():
                    dropped[k.name][reason] = dropped[k.name].get(reason, 0) + count
        return [
            TopicRow(id=k.name, topics=pools[k.name][1:], dropped=dropped[k.name], outputs=outputs[k.name])
            for k in chunk
        ]

    return _resumable(ctx, TOPICS, kinds, process, key=lambda k: k.name, stats=topic_stats)


def question_hints(rows: list[dict[str, Any]]) -> list[Hint]:
    """Every (type, topic) hint, each type cut to the smallest type's topic count, in type order."""
    balanced = balance({row["id"]: row["topics"] for row in rows})
    return [Hint(name, topic) for name, topics in balanced.items() for topic in topics]


def run_questions(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    q = section.questions
    kinds = content.load_question_types(section.question_types)
    types = {k.name: k for k in kinds}
    hints = question_hints(ctx.store.rows(TOPICS))
    requests = [hints[i : i + q.hints_per_prompt] for i in range(0, len(hints), q.hints_per_prompt)]
    items = [
        {"id": "q-" + hashlib.sha256("|".join(h.id for h in group).encode()).hexdigest()[:12],
         "hints": [{"type": h.type, "topic": h.topic} for h in group]}
        for group in requests
    ]  # fmt: skip

    def process(chunk: list[dict[str, Any]]) -> list[QuestionRow]:
        groups = [[Hint(h["type"], h["topic"]) for h in item["hints"]] for item in chunk]
        texts, params = [], []
        for item, group in zip(chunk, groups):
            others = [k for k in kinds if k.name not in {h.type for h in group}] or kinds
            rng = random.Random(derive_seed(section.seed, QUESTIONS, item["id"]))
            texts.append(question_prompt(group, types, rng.sample(others, min(q.examples, len(others)))))
            params.append(
                SamplingParams(
                    temperature=q.temperature,
                    top_p=q.top_p,
                    max_new_tokens=q.max_new_tokens * len(group),
                    # One hint: its question ends at the blank line; several: the blocks are separated by them.
                    stop=("\n\n",) if len(group) == 1 else (),
                    seed=derive_seed(section.seed, QUESTIONS, item["id"]),
                )
            )
        rows = []
        for item, group, done in zip(chunk, groups, ctx.engine.generate(_raw(texts), params)):
            text = done.samples[0].text
            matched, unmatched = match_hints(parse_written(text, group[0], types), group, types)
            rows.append(
                QuestionRow(
                    id=item["id"],
                    hints=item["hints"],
                    questions=[{"hint": h.id, "type": h.type, "topic": h.topic, "question": x} for h, x in matched],
                    unmatched=unmatched,
                    output=text,
                    drop_reason=None if matched else "no_question",
                )
            )
        return rows

    return _resumable(ctx, QUESTIONS, items, process)


def run_tasks(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    s = section.self_instruct
    seeds = content.load_seed_tasks(section.seed_tasks)
    items = [{"id": f"task-{i}"} for i in range(s.requests)]

    def process(chunk: list[dict[str, Any]]) -> list[TaskRow]:
        shown = [
            random.Random(derive_seed(section.seed, TASKS, i["id"])).sample(seeds, min(s.examples, len(seeds)))
            for i in chunk
        ]
        params = [
            SamplingParams(
                temperature=s.temperature,
                top_p=s.top_p,
                max_new_tokens=s.max_new_tokens,
                stop=("\n\n", f"\n{len(examples) + 2}."),
                seed=derive_seed(section.seed, TASKS, item["id"]),
            )
            for item, examples in zip(chunk, shown)
        ]
        done = ctx.engine.generate(_raw([task_prompt(e) for e in shown]), params)
        rows = []
        for item, examples, completion in zip(chunk, shown, done):
            text = completion.samples[0].text
            task = parse_task(text)
            reason = task_problem(task, s.min_words, s.max_words, s.blacklist)
            rows.append(
                TaskRow(id=item["id"], examples=[e.id for e in examples], output=text, task=task, drop_reason=reason)
            )
        return rows

    return _resumable(ctx, TASKS, items, process)


def prompt_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats = drop_stats(rows)
    for source in ("tgrt", "self_instruct"):
        stats[f"kept_{source}"] = sum(r["source"] == source for r in kept(rows))
    return stats


def run_prompts(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    found = candidates(
        section,
        kept(ctx.store.rows(QUESTIONS)),
        kept(ctx.store.rows(TASKS)) if section.self_instruct.requests else [],
        content.load_question_types(section.question_types),
        content.load_seed_tasks(section.seed_tasks) if section.self_instruct.requests else [],
    )
    rows = select_prompts(section, found)
    return _resumable(ctx, PROMPTS, rows, lambda chunk: chunk, key=lambda r: r.id, stats=prompt_stats)


# ------------------------------------------------------------------------------------------------ stage 2
def run_answers(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    a = section.answers
    turns = Turns.of(section)
    principles = content.load_principles(section.principles)
    exemplars = content.load_exemplars(section.exemplars)
    identity = section.identity.format(name=section.name)

    def process(chunk: list[dict[str, Any]]) -> list[AnswerRow]:
        texts = [principle_prompt(principles, exemplars, turns, section.name, identity, r["query"]) for r in chunk]
        samples = _first_samples(ctx.engine, texts, chunk, a, ANSWERS, turns.stops, logit_bias=a.logit_bias)
        rows = []
        for row, sample in zip(chunk, samples):
            read = read_answer(
                sample.text,
                turns,
                row["query"],
                exemplars,
                min_chars=a.min_chars,
                refusal_openers=a.refusal_openers,
                copy_markers=a.copy_markers,
            )
            rows.append(
                AnswerRow(
                    id=row["id"],
                    query=row["query"],
                    output=sample.text,
                    thoughts=read.thoughts,
                    answer=read.answer,
                    finish_reason=sample.finish_reason,
                    drop_reason=read.drop_reason,
                )
            )
        return rows

    return _resumable(ctx, ANSWERS, kept(ctx.store.rows(PROMPTS)), process)


# ------------------------------------------------------------------------------------------------ stage 3
def _split(ctx: StageContext) -> tuple[list[SFTRow], list[SFTRow]]:
    section: SelfAlignConfig = ctx.section
    answers = kept(ctx.store.rows(ANSWERS))
    held, rest = split_held_out(answers, section.engrave.held_out, derive_seed(section.seed, HELD_OUT))

    def rows(chosen: list[dict[str, Any]]) -> list[SFTRow]:
        return [sft_row(section, r["id"], r["query"], r["answer"]) for r in chosen]

    return rows(held), rows(rest)


def run_held_out(ctx: StageContext) -> StageResult:
    return _resumable(ctx, HELD_OUT, _split(ctx)[0], lambda chunk: chunk, key=lambda r: r.id, stats=None)


def run_engrave_data(ctx: StageContext) -> StageResult:
    return _resumable(ctx, ENGRAVE_DATA, _split(ctx)[1], lambda chunk: chunk, key=lambda r: r.id, stats=None)


def engraved_dir(store_root: Path) -> Path:
    return store_root / "engraved"


def run_engrave(ctx: StageContext) -> StageResult:
    return engrave(ctx, ctx.store.stage_path(ENGRAVE_DATA), ctx.store.rows(HELD_OUT), engraved_dir(ctx.store.root))


# ------------------------------------------------------------------------------------------------ stage 4
def verbose_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stats = drop_stats(rows)
    answers = [len(r["answer"]) for r in kept(rows)]
    stats["mean_chars"] = round(sum(answers) / len(answers), 1) if answers else None
    return stats


def run_verbose(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    v = section.verbose
    turns = Turns.of(section)
    prompt = content.load_verbose_prompt(section.verbose_prompt)
    held = {r["id"] for r in ctx.store.rows(HELD_OUT)}
    assert ctx.engine_for is not None  # the loop and `sao synth` give one
    engine = ctx.engine_for(str(engraved_dir(ctx.store.root)))

    def process(chunk: list[dict[str, Any]]) -> list[VerboseRow]:
        texts = [verbose_prompt(prompt, turns, section.name, r["query"]) for r in chunk]
        penalties = {k: getattr(v, k) for k in ("frequency_penalty", "presence_penalty", "penalty_ngram")}
        rows = []
        for row, sample in zip(chunk, _first_samples(engine, texts, chunk, v, VERBOSE, turns.stops, **penalties)):
            answer, reason = read_verbose(
                sample.text, turns, prompt, row["query"], min_chars=v.min_chars, copy_markers=v.copy_markers
            )
            rows.append(
                VerboseRow(
                    id=row["id"],
                    query=row["query"],
                    answer=answer,
                    finish_reason=sample.finish_reason,
                    num_tokens=sample.num_tokens,
                    drop_reason=reason,
                )
            )
        return rows

    try:
        return _resumable(
            ctx,
            VERBOSE,
            [r for r in kept(ctx.store.rows(PROMPTS)) if r["id"] not in held],
            process,
            stats=verbose_stats,
        )
    finally:
        release(engine)  # the engraved model's memory goes back before the final training


def run_training(ctx: StageContext) -> StageResult:
    section: SelfAlignConfig = ctx.section
    rows = [sft_row(section, r["id"], r["query"], r["answer"]) for r in kept(ctx.store.rows(VERBOSE))]
    return _resumable(ctx, TRAINING, rows, lambda chunk: chunk, key=lambda r: r.id, stats=None)
