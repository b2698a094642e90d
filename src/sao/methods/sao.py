"""SAO (Yin et al., 2025): the model writes personas and their prompts, answers each twice, ranks its own
answers, and trains on the best-vs-worst pairs with SimPO. docs/synth.md describes each stage.

The stages live in `sao.stages` (they are SAO's alone); this module states how they make a method.
"""

from __future__ import annotations

from sao.judge.config import SAR
from sao.judge.sar import sar_needs
from sao.methods.method import Method, Stage, StageContext
from sao.rain.config import rain_needs
from sao.stage import StageResult
from sao.stages import judge, pairs, personas, prompts, responses, sar_judge
from sao.synth.config import SynthConfig
from sao.synth.report import write_report


def _personas(ctx: StageContext) -> StageResult:
    return personas.run_personas(ctx.engine, ctx.section, ctx.store, chunk_size=ctx.chunk_size, progress=ctx.progress)


def _prompts(ctx: StageContext) -> StageResult:
    return prompts.run_prompts(ctx.engine, ctx.section, ctx.store, chunk_size=ctx.chunk_size, progress=ctx.progress)


def _responses(ctx: StageContext) -> StageResult:
    return responses.run_responses(ctx.engine, ctx.section, ctx.store, chunk_size=ctx.chunk_size, progress=ctx.progress)


def _judgements(ctx: StageContext) -> StageResult:
    assert ctx.judge is not None  # the loop builds SAO's judge: it names one
    run = sar_judge.run_sar_judgements if ctx.section.judge.signal == SAR else judge.run_judgements
    return run(ctx.judge, ctx.section, ctx.store, chunk_size=ctx.chunk_size, progress=ctx.progress)


def _pairs(ctx: StageContext) -> StageResult:
    return pairs.run_pairs(ctx.section, ctx.store, progress=ctx.progress)


def _personas_skipped(section: SynthConfig) -> str | None:
    return "prompts.no_personas" if section.prompts.no_personas else None


def for_iteration(section: SynthConfig, index: int, model: str) -> SynthConfig:
    """Iteration k synthesises with the latest model and seed + k - 1, so that it draws new personas."""
    return section.model_copy(update={"model": model, "seed": section.seed + index - 1})


METHOD = Method(
    name="sao",
    summary="Self-written persona prompts, two sampled answers each, ranked by the model itself; SimPO on the pairs.",
    section=SynthConfig,
    stages=(
        Stage(personas.STAGE, _personas, skipped=_personas_skipped),
        Stage(prompts.STAGE, _prompts),
        Stage(responses.STAGE, _responses, needs=lambda section: rain_needs(section.responses.rain)),
        # The prompted judge reads log-probs where the engine gives them, else generated rankings (counted), so
        # it needs no capability; SAR needs scores of token ids.
        Stage(judge.STAGE, _judgements, role="judge", needs=sar_needs),
        Stage(pairs.STAGE, _pairs, role="none"),
    ),
    trainer="simpo",
    training_data=pairs.STAGE,
    columns=frozenset({"prompt", "chosen", "rejected"}),
    report=write_report,
    judge=lambda section: section.judge,
    for_iteration=for_iteration,
    empty_hint="raise synth.num_prompts or lower synth.judge.margin",
    doc="docs/synth.md",
)
