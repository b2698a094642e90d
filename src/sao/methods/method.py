"""What a self-alignment method declares: its recipe section, its stages, its trainer, its hand-over.

A method is data, not a subclass: `Method` records what the generic loop (`sao.loop.run`) and
`sao synth` (`sao.synth.pipeline`) need to run it, and each method module (``sao.methods.<name>``)
builds one. Nothing outside a method's own module knows its stages or its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sao.engine.types import Engine
from sao.recipe import Section
from sao.stage import StageResult
from sao.store import RunStore
from sao.train.config import TrainConfig


@dataclass(frozen=True)
class StageContext:
    """Everything one stage of one iteration may use. Stages read earlier stages' rows from ``store``."""

    section: Any  # the method's recipe section, as `Method.for_iteration` made it for this iteration
    store: RunStore  # the iteration's synthesis directory
    engine: Engine  # the policy: the model this iteration starts from
    judge: Engine | None  # the judge's engine (the policy itself for judge 'self'); None if the method has none
    iteration: int  # 1-based
    earlier: tuple[Path, ...]  # synthesis directories of the earlier iterations, oldest first
    chunk_size: int = 32
    progress: bool = True
    # An engine on another model, for a method that trains a model of its own within an iteration and
    # generates with it (SELF-ALIGN's engraved model): lazy, on the recipe's engine settings.
    engine_for: Callable[[str], Engine] | None = None
    trust_remote_code: bool = False


EngineRole = Literal["policy", "judge", "none"]


def never_skipped(section: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Stage:
    """One resumable step that writes a stage file (`sao.stage.run_stage`) in the synthesis directory.

    ``skipped(section)`` is why the stage does not run under these settings, or None when it runs.
    ``needs`` are the capabilities (`sao.engine.capabilities`) the engine of ``role`` must have, or a
    function of the section giving them (a sampling control the recipe may leave off); they are
    checked against the recipe's backend before any model loads.
    """

    name: str
    run: Callable[[StageContext], StageResult]
    role: EngineRole = "policy"
    needs: frozenset[str] | Callable[[Any], frozenset[str]] = frozenset()
    skipped: Callable[[Any], str | None] = never_skipped

    def needs_for(self, section: Any) -> frozenset[str]:
        return self.needs(section) if callable(self.needs) else self.needs


@dataclass(frozen=True)
class Handoff:
    """What one iteration hands to the next: the model to start from, and the synthesis so far."""

    model: str
    earlier: tuple[Path, ...] = ()


def hand_over(previous: Handoff, model_out: Path, synth_dir: Path) -> Handoff:
    """The default: the next iteration starts from the trained model and sees this one's data."""
    return Handoff(model=str(model_out), earlier=(*previous.earlier, synth_dir))


def unchanged(section: Any, index: int, model: str) -> Any:
    return section


def same_training(section: Any, train: TrainConfig) -> TrainConfig:
    return train


@dataclass(frozen=True)
class Method:
    """A self-alignment method, as the loop and the registry see it.

    - ``section``: its recipe section (the recipe's ``synth:``), a `sao.recipe.Section`;
    - ``stages``: in order, turning the iteration's model into ``training_data``'s rows;
    - ``trainer``: the default ``train.trainer`` (`sao.train.table`); ``columns`` are the columns
      of the training rows, so that a trainer needing others is refused before anything runs;
    - ``judge``: where the section keeps its judge settings (`sao.judge`), or None;
    - ``for_iteration(section, index, model)``: the section iteration ``index`` runs with;
    - ``hand_over``: what an iteration passes to the next (`Handoff`);
    - ``report``: writes the synthesis report of a directory (``report.md``, plots);
    - ``empty_hint``: the settings to change when the training data came out empty;
    - ``train_config(section, train)``: the ``train:`` section the iteration's training runs with
      (SELF-ALIGN sets the chat template its turn format needs);
    - ``finish(config, out_dir, iterations, progress=...)``: run once after the last iteration (DNO
      picks its best iterate there); the markdown it returns is added to the run report.
    """

    name: str
    summary: str  # one line, for `sao methods`
    section: type[Section]
    stages: tuple[Stage, ...]
    trainer: str
    training_data: str
    columns: frozenset[str]
    report: Callable[[RunStore], Any]
    judge: Callable[[Any], Any] | None = None
    for_iteration: Callable[[Any, int, str], Any] = unchanged
    hand_over: Callable[[Handoff, Path, Path], Handoff] = hand_over
    train_config: Callable[[Any, TrainConfig], TrainConfig] = same_training
    empty_hint: str = ""
    finish: Callable[..., str | None] | None = None
    doc: str = ""  # the method's page under docs/

    def __post_init__(self) -> None:
        names = self.stage_names
        if len(set(names)) != len(names):
            raise ValueError(f"method {self.name}: two stages share a name ({', '.join(names)})")
        if self.training_data not in names:
            raise ValueError(f"method {self.name}: training_data '{self.training_data}' is not one of its stages")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def active_stages(self, section: Any) -> tuple[Stage, ...]:
        """The stages that run under ``section``, in order."""
        return tuple(stage for stage in self.stages if stage.skipped(section) is None)
