"""Markdown reports of a ``sao run``: one per iteration, and an index of all iterations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sao.atomic import write_text_atomic
from sao.loop.iteration import Iteration
from sao.stages.generate import STAGE as GENERATIONS
from sao.store import StageStatus
from sao.synth.report import stats_markdown
from sao.train.card import metrics_table


def _cell(text: str) -> str:
    return text.strip().replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def _answer(row: dict[str, Any]) -> str:
    sample = row["samples"][0]
    cut = " *(cut off at the token budget)*" if sample["finish_reason"] == "length" else ""
    return _cell(sample["text"]) + cut


def _stage_time(status: StageStatus) -> Any:
    """A stage's wall time summed over the invocations that worked on it, labelled when there were several."""
    if not status.attempts:  # a manifest from before issue 14 kept only the last invocation's time
        return status.stats.get("seconds")
    seconds = round(status.seconds, 1)
    return seconds if status.attempts == 1 else f"{seconds} (sum of {status.attempts} attempts: resumed)"


def stage_seconds(iteration: Iteration) -> list[tuple[str, Any]]:
    """Wall time of each part; a resumed stage's earlier attempts are counted and labelled."""
    # The manifest lists stages in the order they first ran, which is the method's order.
    rows: list[tuple[str, Any]] = [(name, _stage_time(s)) for name, s in iteration.synth.manifest.stages.items()]
    rows.append(("train", iteration.train_stats.get("seconds")))
    for name, samples in (("report samples before", iteration.before), ("report samples after", iteration.after)):
        rows.append((name, _stage_time(samples.manifest.stages[GENERATIONS])))
    return rows


def iteration_markdown(iteration: Iteration) -> str:
    root, stats = iteration.root, iteration.train_stats
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731 - links stay valid when the run directory moves
    lines = [
        f"# Iteration {iteration.index}",
        "",
        f"Model in: `{iteration.model_in}`. Model out: [`{rel(iteration.model_out)}`]({rel(iteration.model_out)}).",
        "",
        "## Wall time and memory",
        "",
        "| part | seconds |",
        "|---|---:|",
        *(f"| {name} | {value if value is not None else 'n/a'} |" for name, value in stage_seconds(iteration)),
        "",
        f"Peak resident memory: {iteration.peak_rss_mb:.0f} MiB.",
        "",
        "## Synthesis",
        "",
        stats_markdown(iteration.synth).split("\n", 2)[2].strip(),
        "",
        "![response lengths](synth/lengths.png)" if (root / "synth" / "lengths.png").is_file() else "",
        "",
        "## Training",
        "",
        f"{stats.get('examples')} {iteration.data_stage}, {stats.get('steps')} optimiser steps, "
        f"{stats.get('tokens_per_second')} tokens/s.",
        "",
        *metrics_table(stats),
        "",
        "![training curves](train/training.png)" if (root / "train" / "training.png").is_file() else "",
        "",
        "## Before and after (greedy, fixed prompts)",
        "",
    ]
    after = {row["id"]: row for row in iteration.after.rows(GENERATIONS)}
    for row in iteration.before.rows(GENERATIONS):
        lines += [
            f"**{_cell(row['messages'][-1]['content'])}**",
            "",
            "| before | after |",
            "|---|---|",
            f"| {_answer(row)} | {_answer(after[row['id']])} |",
            "",
        ]
    return "\n".join(lines)


def write_iteration_report(iteration: Iteration) -> Path:
    path = iteration.root / "report.md"
    write_text_atomic(path, iteration_markdown(iteration))
    return path


def write_run_report(out_dir: Path, iterations: list[Iteration]) -> Path:
    lines = [
        f"# sao run: {out_dir}",
        "",
        f"| iteration | {iterations[0].data_stage if iterations else 'rows'} trained on | final loss | "
        "final reward margin | changed report answers | model | report |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for it in iterations:
        after = {row["id"]: row["samples"][0]["text"] for row in it.after.rows(GENERATIONS)}
        before = it.before.rows(GENERATIONS)
        changed = sum(row["samples"][0]["text"] != after[row["id"]] for row in before)
        rel_model, rel_report = os.path.relpath(it.model_out, out_dir), os.path.relpath(it.root / "report.md", out_dir)
        lines.append(
            f"| {it.index} | {it.synth.manifest.stages[it.data_stage].rows} | {it.train_stats.get('final_loss')} | "
            f"{it.train_stats.get('final_rewards/margins')} | {changed} of {len(before)} | "
            f"`{rel_model}` | [{rel_report}]({rel_report}) |"
        )
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
