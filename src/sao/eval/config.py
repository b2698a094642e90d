"""The ``sao eval`` and ``sao judge-eval`` settings. Field descriptions feed docs/recipes.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sao.embedded_models import DEFAULT_MODEL
from sao.engine.config import EngineSection
from sao.recipe import Section
from sao.synth.config import require_fields
from sao.synth.ranking import JUDGE_TEMPLATE


class DecodingSection(Section):
    """How candidate and baseline models answer the instructions; recorded in each generation manifest."""

    temperature: float = Field(0.7, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(512, ge=1, description="Token budget of one answer; longer answers are cut.")
    seed: int = Field(0, description="Base seed; each instruction's seed derives from it and the instruction id.")
    system: str | None = Field(None, description="System message put before every instruction.")


class PairJudgeSection(Section):
    """The pairwise judge: every pair is judged in both orders, and the two verdicts are averaged."""

    model: str = Field(
        "self",
        description="A model alias, local directory or HF hub id that judges every comparison, or 'self': each "
        "candidate judges its own comparison, as in SAO (then each win rate has a different judge, with its "
        "self-preference, and they do not compare). `sao eval --run` or a run recipe: default the starting model.",
    )
    mode: Literal["logprob", "generate"] = Field(
        "logprob",
        description="'logprob': P('1') vs P('2') after 'ranking: ' (a soft verdict); 'generate': decode the "
        "ranking greedily and parse it (a hard verdict; unparsable answers are counted and dropped).",
    )
    template: str = Field(JUDGE_TEMPLATE, description="Judge request; {prompt} and {responses} are filled in.")
    max_new_tokens: int = Field(16, ge=4, description="Token budget of a generated ranking (mode 'generate').")
    engine: EngineSection | None = Field(
        None,
        description="Engine of a named judge, e.g. backend 'openai' for a judge behind an OpenAI-compatible "
        "endpoint (model = the served model's name); default: the top-level engine section.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        return require_fields(v, "prompt", "responses")


class NamedJudgeSection(PairJudgeSection):
    model: str = Field(DEFAULT_MODEL, description="The judge under test: a model alias, local directory or HF hub id.")

    @field_validator("model")
    @classmethod
    def _named(cls, v: str) -> str:
        if v == "self":
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
    judge: PairJudgeSection = Field(default_factory=PairJudgeSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    n_boot: int = Field(200, ge=2, description="Bootstrap resamples for the LC win rate's standard error.")

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
