"""``sao run``: iterations of synthesise -> train, each from the previous iteration's model.

Layout of a run directory::

    recipe.yaml            the validated recipe, defaults filled in
    report.md              one line per iteration
    iter-1/synth/          the five synthesis stages (a `sao synth` run directory)
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

from sao.atomic import write_text_atomic
from sao.engine.factory import engine_model_info
from sao.engine.lazy import LazyEngine, lazy_engine
from sao.errors import ConfigError, SaoError
from sao.loop.config import RunConfig
from sao.loop.iteration import Iteration
from sao.loop.report import write_iteration_report, write_run_report
from sao.stages.generate import ChatPrompt, GenerateConfig, run_generate
from sao.store import RunStore
from sao.synth.config import SynthConfig
from sao.synth.pipeline import run_synth
from sao.synth.report import write_report
from sao.train.run import run_train
from sao.usage import peak_rss_mb

log = logging.getLogger(__name__)


def iteration_synth_config(config: RunConfig, index: int, model: str) -> SynthConfig:
    """Iteration k synthesises with the latest model and seed + k - 1, so that it draws new personas."""
    return config.synth.model_copy(update={"model": model, "seed": config.synth.seed + index - 1})


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


def _engine_for(config: RunConfig, model: str, progress: bool) -> LazyEngine:
    if config.engine.backend != "llamacpp" or model == config.model:
        return lazy_engine(model, config.engine, trust_remote_code=config.trust_remote_code, progress=progress)
    return LazyEngine(lambda: _trained_llamacpp_engine(config, model, progress))


def _trained_llamacpp_engine(config: RunConfig, model: str, progress: bool) -> Any:
    """llama.cpp on a model this run trained: its HF weights exported to GGUF once, with the tokenizer and
    metadata of the GGUF the run started from (training changes neither)."""
    from sao.engine.factory import build_engine
    from sao.engine.llamacpp_engine import gguf_path
    from sao.gguf_export import ensure_gguf

    settings = config.engine.llamacpp
    template = gguf_path(config.model, settings)
    weights = "f16" if settings.weights == "source" else settings.weights
    exported = ensure_gguf(Path(model), template, weights)
    engine_settings = config.engine.model_copy(update={"llamacpp": settings.model_copy(update={"gguf": str(exported)})})
    return build_engine(model, engine_settings, trust_remote_code=config.trust_remote_code, progress=progress)


def _peak_rss(root: Path) -> float:
    """Peak RSS over every invocation that worked on this iteration (a resumed run starts low)."""
    path = root / "usage.json"
    old = json.loads(path.read_text())["peak_rss_mb"] if path.is_file() else 0.0
    peak = max(old, peak_rss_mb())
    write_text_atomic(path, json.dumps({"peak_rss_mb": peak}))  # a torn file would stop every resume
    return peak


def run_iteration(
    config: RunConfig,
    index: int,
    model: str,
    engine: LazyEngine,
    out_dir: Path,
    *,
    force: bool,
    progress: bool,
    chunk_size: int = 32,
) -> tuple[Iteration, LazyEngine]:
    """One synthesise -> train round; returns it and a (lazy) engine on the new model for the next round."""
    root = out_dir / f"iter-{index}"
    synth_config = iteration_synth_config(config, index, model)
    info = engine_model_info(model, config.engine)  # hashes the weights: once per model, not once per stage
    store, _ = run_synth(
        engine, synth_config, root / "synth", model_info=info, force=force, chunk_size=chunk_size, progress=progress
    )
    write_report(store)
    sampling = dict(force=force, chunk_size=chunk_size)
    before = answer_report_prompts(engine, config, info, root / "samples-before", progress, **sampling)
    if store.manifest.stages["pairs"].rows == 0:
        raise SaoError(
            f"iteration {index}: synthesis kept no preference pairs (see {root / 'synth' / 'report.md'}); "
            "raise synth.num_prompts or lower synth.judge.margin"
        )
    engine.release()  # generation's memory goes back before training starts
    result = run_train(
        config.train,
        model,
        root / "synth",
        root / "train",
        model_dir=root / "model",
        force=force,
        progress=progress,
        trust_remote_code=config.trust_remote_code,
    )
    trained = str(result.model_dir)
    next_engine = _engine_for(config, trained, progress)
    after_info = engine_model_info(trained, config.engine)
    after = answer_report_prompts(next_engine, config, after_info, root / "samples-after", progress, **sampling)
    iteration = Iteration(index, root, model, result.model_dir, store, result.metrics, before, after, _peak_rss(root))
    return iteration, next_engine


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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe, text = out_dir / "recipe.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False)
    # Every iteration runs with the same settings, so one whose parts all resumed without a
    # conflict vouches for the recipe: only then may it replace the one the directory was made with.
    if force or not recipe.is_file():  # --force overrides every conflict, so it vouches at once
        write_text_atomic(recipe, text)
    model = config.model
    engine = _engine_for(config, model, progress)
    iterations = []
    for index in range(1, config.iterations + 1):
        log.info("iteration %d of %d: from %s", index, config.iterations, model)
        iteration, engine = run_iteration(
            config, index, model, engine, out_dir, force=force, progress=progress, chunk_size=chunk_size
        )
        if index == 1 and recipe.read_text() != text:
            write_text_atomic(recipe, text)
        write_iteration_report(iteration)
        iterations.append(iteration)
        model = str(iteration.model_out)
    write_run_report(out_dir, iterations)
    return iterations
