"""The ``sao eval`` and ``sao judge-eval`` settings. Field descriptions feed docs/recipes.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sao.embedded_models import DEFAULT_MODEL
from sao.engine.config import EngineSection
from sao.judge.config import RAIN, SAR, SELF, JudgeSection
from sao.rain.config import StrategySection
from sao.recipe import Section


class DecodingSection(StrategySection):
    """How candidate and baseline models answer the instructions; recorded in each generation manifest. With
    ``strategy: rain`` the candidates answer by RAIN and the baseline by plain sampling (RAIN against vanilla
    when both are the same model)."""

    temperature: float = Field(0.7, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(512, ge=1, description="Token budget of one answer; longer answers are cut.")
    seed: int = Field(0, description="Base seed; each instruction's seed derives from it and the instruction id.")
    system: str | None = Field(None, description="System message put before every instruction.")


class NamedJudgeSection(JudgeSection):
    """The shared judge section with a named model: judge-eval has no candidate to judge itself."""

    model: str = Field(DEFAULT_MODEL, description="The judge under test: a model alias, local directory or HF hub id.")

    @field_validator("model")
    @classmethod
    def _named(cls, v: str) -> str:
        if v == SELF:
            raise ValueError("judge-eval has no candidate to be 'self'; name the judge model")
        return v


class EvalConfig(Section):
    instructions: str = Field(
        description="Instruction set: AlpacaEval JSON/JSONL, MT-Bench question.jsonl or plain JSONL."
    )
    turns: Literal["first", "all"] = Field(
        "first",
        description="MT-Bench: answer and judge the first turn only, or every turn as one conversation (each "
        "model answers turn 2 after its own turn-1 answer; the judge sees both turns).",
    )
    candidates: list[str] = Field(
        min_length=1,
        description="Models A to evaluate: each a model (alias, local directory or HF hub id) whose answers are "
        "generated, or an answer file (AlpacaEval model_outputs.json, MT-Bench answer file or JSONL with "
        "id/output) whose answers are judged as they are.",
    )
    names: list[str] = Field(
        default_factory=list,
        description="Display names of the candidates, in order (default: from the alias, directory or file).",
    )
    baseline: str = Field(description="Baseline B: a model or an answer file, as for candidates.")
    baseline_name: str | None = Field(None, description="Display name of the baseline.")
    limit: int | None = Field(None, ge=1, description="Use only the first N instructions (a quick look).")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own Python code.")
    decoding: DecodingSection = Field(default_factory=DecodingSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    n_boot: int = Field(200, ge=2, description="Bootstrap resamples for the LC win rate's standard error.")

    @field_validator("judge")
    @classmethod
    def _prompted(cls, v: JudgeSection) -> JudgeSection:
        if v.signal == SAR:
            raise ValueError(
                "signal: 'sar' chooses pairs in synthesis and is measured by judge-eval; sao eval's win "
                "rates are the prompted judge's"
            )
        if v.signal == RAIN:
            raise ValueError(
                "signal: 'rain' measures RAIN's self-evaluator in judge-eval; sao eval's win rates are the prompted "
                "judge's (decoding.strategy: rain answers the candidates by RAIN)"
            )
        return v

    @model_validator(mode="after")
    def _names(self) -> EvalConfig:
        if self.names and len(self.names) != len(self.candidates):
            raise ValueError(f"names: {len(self.names)} names for {len(self.candidates)} candidates")
        return self


class JudgeEvalConfig(Section):
    pairs: str = Field(description="Labelled pairs, JSONL: prompt, response_a, response_b, label (a, b or tie).")
    judge: NamedJudgeSection = Field(default_factory=NamedJudgeSection)
    limit: int | None = Field(None, ge=1, description="Use only the first N pairs.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own Python code.")
    engine: EngineSection = Field(default_factory=EngineSection)
