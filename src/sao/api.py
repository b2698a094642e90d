"""The Python API: what ``sao run``, ``sao synth`` and ``sao train`` do, callable from a program.

A recipe is a path to a YAML run recipe, a dict of its values, or a validated `RunConfig`;
``overrides`` are ``--set``'s ``dotted.key=value`` strings, relative to the run recipe's top level
(``synth.num_prompts=8``, ``train.learning_rate=1e-5``). Errors are the CLI's: a `sao.errors.SaoError`
whose message is one line naming the field, file or model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sao.errors import ConfigError
from sao.loop.config import RunConfig

Recipe = str | Path | dict[str, Any] | RunConfig


def load_run_config(recipe: Recipe, overrides: Sequence[str] = ()) -> RunConfig:
    """``recipe`` validated by its method's section, with ``overrides`` applied first."""
    from sao.loop.config import validate_run
    from sao.recipe import apply_overrides, load_yaml

    if isinstance(recipe, RunConfig):
        values = recipe.model_dump(exclude_unset=True)
    elif isinstance(recipe, dict):
        values = dict(recipe)
    else:
        values = load_yaml(recipe)
    return validate_run(apply_overrides(values, list(overrides)))


def _out(config: RunConfig, recipe: Recipe, out: str | Path | None) -> Path:
    if out is not None:
        return Path(out)
    if config.out:
        return Path(config.out)
    if isinstance(recipe, str | Path):
        return Path("runs") / Path(recipe).stem
    raise ConfigError("out: give a run directory (the recipe names none)")


def run(
    recipe: Recipe,
    out: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
    chunk_size: int = 32,
) -> list[Any]:
    """``sao run``: every iteration of the recipe's method in ``out`` (default: the recipe's ``out``).

    Resumable: call it again after a kill. Returns one `sao.loop.iteration.Iteration` per iteration.
    """
    from sao.loop.run import run_loop

    config = load_run_config(recipe, overrides)
    return run_loop(config, _out(config, recipe, out), force=force, progress=progress, chunk_size=chunk_size)


def synthesize(
    recipe: Recipe,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    until: str | None = None,
    force: bool = False,
    progress: bool = True,
    chunk_size: int = 32,
) -> Any:
    """``sao synth``: the recipe's method's synthesis stages with its ``model`` and ``engine``, into ``out``.

    The stages run as iteration 1 of ``sao run`` would run them. Returns the `sao.store.RunStore`.
    """
    from sao import methods
    from sao.synth.pipeline import synthesize as run_synthesis

    config = load_run_config(recipe, overrides)
    return run_synthesis(
        methods.get(config.method),
        config.synth,
        config.model,
        config.engine,
        out,
        trust_remote_code=config.trust_remote_code,
        force=force,
        chunk_size=chunk_size,
        progress=progress,
        until=until,
    )


def train_model(
    recipe: Recipe,
    data: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    overrides: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
) -> Any:
    """``sao train``: the recipe's ``train`` section on ``data`` (a synthesis directory or a .jsonl/.parquet
    file), from ``model`` (default: the recipe's), into ``out``. Returns a `sao.train.run.TrainResult`."""
    from sao.train.run import run_train

    config = load_run_config(recipe, overrides)
    return run_train(
        config.train,
        model or config.model,
        data,
        out,
        force=force,
        progress=progress,
        trust_remote_code=config.trust_remote_code,
    )
