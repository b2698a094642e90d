"""A method that exists only in the test suite: the policy answers fixed questions, and SFT trains on the
answers. It proves that a method needs nothing outside its own module: `sao run` runs it once it is
registered. Run as a script, it registers itself and runs the sao CLI (for tests that kill a real process).

``ECHO_KILL_AT=ITERATION:ROWS`` makes the process SIGKILL itself in that iteration's ``answers`` stage,
once ROWS rows are written: a real kill at a known point.
"""

from __future__ import annotations

import os
import signal
import sys

from pydantic import BaseModel, Field

from sao.engine import SamplingParams, derive_seed
from sao.methods import Method, Stage, StageContext
from sao.recipe import Section
from sao.stage import StageResult, drop_stats, run_stage

QUESTIONS = [f"Name one thing that is {colour}." for colour in ("red", "blue", "green", "yellow", "white", "black")]


class EchoSection(Section):
    rounds: int = Field(2, ge=1, description="Times each question is asked (each time with its own seed).")
    max_new_tokens: int = Field(12, ge=1, description="Token budget of an answer.")
    seed: int = Field(0, description="Base seed of the answers.")


class AnswerRow(BaseModel):
    id: str
    question: str
    answer: str
    finish_reason: str
    earlier: int  # earlier iterations handed over (`StageContext.earlier`): the hand-over, made visible


class ExampleRow(BaseModel):
    id: str
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]
    drop_reason: str | None = None


def _kill_when(ctx: StageContext, written: int) -> None:
    at = os.environ.get("ECHO_KILL_AT")
    if at and at == f"{ctx.iteration}:{written}":
        os.kill(os.getpid(), signal.SIGKILL)


def answers(ctx: StageContext) -> StageResult:
    s: EchoSection = ctx.section
    items = [(f"q{i}-r{r}", q) for r in range(s.rounds) for i, q in enumerate(QUESTIONS)]

    def process(chunk: list[tuple[str, str]]) -> list[AnswerRow]:
        _kill_when(ctx, len(ctx.store.rows("answers")))
        params = [
            SamplingParams(temperature=0.8, max_new_tokens=s.max_new_tokens, seed=derive_seed(s.seed, ctx.iteration, i))
            for i, _ in chunk
        ]
        done = ctx.engine.generate([[{"role": "user", "content": q}] for _, q in chunk], params)
        return [
            AnswerRow(
                id=i,
                question=q,
                answer=c.samples[0].text,
                finish_reason=c.samples[0].finish_reason,
                earlier=len(ctx.earlier),
            )
            for (i, q), c in zip(chunk, done)
        ]

    return run_stage(
        ctx.store,
        "answers",
        items,
        key=lambda item: item[0],
        process=process,
        chunk_size=ctx.chunk_size,
        progress=ctx.progress,
    )


def examples(ctx: StageContext) -> StageResult:
    def process(chunk: list[dict]) -> list[ExampleRow]:
        return [
            ExampleRow(
                id=row["id"],
                prompt=[{"role": "user", "content": row["question"]}],
                completion=[{"role": "assistant", "content": row["answer"]}],
                drop_reason=None if row["answer"].strip() else "empty",
            )
            for row in chunk
        ]

    rows = ctx.store.rows("answers")
    return run_stage(
        ctx.store,
        "examples",
        rows,
        key=lambda r: r["id"],
        process=process,
        chunk_size=ctx.chunk_size,
        stats=drop_stats,
        progress=ctx.progress,
    )


def write_report(store) -> None:
    (store.root / "report.md").write_text(f"# echo: {store.manifest.stages['examples'].rows} examples\n")


METHOD = Method(
    name="echo",
    summary="Test-only: answers fixed questions, then SFT on its own answers.",
    section=EchoSection,
    stages=(Stage("answers", answers), Stage("examples", examples, role="none")),
    trainer="sft",
    training_data="examples",
    columns=frozenset({"prompt", "completion"}),
    report=write_report,
    empty_hint="raise synth.max_new_tokens",
    doc="tests/echo_method.py",
)

if __name__ == "__main__":
    from sao import methods
    from sao.cli import main

    methods.register(METHOD)
    sys.argv = ["sao", *sys.argv[1:]]
    main()
