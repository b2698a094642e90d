"""The decoding strategy (``decoding.strategy`` and ``decoding.rain``): plain sampling (the default) or
RAIN's rewindable search.

Every number of the search is a field; the defaults are the official code's for HH (maxT 50, minT 6, Vt 0.8,
c 2, 10 candidates, sets of 1, 2, 4 then 10 tokens, top-k 15, root prior mix 0.25, similarity 0.95 / 0.2,
node addition below 20 children and 0.03 x set length of embedding spread, 2048 tokens).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from sao.engine.capabilities import Capability
from sao.omit import OmitWhenNone
from sao.rain.evaluate import CRITERIA, Criterion
from sao.rain.search import SearchSettings
from sao.rain.tree import TreeSettings
from sao.recipe import Section

# What RAIN's search asks of the engine it wraps: next-token top-k, token-id prompts, the evaluation's log-probs.
RAIN_NEEDS = frozenset({Capability.TOP_LOGPROBS, Capability.TOKEN_PROMPTS, Capability.SCORE})

# The RAIN settings that change what it writes, and so enter an engine's identity (`decoding_identity`).
_SEARCH_FIELDS = (
    "max_iterations",
    "min_visits",
    "value_threshold",
    "min_new_iterations",
    "exploration",
    "width",
    "set_lengths",
    "sample_top_k",
    "root_prior_mix",
    "similarity_threshold",
    "similarity_weight",
    "max_children",
    "variance_threshold",
    "max_length",
    "criterion",
    "question",
    "good",
    "bad",
    "embedder",
)


class RainSection(Section):
    """RAIN (Li et al., ICLR 2024): search over token sets, self-evaluate, rewind from what is judged bad."""

    max_iterations: int = Field(
        50, ge=1, description="maxT: inner iterations a step may run (counting the root's earlier visits)."
    )
    min_visits: int = Field(
        6, ge=0, description="minT: a step commits early once its most visited child has more whole visits than this..."
    )
    value_threshold: float = Field(0.8, ge=-1, le=1, description="Vt: ...and a mean self-evaluation above this.")
    min_new_iterations: int = Field(
        15, ge=1, description="Iterations a step may always run, however many visits its root already has."
    )
    exploration: float = Field(2.0, gt=0, description="c of the PUCT bound q̂ + c·p·√N/(1+n).")
    width: int = Field(10, ge=2, description="Candidate token sets per expansion.")
    set_lengths: list[int] = Field(
        [1, 2, 4, 10], min_length=1, description="Tokens per set by depth; the last repeats."
    )
    sample_top_k: int = Field(15, ge=1, description="top-k of the sampled sets longer than one token.")
    root_prior_mix: float = Field(
        0.25, ge=0, le=1, description="Share of the uniform prior mixed into the root's children."
    )
    similarity_threshold: float = Field(0.95, ge=-1, le=1, description="Cosine above which a sibling shares a visit.")
    similarity_weight: float = Field(0.2, ge=0, description="Weight of a shared visit, times the cosine.")
    max_children: int = Field(20, ge=1, description="Dynamic node addition stops at this many children.")
    variance_threshold: float = Field(
        0.03,
        ge=0,
        description="Children whose embedding spread is below this x set length (and all judged bad) "
        "get one more sibling.",
    )
    max_length: int = Field(2048, ge=2, description="Prompt plus answer tokens at most.")
    criterion: Literal["harmless", "truthful", "custom"] = Field(
        "harmless",
        description="What the self-evaluation asks: harmlessness, truthfulness, or your own (question, good, bad).",
    )
    question: str | None = Field(None, description="criterion custom: the question about the assistant's reply.")
    good: str | None = Field(None, description="criterion custom: the option a good reply earns.")
    bad: str | None = Field(None, description="criterion custom: the option a bad reply earns.")
    embedder: str = Field(
        "all-minilm-l6-v2", description="Sentence embedder of node texts: the embedded MiniLM, a directory or a hub id."
    )
    batch_prompts: bool = Field(
        True, description="Batch the engine requests of all prompts in flight (off: one prompt at a time)."
    )

    @model_validator(mode="after")
    def _custom_needs_options(self) -> RainSection:
        given = {name: getattr(self, name) for name in ("question", "good", "bad")}
        if self.criterion == "custom":
            missing = [name for name, value in given.items() if not value]
            if missing:
                raise ValueError(f"{missing[0]}: criterion 'custom' needs question, good and bad")
        elif any(given.values()):
            name = next(n for n, v in given.items() if v)
            raise ValueError(f"{name}: only criterion 'custom' takes its own question and options")
        if any(length < 1 for length in self.set_lengths):
            raise ValueError("set_lengths: every length must be >= 1")
        return self

    def evaluation_criterion(self) -> Criterion:
        if self.criterion == "custom":
            return Criterion(question=self.question, good=self.good, bad=self.bad)  # type: ignore[arg-type]
        return CRITERIA[self.criterion]

    def search_settings(self) -> SearchSettings:
        tree = TreeSettings(
            exploration=self.exploration,
            set_lengths=tuple(self.set_lengths),
            root_prior_mix=self.root_prior_mix,
            similarity_threshold=self.similarity_threshold,
            similarity_weight=self.similarity_weight,
            max_children=self.max_children,
            variance_threshold=self.variance_threshold,
        )
        return SearchSettings(
            tree=tree,
            max_iterations=self.max_iterations,
            min_visits=self.min_visits,
            value_threshold=self.value_threshold,
            min_new_iterations=self.min_new_iterations,
            width=self.width,
            sample_top_k=self.sample_top_k,
            criterion=self.evaluation_criterion(),
        )


class StrategySection(Section):
    """How answers are decoded: ``sample`` (the engine's own sampling) or ``rain``. Commands that decode take
    these two fields in their ``decoding`` section."""

    strategy: Literal["sample", "rain"] = Field("sample", description="sample: plain sampling; rain: RAIN's search.")
    rain: RainSection = Field(default_factory=RainSection)


def decoding_identity(decoding: StrategySection) -> dict[str, Any]:
    """What a manifest records of the decoding, so that a resume with other RAIN settings is refused; empty for
    plain sampling, so that manifests written before RAIN existed still match."""
    if decoding.strategy == "sample":
        return {}
    return {"decoding": {"strategy": "rain", **{name: getattr(decoding.rain, name) for name in _SEARCH_FIELDS}}}


class DecodingOverrides(Section):
    """The ``--set decoding.*`` overrides of a command that has no recipe section of its own (``sao chat``)."""

    decoding: StrategySection = Field(default_factory=StrategySection)


class RainResponses(OmitWhenNone, Section):
    """A response stage's sampling section, with RAIN as an option for one of each prompt's answers: subclasses
    declare ``rain: RainSection | None = rain_field()`` after their own fields. It is written only when set, so a
    section without it hashes as it did before RAIN."""

    omit_when_none = ("rain",)


def rain_field() -> Any:
    return Field(
        None,
        description="When set, the last of each prompt's k answers is decoded by RAIN with these settings "
        "(`sao.rain`; the other k - 1 are sampled as above), so that the judge can pick RAIN's answer as the "
        "chosen side. Needs an engine with top_logprobs, token_prompts and score. Pair stats count the pairs "
        "whose chosen or rejected side RAIN wrote.",
    )


def rain_needs(rain: RainSection | None) -> frozenset[Capability]:
    """What a stage that decodes some answers with ``rain`` needs of its engine (nothing without it)."""
    return RAIN_NEEDS if rain is not None else frozenset()
