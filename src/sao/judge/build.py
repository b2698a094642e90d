"""The judge a run judges with: the policy itself ('self', as SAO does), or another model on its own engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sao.engine.config import EngineSection
from sao.engine.factory import engine_model_info
from sao.engine.lazy import LazyEngine, lazy_engine
from sao.engine.types import Engine
from sao.errors import ConfigError
from sao.judge.config import SELF, JudgeSection


@dataclass(frozen=True)
class Judge:
    """What judges: its engine, the model behind it and the engine settings it runs on.

    ``label`` names the judge in reports: 'self', or the judge model as the recipe names it.
    """

    engine: Engine
    spec: str  # the judging model: the policy's own for 'self'
    settings: EngineSection  # the engine section ``engine`` was built from
    label: str
    # `engine_model_info` of a named judge, computed once (it hashes the weights); None for 'self'.
    model_info: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def is_self(self) -> bool:
        return self.label == SELF

    def identity(self) -> dict[str, Any]:
        """What a manifest records about the judge: ``{"model": "self"}`` for the policy judging itself
        (the manifest records the policy already), else the judge model's `engine_model_info`."""
        return {"model": SELF} if self.is_self else dict(self.model_info or {})

    def release(self) -> None:
        """Free a named judge's model (its engine loads again on next use). A 'self' judge's engine is
        the policy's, so its owner releases it."""
        if not self.is_self and isinstance(self.engine, LazyEngine):
            self.engine.release()


def build_judge(
    section: JudgeSection,
    *,
    policy_engine: Engine | None,
    policy_model: str | None,
    engine_settings: EngineSection,
    trust_remote_code: bool,
    progress: bool,
) -> Judge:
    """The judge ``section`` asks for.

    'self': ``policy_engine`` (the engine of ``policy_model``, run with ``engine_settings``) judges.
    A named model: a lazy engine on ``section.engine`` or else ``engine_settings``, which loads the
    model on first use (a resumed run whose verdicts are all written never loads it); its identity is
    computed here, once. Build it once per iteration (or eval) and reuse it.

    Raises ConfigError for a 'self' judge with no policy engine (answers read from a file have no
    model to judge them).
    """
    if section.model == SELF:
        if policy_engine is None or policy_model is None:
            raise ConfigError("judge.model: 'self' needs a model that judges its own answers; name a judge model")
        return Judge(engine=policy_engine, spec=policy_model, settings=engine_settings, label=SELF)
    settings = section.engine or engine_settings
    engine = lazy_engine(section.model, settings, trust_remote_code=trust_remote_code, progress=progress)
    return Judge(
        engine=engine,
        spec=section.model,
        settings=settings,
        label=section.model,
        model_info=engine_model_info(section.model, settings),
    )
