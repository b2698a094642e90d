"""What one iteration of `sao run` leaves behind: the record the loop returns and the reports read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sao.store import RunStore


@dataclass
class Iteration:
    index: int
    root: Path
    model_in: str
    model_out: Path
    synth: RunStore
    data_stage: str  # the synthesis stage whose rows were trained on (SAO: pairs)
    train_stats: dict[str, Any]
    before: RunStore  # greedy answers to the report prompts from model_in
    after: RunStore  # and from model_out
    peak_rss_mb: float
