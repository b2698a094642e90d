"""``sao run``: iterations of a method's synthesis -> training, each from what the last one handed over.

The loop knows no method and no backend: the method (`sao.methods`) gives the stages, the trainer
and the hand-over; the engine factory gives an engine on any model.

Layout of a run directory::

    recipe.yaml            the validated recipe, defaults filled in
    report.md              one line per iteration
    iter-1/synth/          the method's synthesis stages (a `sao synth` run directory)
    iter-1/samples-before/ greedy answers to the report prompts from the iteration's input model
    iter-1/train/          trainer checkpoints, history.jsonl, training.png
    iter-1/model/          the trained model (HF format, model card); iteration 2 starts here
    iter-1/samples-after/  the same prompts answered by the trained model
    iter-1/report.md       stage times, synthesis stats, training curves, before/after samples

Every part is resumable: the synthesis and sampling stages by row, training from its last
checkpoint, and a part that is done is skipped without loading a model. ``recipe.yaml`` is
written when the directory is new, and replaced only once iteration 1 has passed every resume
check, so a refused run leaves the recipe that made the directory.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from sao import methods
from sao.atomic import write_text_atomic
from sao.engine.factory import engine_model_info
from sao.engine.lazy import LazyEngine, lazy_engine
from sao.errors import ConfigError, SaoError
from sao.loop.config import RunConfig
from sao.loop.iteration import Iteration
from sao.loop.report import write_iteration_report, write_run_report
from sao.methods.method import Handoff, Method
from sao.stages.generate import ChatPrompt, GenerateConfig, run_generate
from sao.store import RunStore
from sao.synth.pipeline import check_capabilities, manifest_config, method_judge, run_synth
from sao.train.run import run_train
from sao.train.trainers import check_trl_values
from sao.usage import peak_rss_mb

log = logging.getLogger(__name__)


def report_prompts(config: RunConfig) -> list[ChatPrompt]:
    return [
        ChatPrompt(id=f"report-{i}", messages=[{"role": "user", "content": text}])
        for i, text in enumerate(config.report.prompts)
    ]


def answer_report_prompts(
    engine: Any,
    config: RunConfig,
    info: dict[str, Any],
    out_dir: Path,
    progress: bool,
    *,
    force: bool = False,
    chunk_size: int = 32,
) -> RunStore:
    """Greedy answers to the report prompts (a resumable generate stage); ``info`` is `engine_model_info`'s.

    Its wall time, summed over every invocation that answered some, is the stage's ``seconds``.
    """
    settings = GenerateConfig(
        model=info["spec"], n=1, temperature=0.0, top_p=1.0, max_new_tokens=config.report.max_new_tokens
    )
    store, _ = run_generate(
        engine,
        settings,
        report_prompts(config),
        out_dir,
        model_info=info,
        chunk_size=chunk_size,
        force=force,
        progress=progress,
    )
    return store


def policy_engine(config: RunConfig, model: str, progress: bool) -> LazyEngine:
    """A lazy engine on ``model`` (the starting model or one this run trained), through the factory: the
    engine knows how to serve a trained directory (llama.cpp exports it to GGUF once, from the starting
    model's GGUF)."""
    return lazy_engine(
        model, config.engine, trust_remote_code=config.trust_remote_code, progress=progress, base_model=config.model
    )


def _peak_rss(root: Path) -> float:
    """Peak RSS over every invocation that worked on this iteration (a resumed run starts low)."""
    path = root / "usage.json"
    old = json.loads(path.read_text())["peak_rss_mb"] if path.is_file() else 0.0
    peak = max(old, peak_rss_mb())
    write_text_atomic(path, json.dumps({"peak_rss_mb": peak}))  # a torn file would stop every resume
    return peak


def run_iteration(
    method: Method,
    config: RunConfig,
    index: int,
    handoff: Handoff,
    engine: LazyEngine,
    out_dir: Path,
    *,
    force: bool,
    progress: bool,
    chunk_size: int = 32,
) -> tuple[Iteration, LazyEngine, Handoff]:
    """One synthesise -> train round; returns it, a (lazy) engine on the new model and the next hand-over."""
    root, model = out_dir / f"iter-{index}", handoff.model
    section = method.for_iteration(config.synth, index, model)
    info = engine_model_info(model, config.engine)  # hashes the weights: once per model, not once per stage
    judge = method_judge(
        method, section, engine, model, config.engine, trust_remote_code=config.trust_remote_code, progress=progress
    )
    store, _ = run_synth(
        method,
        section,
        root / "synth",
        engine=engine,
        judge=judge.engine if judge else None,
        config=manifest_config(section, judge),
        model_info=info,
        iteration=index,
        earlier=handoff.earlier,
        force=force,
        chunk_size=chunk_size,
        progress=progress,
        engine_for=lambda other: policy_engine(config, other, progress),
        trust_remote_code=config.trust_remote_code,
    )
    method.report(store)
    sampling = dict(force=force, chunk_size=chunk_size)
    before = answer_report_prompts(engine, config, info, root / "samples-before", progress, **sampling)
    data_rows = store.manifest.stages[method.training_data].rows
    if data_rows == 0:
        raise SaoError(
            f"iteration {index}: synthesis kept no {method.training_data} rows "
            f"(see {root / 'synth' / 'report.md'}); {method.empty_hint or 'see the method doc'}"
        )
    engine.release()  # generation's memory goes back before training starts
    if judge is not None:
        judge.release()  # a named judge's model; the policy's own is released above
    result = run_train(
        method.train_config(section, config.train),
        model,
        store.stage_path(method.training_data),
        root / "train",
        model_dir=root / "model",
        force=force,
        progress=progress,
        trust_remote_code=config.trust_remote_code,
    )
    trained = str(result.model_dir)
    next_engine = policy_engine(config, trained, progress)
    after_info = engine_model_info(trained, config.engine)
    after = answer_report_prompts(next_engine, config, after_info, root / "samples-after", progress, **sampling)
    iteration = Iteration(
        index,
        root,
        model,
        result.model_dir,
        store,
        method.training_data,
        result.metrics,
        before,
        after,
        _peak_rss(root),
    )
    return iteration, next_engine, method.hand_over(handoff, result.model_dir, root / "synth")


def run_loop(
    config: RunConfig, out_dir: str | Path, *, force: bool = False, progress: bool = True, chunk_size: int = 32
) -> list[Iteration]:
    """Run (or resume) every iteration of ``config`` in ``out_dir`` and write the reports.

    ``chunk_size`` is the rows each sampling stage appends at a time (the most a kill can lose).
    Raises ResumeConflictError, leaving ``recipe.yaml`` as it was, when ``out_dir`` was made with
    settings that change what a finished part holds (unless ``force``).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "sao run generates in one process; under accelerate launch run `sao synth` once and "
            "`accelerate launch -m sao train` per iteration (docs/training.md)"
        )
    method = methods.get(config.method)
    check_capabilities(method, config.synth, config.engine)  # before any model loads
    check_trl_values(config.train)  # and before the synthesis that precedes training
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe, text = out_dir / "recipe.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False)
    # Every iteration runs with the same settings, so one whose parts all resumed without a
    # conflict vouches for the recipe: only then may it replace the one the directory was made with.
    if force or not recipe.is_file():  # --force overrides every conflict, so it vouches at once
        write_text_atomic(recipe, text)
    handoff = Handoff(model=config.model)
    engine = policy_engine(config, config.model, progress)
    iterations = []
    for index in range(1, config.iterations + 1):
        log.info("iteration %d of %d (%s): from %s", index, config.iterations, method.name, handoff.model)
        iteration, engine, handoff = run_iteration(
            method, config, index, handoff, engine, out_dir, force=force, progress=progress, chunk_size=chunk_size
        )
        if index == 1 and recipe.read_text() != text:
            write_text_atomic(recipe, text)
        write_iteration_report(iteration)
        iterations.append(iteration)
    report = write_run_report(out_dir, iterations)
    if method.finish is not None and (extra := method.finish(config, out_dir, iterations, progress=progress)):
        write_text_atomic(report, report.read_text() + extra)
    return iterations
