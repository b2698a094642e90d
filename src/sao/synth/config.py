"""The synth recipe: one section per stage. Every field carries its help text, which the docs reuse."""

from __future__ import annotations

from pydantic import Field, field_validator

from sao.judge.config import SynthJudgeSection, require_fields
from sao.rain.config import RainResponses, RainSection, rain_field
from sao.recipe import Section
from sao.synth.personas import PERSONA_TEMPLATE
from sao.synth.prompts import NO_PERSONA_TEMPLATE, PROMPT_TEMPLATE


class PersonaConfig(Section):
    source: str = Field(
        "self",
        description="'self' (the model writes personas from seed attributes), a .jsonl (field 'persona'), "
        ".txt (one per line) or .parquet file, or 'hf:NAME' / 'hf:NAME:CONFIG' for a HF dataset "
        "(the paper uses hf:proj-persona/PersonaHub:persona).",
    )
    template: str = Field(PERSONA_TEMPLATE, description="Persona-writing request (source 'self').")
    prefill_marker: bool = Field(
        True, description="Start the model's answer with 'Persona:' (small models ignore the format otherwise)."
    )
    temperature: float = Field(0.8, ge=0, description="Sampling temperature for self-generated personas.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass for self-generated personas.")
    max_new_tokens: int = Field(96, ge=8, description="Token budget of one self-generated persona.")
    max_chars: int = Field(600, ge=10, description="Longer personas are dropped as too_long.")
    dedup_threshold: float = Field(
        0.7, gt=0, le=1, description="Word 3-gram Jaccard at or above which personas are near-duplicates."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        return require_fields(v, "occupation", "interest", "situation", "expertise")


class PromptConfig(Section):
    template: str = Field(PROMPT_TEMPLATE, description="Role-play request; {persona} is replaced by the persona.")
    no_personas: bool = Field(False, description="Ablation: ask for prompts with no persona (no_persona_template).")
    prefill_marker: bool = Field(
        True,
        description="Start the model's answer with 'User prompt:'. The paper's 7-9B models follow the format "
        "unaided; SmolLM2-135M mostly does not. Set false for the paper's exact protocol.",
    )
    no_persona_template: str = Field(NO_PERSONA_TEMPLATE, description="Request used when no_personas is set.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature for prompts.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass for prompts.")
    max_new_tokens: int = Field(128, ge=8, description="Token budget of one prompt; cut-off prompts are dropped.")
    max_chars: int = Field(1000, ge=10, description="Longer prompts are dropped as too_long.")
    min_words: int = Field(3, ge=1, description="Shorter prompts (a bare 'Hi Sarah,') are dropped as too_short.")
    dedup_threshold: float = Field(
        0.7, gt=0, le=1, description="Word 3-gram Jaccard at or above which prompts are near-duplicates."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        return require_fields(v, "persona")


class ResponseConfig(RainResponses):
    k: int = Field(2, ge=2, description="Responses sampled per prompt.")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (the paper's 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass (the paper's 0.95).")
    max_new_tokens: int = Field(256, ge=8, description="Token budget; responses cut off by it are not used.")
    rain: RainSection | None = rain_field()


class SynthConfig(Section):
    model: str = Field(
        "smollm2-135m",
        description="Model alias, local directory or HF hub id (`sao synth` only; a run recipe sets `model`).",
    )
    num_prompts: int = Field(64, ge=1, description="Personas drawn, hence prompts requested.")
    seed: int = Field(0, description="Seed for persona sampling and every row's sampling.")
    personas: PersonaConfig = Field(default_factory=PersonaConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    responses: ResponseConfig = Field(default_factory=ResponseConfig)
    judge: SynthJudgeSection = Field(default_factory=SynthJudgeSection)
