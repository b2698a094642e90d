"""A method's synthesis: its stages in order, each resumable, in one run directory (``sao synth``).

The loop (`sao.loop.run`) calls `run_synth` once per iteration; ``sao synth`` calls it once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sao.engine import Engine
from sao.engine.config import EngineSection
from sao.errors import ConfigError
from sao.judge.build import Judge, build_judge
from sao.methods.method import Method, StageContext
from sao.stage import StageResult
from sao.store import RunStore

log = logging.getLogger(__name__)


def check_until(method: Method, section: Any, until: str | None) -> None:
    """Raise ConfigError unless ``until`` names a stage of ``method`` that runs under ``section`` (or is None)."""
    if until is None:
        return
    if until not in method.stage_names:
        raise ConfigError(f"until: '{until}' is not a stage ({', '.join(method.stage_names)})")
    stage = next(s for s in method.stages if s.name == until)
    if (reason := stage.skipped(section)) is not None:
        later = method.stage_names[method.stage_names.index(until) + 1 :]
        instead = next((name for name in later if name in {s.name for s in method.active_stages(section)}), None)
        hint = f"; stop after '{instead}' instead" if instead else ""
        raise ConfigError(f"until: '{until}' does not run with {reason}{hint}")


def check_capabilities(method: Method, section: Any, settings: EngineSection) -> None:
    """CapabilityError, naming the backend, the capability and the stage, before any model loads.

    A judge stage runs on the judge's own engine (``judge.engine``) where it names one, else on ``settings``.
    """
    judge = method.judge(section) if method.judge else None
    judge_settings = judge.engine if judge is not None and judge.engine is not None else settings
    for stage in method.active_stages(section):
        if stage.role != "none" and (needs := stage.needs_for(section)):
            from sao.engine.capabilities import require_capabilities

            who = f"method '{method.name}' (stage '{stage.name}')"
            require_capabilities(judge_settings if stage.role == "judge" else settings, needs, who)


def method_judge(
    method: Method,
    section: Any,
    engine: Engine,
    model: str,
    settings: EngineSection,
    *,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> Judge | None:
    """The judge of ``method`` under ``section`` (None when it has none): the policy ``engine`` on ``model``
    for ``judge.model: self``, else the named model on ``judge.engine`` (default ``settings``). Built once
    per synthesis directory, so that every stage shares it."""
    if method.judge is None:
        return None
    return build_judge(
        method.judge(section),
        policy_engine=engine,
        policy_model=model,
        engine_settings=settings,
        trust_remote_code=trust_remote_code,
        progress=progress,
    )


def manifest_config(section: Any, judge: Judge | None) -> dict[str, Any]:
    """What a synthesis directory's manifest pins: the section's fields and, for a judge other than the
    policy, its identity (weights fingerprint, engine), so that a resume with another judge is refused."""
    config = section.model_dump()
    if judge is not None and not judge.is_self:
        config["judge_identity"] = judge.identity()
    return config


def run_synth(
    method: Method,
    section: Any,
    out_dir: str | Path,
    *,
    engine: Engine,
    judge: Engine | None = None,
    config: dict[str, Any] | None = None,
    model_info: dict[str, Any] | None = None,
    iteration: int = 1,
    earlier: tuple[Path, ...] = (),
    force: bool = False,
    chunk_size: int = 32,
    progress: bool = True,
    until: str | None = None,
    engine_for: Callable[[str], Engine] | None = None,
    trust_remote_code: bool = False,
) -> tuple[RunStore, dict[str, StageResult | None]]:
    """Run every stage of ``method`` not yet done, up to and including ``until`` (default: all).

    ``config`` is what the directory's manifest records and a resume must match (default: the
    section's fields). A stage that is done is skipped (its rows are final); a later call
    without ``until`` carries on from there. A stage that ``section`` skips does not run. Each
    stage's wall time, summed over every invocation that worked on it, is its manifest
    status's ``seconds`` (`sao.stage.run_stage`). ``engine_for`` builds an engine on another model,
    for a stage that generates with a model the method trained (`StageContext.engine_for`).
    """
    check_until(method, section, until)
    store = RunStore.open(out_dir, config or section.model_dump(), model_info, force=force)
    if engine_for is not None:
        # One lazy engine per model for the whole directory: a model a stage trains (SELF-ALIGN's engraved
        # one) is loaded once, however many later stages generate with it or score with it.
        engine_for = functools.cache(engine_for)
    context = StageContext(
        section=section,
        store=store,
        engine=engine,
        judge=judge,
        iteration=iteration,
        earlier=earlier,
        chunk_size=chunk_size,
        progress=progress,
        engine_for=engine_for,
        trust_remote_code=trust_remote_code,
    )
    stages = method.active_stages(section)
    if until is not None:
        stages = stages[: [s.name for s in stages].index(until) + 1]
    results: dict[str, StageResult | None] = {}
    for stage in stages:
        if store.is_done(stage.name):
            log.info("%s: done already, skipped", stage.name)
            results[stage.name] = None
            continue
        results[stage.name] = result = stage.run(context)
        log.info("%s: %d rows (%d new)", stage.name, result.total, result.written)
    return store, results


def synthesize(
    method: Method,
    section: Any,
    model: str,
    settings: EngineSection,
    out_dir: str | Path,
    *,
    trust_remote_code: bool = False,
    force: bool = False,
    chunk_size: int = 32,
    progress: bool = True,
    until: str | None = None,
) -> RunStore:
    """``sao synth``: ``method``'s synthesis with ``model`` on ``settings`` into ``out_dir``, and its report.

    Settings are checked (``until``, the engines' capabilities) before any model loads, and the
    model loads only if a stage has work left.
    """
    from sao.engine.factory import engine_model_info
    from sao.engine.lazy import lazy_engine

    check_until(method, section, until)
    check_capabilities(method, section, settings)
    section = method.for_iteration(section, 1, model)
    engine = lazy_engine(model, settings, trust_remote_code=trust_remote_code, progress=progress)
    judge = method_judge(
        method, section, engine, model, settings, trust_remote_code=trust_remote_code, progress=progress
    )
    store, _ = run_synth(
        method,
        section,
        out_dir,
        engine=engine,
        judge=judge.engine if judge else None,
        config=manifest_config(section, judge),
        model_info=engine_model_info(model, settings),
        force=force,
        chunk_size=chunk_size,
        progress=progress,
        until=until,
        engine_for=lambda other: lazy_engine(
            other, settings, trust_remote_code=trust_remote_code, progress=progress, base_model=model
        ),
        trust_remote_code=trust_remote_code,
    )
    method.report(store)
    return store
