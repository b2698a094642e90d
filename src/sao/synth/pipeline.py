"""``sao synth``: the five synthesis stages in order, each resumable, in one run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sao.engine import Engine
from sao.errors import ConfigError
from sao.stage import StageResult
from sao.stages import judge, pairs, personas, prompts, responses
from sao.store import RunStore
from sao.synth.config import SynthConfig

log = logging.getLogger(__name__)

MODEL_STAGES = [
    (personas.STAGE, personas.run_personas),
    (prompts.STAGE, prompts.run_prompts),
    (responses.STAGE, responses.run_responses),
    (judge.STAGE, judge.run_judgements),
]
STAGES = [name for name, _ in MODEL_STAGES] + [pairs.STAGE]


def check_until(config: SynthConfig, until: str | None) -> None:
    """Raise ConfigError unless ``until`` names a stage that ``config`` runs (or is None)."""
    if until is None:
        return
    if until not in STAGES:
        raise ConfigError(f"until: '{until}' is not a stage ({', '.join(STAGES)})")
    if until == personas.STAGE and config.prompts.no_personas:
        raise ConfigError("until: 'personas' does not run with prompts.no_personas; stop after 'prompts' instead")


def run_synth(
    engine: Engine,
    config: SynthConfig,
    out_dir: str | Path,
    *,
    model_info: dict[str, Any] | None = None,
    force: bool = False,
    chunk_size: int = 32,
    progress: bool = True,
    until: str | None = None,
) -> tuple[RunStore, dict[str, StageResult | None]]:
    """Run every stage not yet done, up to and including ``until`` (default: all).

    A stage that is done is skipped (its rows are final); a later call without ``until``
    carries on from there.

    With ``prompts.no_personas`` the persona stage does not run. Each stage's wall time,
    summed over every invocation that worked on it, is its manifest status's ``seconds``
    (`sao.stage.run_stage`).
    """
    check_until(config, until)
    store = RunStore.open(out_dir, config.model_dump(), model_info, force=force)
    results: dict[str, StageResult | None] = {}
    steps: list[tuple[str, Any]] = [
        (name, lambda fn=fn: fn(engine, config, store, chunk_size=chunk_size, progress=progress))
        for name, fn in MODEL_STAGES
        if not (name == personas.STAGE and config.prompts.no_personas)
    ]
    steps.append((pairs.STAGE, lambda: pairs.run_pairs(config, store, progress=progress)))
    if until is not None:
        steps = steps[: [name for name, _ in steps].index(until) + 1]
    for name, step in steps:
        if store.is_done(name):
            log.info("%s: done already, skipped", name)
            results[name] = None
            continue
        results[name] = step()
        log.info("%s: %d rows (%d new)", name, results[name].total, results[name].written)
    return store, results
