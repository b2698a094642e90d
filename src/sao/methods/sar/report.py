"""The synthesis report of one SAR iteration: the task counts and a few sample tasks (GRPO's rollouts and
rewards are in the training curves: ``rewards/verifiable/mean``, ``rewards/sar/mean``)."""

from __future__ import annotations

from pathlib import Path

from sao.atomic import write_text_atomic
from sao.methods.sar.stages import TASKS
from sao.store import RunStore
from sao.synth.report import stats_markdown

SAMPLES = 3


def sar_markdown(store: RunStore) -> str:
    lines = [stats_markdown(store).rstrip(), ""]
    if store.stage_path(TASKS).is_file():
        lines += ["**sample training tasks** (reference answer in brackets):", ""]
        for row in store.rows(TASKS)[:SAMPLES]:
            question = row["prompt"][-1]["content"].split("\n\n")[0]
            lines.append(f"- {question} [{row['answer']}]")
    return "\n".join(lines) + "\n"


def write_report(store: RunStore) -> tuple[Path, None]:
    path = store.root / "report.md"
    write_text_atomic(path, sar_markdown(store))
    return path, None
