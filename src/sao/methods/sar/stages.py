"""``method: sar``'s stages for one iteration: the held-out tasks (the same in every iteration) and this
iteration's training tasks, each a resumable `sao.stage.run_stage` that only writes rows; GRPO samples
and scores the answers itself during training."""

from __future__ import annotations

from pydantic import BaseModel

from sao.methods.dno.splits import deal
from sao.methods.method import StageContext
from sao.methods.sar.config import SARConfig
from sao.rewards.tasks import Task, load_tasks, task_prompt
from sao.stage import StageResult, run_stage

HELD_OUT, TASKS = "held_out", "tasks"


class TaskRow(BaseModel):
    id: str
    schema_version: int = 1
    prompt: list[dict[str, str]]
    answer: str
    checker: str
    iteration: int


def split_tasks(section: SARConfig, iteration: int) -> tuple[list[Task], list[Task]]:
    """(held-out tasks, iteration ``iteration``'s training tasks), disjoint.

    The generator draws the held-out set from ``held_out_seed`` and iteration k's from ``seed + k``; a file
    or dataset is dealt like DNO's prompt sets (`sao.methods.dno.splits.deal`).
    """
    source = section.tasks
    if source.kind == "arithmetic":
        held = load_tasks(source, count=section.held_out, seed=section.held_out_seed)
        asked = {t.question for t in held}
        drawn = load_tasks(source, count=section.prompts_per_iteration, seed=section.seed + iteration)
        return held, [t for t in drawn if t.question not in asked]
    return deal(
        load_tasks(source, count=None, seed=section.seed),
        validation=section.held_out,
        per_iteration=section.prompts_per_iteration,
        iteration=iteration,
        seed=section.seed,
    )


def task_rows(tasks: list[Task], section: SARConfig, iteration: int) -> list[TaskRow]:
    return [
        TaskRow(id=t.id, prompt=task_prompt(t, section.system), answer=t.answer, checker=t.checker, iteration=iteration)
        for t in tasks
    ]


def _write(ctx: StageContext, stage: str, rows: list[TaskRow]) -> StageResult:
    return run_stage(
        ctx.store, stage, rows, key=lambda r: r.id, process=lambda chunk: chunk, chunk_size=256, progress=False
    )


def run_held_out(ctx: StageContext) -> StageResult:
    held, _ = split_tasks(ctx.section, ctx.iteration)
    return _write(ctx, HELD_OUT, task_rows(held, ctx.section, 0))


def run_tasks(ctx: StageContext) -> StageResult:
    _, train = split_tasks(ctx.section, ctx.iteration)
    return _write(ctx, TASKS, task_rows(train, ctx.section, ctx.iteration))
