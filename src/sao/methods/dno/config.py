"""The ``synth:`` section of ``method: dno`` (DNO-Prct, Rosset et al. 2024, Algorithm 2). Field help feeds
docs/recipes.md; docs/methods/dno.md explains where each default comes from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sao.judge.config import JudgeSection, refuse_rain, require_fields
from sao.methods.dno.rubric import RUBRIC_TEMPLATE
from sao.rain.config import RainResponses, RainSection, rain_field
from sao.recipe import Section
from sao.synth.ranking import JUDGE_TEMPLATE


class DNOPromptSection(Section):
    source: str = Field(
        description="The prompt set: an AlpacaEval JSON/JSONL, MT-Bench question.jsonl or plain JSONL file "
        "(`prompt` or `messages`, optional `id`), read as `sao eval` reads instructions; or 'hf:NAME' / "
        "'hf:NAME:CONFIG' for the train split of a HF dataset (column `field`)."
    )
    field: str = Field("prompt", description="The prompt column of a HF dataset source.")
    gold: str | None = Field(
        None,
        description="Optional gold answers y_gold (e.g. a teacher's), an answer file keyed by the prompts' ids "
        "(AlpacaEval outputs or JSONL with id/output). Prompts without one have only policy samples.",
    )
    per_iteration: int = Field(64, ge=1, description="Prompts in each iteration's split D_t (splits never overlap).")
    validation: int = Field(
        16, ge=0, description="Prompts held out, before any split, to choose the best iterate on (0: none)."
    )
    seed: int = Field(0, description="Seed of the shuffle that deals the prompt set into splits.")


class DNOSampleSection(RainResponses):
    k: int = Field(5, ge=2, description="Samples from the current policy per prompt (paper: 5).")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (paper: 0.7).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus mass (paper: 0.95).")
    max_new_tokens: int = Field(512, ge=8, description="Token budget; samples cut off by it are not scored.")
    seed: int = Field(0, description="Base seed; each prompt's seed derives from it, the iteration and its id.")
    rain: RainSection | None = rain_field()


class DNOJudgeSection(JudgeSection):
    """Who scores the candidates (the policy itself with 'self', or any model on any engine), and how."""

    scoring: Literal["rubric", "pairwise"] = Field(
        "rubric",
        description="'rubric': one request per prompt scores every candidate 0-6 (the paper's annotator); "
        "'pairwise': sao's judge on every pair in both orders, debiased, each candidate scored 6 x its mean win "
        "probability (a log-prob verdict always parses, so small self-judges give scores too). Signal 'sar' "
        "replaces both: each candidate scores 3 x (R_SA + 1), its self-aligned reward on the same 0-6 scale.",
    )
    template: str = Field(
        RUBRIC_TEMPLATE,
        description="Scoring request; {prompt} and {responses} (the numbered candidates) are filled in. The judge "
        "answers one 'Response N: S' line per candidate, S from 0 to 6.",
    )
    max_new_tokens: int = Field(96, ge=8, description="Token budget of the judge's score lines.")
    prefill: bool = Field(
        True,
        description="Start the judge's answer with 'Response 1:' (small models ignore the format otherwise); "
        "false for a strong judge, e.g. one behind a chat API that takes no prefill.",
    )
    pairwise_template: str = Field(
        JUDGE_TEMPLATE, description="Pairwise request (scoring 'pairwise'); {prompt} and {responses} are filled in."
    )
    mode: Literal["logprob", "generate"] = Field(
        "generate",
        description="Scoring 'pairwise': 'logprob' (P('1') vs P('2')) or 'generate' (a parsed ranking). The rubric "
        "is always generated.",
    )

    @model_validator(mode="after")
    def _template_fields(self) -> DNOJudgeSection:
        require_fields(self.template, "prompt", "responses")
        return refuse_rain(self)


class DNOPairSection(Section):
    min_positive: float = Field(
        5.0,
        ge=0,
        le=6,
        description="A positive must score at least this (paper: 5 of 6). Every threshold here is on the 0-6 scale "
        "whatever scores: with judge.signal 'sar' a score is 3 x (R_SA + 1), so 5 asks R_SA >= 2/3, and a gap "
        "of 1 is 1/3 in R_SA.",
    )
    gold_gap: float = Field(
        2.0,
        ge=0,
        description="Its negative must score this much lower when the positive is the gold answer (paper: 2).",
    )
    policy_gap: float = Field(
        1.0, ge=0, description="... and this much lower when the positive is a policy sample (paper: 1)."
    )
    repetition_ngram: int = Field(4, ge=2, description="Word n-gram size of the repetition check.")
    max_repeated_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="A sample whose share of repeated word n-grams exceeds this is a negative whatever its score.",
    )


class DNOMixSection(Section):
    previous: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Pairs from iteration t-1 mixed in, at most this share of iteration t's own pairs (paper: 30%); "
        "each earlier iteration gets half the share of the one after it (15% from t-2, ...).",
    )
    seed: int = Field(0, description="Seed of the draw of earlier pairs.")


class DNOConfig(Section):
    prompts: DNOPromptSection
    samples: DNOSampleSection = Field(default_factory=DNOSampleSection)
    judge: DNOJudgeSection = Field(default_factory=DNOJudgeSection)
    pairs: DNOPairSection = Field(default_factory=DNOPairSection)
    mix: DNOMixSection = Field(default_factory=DNOMixSection)
