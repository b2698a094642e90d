"""The synthesis report of one DNO iteration: stage counts, pairs per rule, positives' origin, mixing."""

from __future__ import annotations

from pathlib import Path

from sao.atomic import write_text_atomic
from sao.store import RunStore
from sao.synth.report import stats_markdown


def dno_markdown(store: RunStore) -> str:
    stages = store.manifest.stages
    lines = [stats_markdown(store).rstrip(), ""]
    if "pairs" in stages:
        stats = stages["pairs"].stats
        dropped = stats.get("dropped", {})
        lines += [
            "**pair rules**: "
            + "; ".join(f"{rule} {n}" for rule, n in [("kept", stats.get("kept", 0)), *sorted(dropped.items())]),
            f"**positives from the policy (not the gold)**: {stats.get('policy_positive_share')}",
        ]
    if "training" in stages:
        mixed = stages["training"].stats.get("from_iteration", {})
        lines.append("**training rows by iteration**: " + ", ".join(f"t{k}: {v}" for k, v in mixed.items()))
    return "\n".join(lines) + "\n"


def write_report(store: RunStore) -> tuple[Path, None]:
    path = store.root / "report.md"
    write_text_atomic(path, dno_markdown(store))
    return path, None
