"""The judge's recipe sections: who judges and how a verdict is read, shared by synthesis and eval,
and synthesis's extension with SAO's pair filter. Field descriptions feed docs/recipes.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from sao.engine.config import EngineSection
from sao.recipe import Section
from sao.synth.ranking import JUDGE_TEMPLATE

SELF = "self"
# The judge's signals: the judge model asked with a prompt, SAR (issue 18), or RAIN's self-evaluation (issue 19).
PROMPT, SAR, RAIN = "prompt", "sar", "rain"
SIGNALS = (SAR, RAIN)  # the ones that are not models: `sao judge-eval --judge sar` / `--judge rain`


def require_fields(template: str, *names: str) -> str:
    """``template``, checked to contain every ``{name}``; raises ValueError naming the missing ones.

    Shared by every recipe template (personas, prompts, the judge); it lives here because the synth
    sections import this module, so it cannot import theirs.
    """
    missing = [n for n in names if "{" + n + "}" not in template]
    if missing:
        raise ValueError(f"the template must contain {', '.join('{' + n + '}' for n in missing)}")
    return template


class JudgeSection(Section):
    """Who judges, and how one verdict is read. With signal 'prompt' every comparison is put to the judge as the
    same prompt; with 'sar' the judge model scores each answer alone (`sao.judge.sar`)."""

    model: str = Field(
        SELF,
        description="'self': the model that wrote the answers judges them (SAO's setting; in `sao eval` each "
        "candidate judges its own comparison, so each win rate has a different judge, with its self-preference, "
        "and they do not compare), or a model alias, local directory or HF hub id that judges every comparison. "
        "`sao eval` with `--run` or a run recipe: default the starting model.",
    )
    mode: Literal["logprob", "generate"] = Field(
        "logprob",
        description="'logprob': one forward pass, P('1') vs P('2') after 'ranking: ' (a soft verdict; an engine "
        "that cannot score falls back to 'generate'); 'generate': decode the ranking greedily and parse it "
        "(the paper's way; a hard verdict, unparsable answers are counted and dropped).",
    )
    template: str = Field(JUDGE_TEMPLATE, description="Judge request; {prompt} and {responses} are filled in.")
    max_new_tokens: int = Field(16, ge=4, description="Token budget of a generated ranking (mode 'generate').")
    max_answer_tokens: int | None = Field(
        None,
        ge=1,
        description="Cut each answer to its first this many tokens (the judge model's) before it goes into the "
        "judge prompt; default: whole answers. A judge reads every token of both answers, so long answers "
        "(AlpacaEval's) cost small machines seconds per verdict. Signal 'prompt' only.",
    )
    engine: EngineSection | None = Field(
        None,
        description="Engine of a named judge, e.g. backend 'openai' for a judge behind an OpenAI-compatible "
        "endpoint (model = the served model's name); default: the top-level engine section. A 'self' judge "
        "runs on the engine that wrote the answers.",
    )
    signal: Literal["prompt", "sar", "rain"] = Field(
        PROMPT,
        description="'prompt': the judge model is asked, with the judge prompt, which answer is better; 'sar': "
        "no prompt, each answer is scored alone by its self-aligned reward under the judge model (R_SA = "
        "1 - ppl(a|q) / ppl(a), Han et al. 2025; needs an engine with score and token_prompts), and answers "
        "are ranked by score. SAR shows no answer beside another, so it has no position bias; mode, template "
        "and the order settings do not apply to it. Synthesis and judge-eval take 'sar'; sao eval refuses it. "
        "'rain': each answer judged alone by RAIN's self-evaluation prompt (criterion: rain_criterion), in both "
        "option orders (`sao.judge.rain`); judge-eval only, to measure the evaluator RAIN decodes with.",
    )
    rain_criterion: Literal["harmless", "truthful"] = Field(
        "harmless", description="Signal 'rain': what the self-evaluation asks (`sao.rain.evaluate.CRITERIA`)."
    )

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        return require_fields(v, "prompt", "responses")

    @field_validator("model")
    @classmethod
    def _not_a_signal(cls, v: str) -> str:
        # `sao judge-eval --judge sar` reads 'sar' as the signal; in a recipe it would load a model called 'sar'.
        if v in SIGNALS:
            raise ValueError(f"'{v}' is a signal, not a model: set judge.signal: {v} (judge.model scores with it)")
        return v

    @model_validator(mode="after")
    def _engine_of_a_named_judge(self) -> JudgeSection:
        if self.model == SELF and self.engine is not None:
            raise ValueError("engine: a 'self' judge runs on the answering model's engine; name a judge model too")
        return self

    @model_validator(mode="after")
    def _cut_prompted_answers(self) -> JudgeSection:
        if self.max_answer_tokens is not None and self.signal != PROMPT:
            raise ValueError(
                f"max_answer_tokens: cuts the answers of a prompted judge; signal '{self.signal}' scores them whole"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return self.recorded(handler(self))

    def recorded(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (the section's fields) as manifests and rows record them: the signal only when it is not
        'prompt', RAIN's criterion only under 'rain' and the answer budget only when set, so that a prompted
        judge's files and config hashes are those written before SAR (issue 18) and the budget (issue 21)."""
        if self.signal == PROMPT:
            data.pop("signal", None)
        if self.signal != RAIN:
            data.pop("rain_criterion", None)
        if self.max_answer_tokens is None:  # files and hashes as before the budget existed (issue 21)
            data.pop("max_answer_tokens", None)
        return data


def refuse_rain(section: JudgeSection) -> Any:
    """``section``, or ValueError when it asks a synthesis judge (SAO's, DNO's) for signal 'rain'."""
    if section.signal == RAIN:
        raise ValueError(
            "signal: 'rain' measures RAIN's self-evaluator in judge-eval; synthesis ranks by 'prompt' or 'sar' "
            "(RAIN decodes with decoding.strategy: rain)"
        )
    return section


# The keys, in order, that synthesis's judge settings were written with before the judge could be another
# model (issue 15). A 'self' judge is still written so: pairs rows record these settings
# (generation.judge), and the synth manifest's config hash covers them, so SAO's files stay byte-identical
# and runs made before resume.
_SAO_KEYS = ("mode", "order", "swap_rule", "margin", "template", "max_new_tokens")


class SynthJudgeSection(JudgeSection):
    """The synthesis judge: the shared settings, plus SAO's filter on which judged pairs are kept."""

    order: Literal["swap", "single"] = Field("swap", description="'swap' judges both orders (position debiasing).")
    swap_rule: Literal["average", "agree"] = Field(
        "average",
        description="'average': keep when the debiased probability clears the margin; "
        "'agree': keep only when both orders prefer the same response.",
    )
    margin: float = Field(
        0.01,
        ge=0,
        lt=0.5,
        description="Keep a pair only when |p - 0.5| >= margin. SmolLM2-135M's debiased p rarely leaves 0.5 +- 0.03. "
        "Signal 'sar': keep it only when the chosen answer's R_SA beats the rejected one's by at least margin.",
    )

    @model_validator(mode="after")
    def _ranks(self) -> SynthJudgeSection:
        return refuse_rain(self)

    def recorded(self, data: dict[str, Any]) -> dict[str, Any]:
        data = super().recorded(data)
        if self.model == SELF and self.engine is None:
            data.pop("model", None)
            data.pop("engine", None)
        keys = [k for k in _SAO_KEYS if k in data] + [k for k in data if k not in _SAO_KEYS]
        return {k: data[k] for k in keys}
