"""The ``sao run`` recipe: the method, the model, the iteration count, and one section per part of an iteration.

``synth`` is the method's own section (`sao.methods.Method.section`): `validate_run` reads ``method``
first, then validates the recipe with that method's `run_config_class`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import Field, create_model, field_validator

from sao import methods
from sao.embedded_models import DEFAULT_MODEL
from sao.engine.config import EngineSection
from sao.errors import ConfigError
from sao.methods.method import Method
from sao.recipe import Section, validate
from sao.train.config import TrainConfig

REPORT_PROMPTS = [
    "Give me three tips for staying focused while working from home.",
    "Explain what a black hole is to a ten-year-old.",
    "Write a short, polite email asking my landlord to fix a leaking tap.",
    "What are the pros and cons of learning Python as a first programming language?",
]


class ReportSection(Section):
    prompts: list[str] = Field(
        default_factory=lambda: list(REPORT_PROMPTS),
        description="Fixed prompts answered greedily by the model before and after each iteration.",
    )
    max_new_tokens: int = Field(160, ge=8, description="Token budget of each report sample.")


class RunConfig(Section):
    """The fields every method's run recipe has; `run_config_class` adds the method's ``synth`` section."""

    method: str = Field(methods.DEFAULT, description="The self-alignment method (`sao methods` lists them).")
    model: str = Field(DEFAULT_MODEL, description="Starting model: alias, local directory or HF hub id.")
    iterations: int = Field(1, ge=1, description="Synthesise-then-train rounds; each starts from the last model.")
    out: str | None = Field(None, description="Run directory; `sao run --out` overrides it.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own Python code.")
    engine: EngineSection = Field(default_factory=EngineSection)
    synth: Section = Field(default_factory=Section, description="The method's own section.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    report: ReportSection = Field(default_factory=ReportSection)

    @field_validator("engine")
    @classmethod
    def _local_engine(cls, v: EngineSection) -> EngineSection:
        if v.backend == "openai":
            raise ValueError(
                "backend 'openai' cannot serve the model each iteration trains; use transformers, llamacpp or vllm "
                "(an OpenAI-compatible server suits sao generate, sao eval and judges)"
            )
        return v

    @field_validator("synth")
    @classmethod
    def _synth_model(cls, v: Section) -> Section:
        if "model" in v.model_fields_set:
            raise ValueError("'model' belongs at the top level of a run recipe (each iteration uses the latest model)")
        return v


@cache
def run_config_class(method: Method) -> type[RunConfig]:
    """`RunConfig` with ``synth`` validated by ``method``'s section (its defaults filled in)."""
    description = f"The {method.name} method's section."
    # A section with required fields (DNO's prompt set) makes `synth:` required, with the field named.
    required = any(field.is_required() for field in method.section.model_fields.values())
    synth = (
        method.section,
        Field(description=description) if required else Field(default_factory=method.section, description=description),
    )
    return create_model(f"{method.name.title()}RunConfig", __base__=RunConfig, synth=synth)


def validate_run(values: dict[str, Any]) -> RunConfig:
    """A run recipe's ``values`` validated by its method's `run_config_class`.

    ``train.trainer`` defaults to the method's trainer. Raises ConfigError naming the dotted field:
    an unknown method, a field the method's section lacks, or a trainer that needs training
    columns the method does not make.
    """
    name = values.get("method", methods.DEFAULT)
    if not isinstance(name, str):
        raise ConfigError(f"method: must be a method name ({', '.join(methods.names())}), got {name!r}")
    method = methods.get(name)
    train = values.get("train")
    if train is None or isinstance(train, dict):
        values = {**values, "train": {"trainer": method.trainer, **(train or {})}}
    config = validate(run_config_class(method), values)
    check_trainer(method, config.train.trainer)
    return config


def check_trainer(method: Method, trainer: str) -> None:
    """ConfigError unless the rows ``method`` trains on carry every column ``trainer`` reads."""
    from sao.train.table import trainer_columns

    alternatives = trainer_columns(trainer)
    if not any(columns <= method.columns for columns in alternatives):
        wanted = " or ".join("{" + ", ".join(sorted(columns)) + "}" for columns in alternatives)
        raise ConfigError(
            f"train.trainer: '{trainer}' reads rows with {wanted}, which method '{method.name}' does not make "
            f"(its {method.training_data} rows carry {', '.join(sorted(method.columns))})"
        )


# The keys that make a recipe a run recipe (`sao run` reads the whole file): a file with none of them
# is one command's section on its own.
RUN_KEYS = frozenset({"method", "iterations", "synth", "train", "report"})


@dataclass(frozen=True)
class CommandRecipe:
    """What ``--recipe FILE`` gives one command: its own section, and a run recipe's shared settings.

    ``method``, ``model``, ``engine`` and ``trust_remote_code`` are the run recipe's top level (the
    default method, None, {} and False for a section file), which every command that takes
    ``--recipe`` applies under its own section and its flags.
    """

    section: dict[str, Any]
    model: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    method: str = methods.DEFAULT


def command_recipe(values: dict[str, Any], section: str) -> CommandRecipe:
    """Split a recipe file's ``values`` for the command whose section is ``section`` (synth, train, eval, ...).

    A run recipe (it has ``section`` or any of `RUN_KEYS`) gives its ``section`` (empty when it has none)
    and its top-level ``model`` and ``engine``, as `sao run` composes them: `sao synth --recipe
    recipes/sao-llama3-8b.yaml` runs Llama 3 on vLLM, as `sao run` would. Any other file is the section
    on its own. Raises ConfigError when the shared parts have the wrong shape.
    """
    if section not in values and not RUN_KEYS & values.keys():
        return CommandRecipe(dict(values))
    own, model, engine = values.get(section) or {}, values.get("model"), values.get("engine") or {}
    if not isinstance(own, dict):
        raise ConfigError(f"{section}: must be a section (a mapping of fields)")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"model: must be a model alias, local directory or HF hub id, got {model!r}")
    if not isinstance(engine, dict):
        raise ConfigError("engine: must be a section (a mapping of fields)")
    trust = values.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ConfigError(f"trust_remote_code: must be true or false, got {trust!r}")
    method = values.get("method", methods.DEFAULT)
    methods.get(method if isinstance(method, str) else repr(method))  # ConfigError naming `method` if unknown
    return CommandRecipe(dict(own), model, dict(engine), trust, method)


def merge_sections(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, section by section (``over`` wins field by field)."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_sections(out[key], value) if nested else value
    return out
