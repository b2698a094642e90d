"""The ``sao run`` recipe: the model, the iteration count, and one section per part of an iteration."""

from __future__ import annotations

from pydantic import Field, field_validator

from sao.embedded_models import DEFAULT_MODEL
from sao.engine.config import EngineSection
from sao.recipe import Section
from sao.synth.config import SynthConfig
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
    model: str = Field(DEFAULT_MODEL, description="Starting model: alias, local directory or HF hub id.")
    iterations: int = Field(1, ge=1, description="Synthesise-then-train rounds; each starts from the last model.")
    out: str | None = Field(None, description="Run directory; `sao run --out` overrides it.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own Python code.")
    engine: EngineSection = Field(default_factory=EngineSection)
    synth: SynthConfig = Field(default_factory=SynthConfig)
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
    def _synth_model(cls, v: SynthConfig) -> SynthConfig:
        if "model" in v.model_fields_set:
            raise ValueError("'model' belongs at the top level of a run recipe (each iteration uses the latest model)")
        return v
