"""Stage 3, principle engraving: SFT of the starting model on the principle-driven answers under the short
prompt alone, and the measure that it took: log p(answer | short prompt) on held-back answers, before and
after. Training is `sao.train.run.run_train` (resumable from its checkpoints, skipped once done)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sao.engine.types import Engine
from sao.errors import SaoError
from sao.methods.method import StageContext
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.rows import short_prompt
from sao.methods.self_align.turns import Turns
from sao.stage import StageResult
from sao.train.config import TrainConfig

STAGE = "engrave"


def with_turns(section: SelfAlignConfig, train: TrainConfig) -> TrainConfig:
    """``train`` with the chat template of the turn format when the recipe asks for one (turns 'text')."""
    if section.turns.chat_template == "text" and train.chat_template is None:
        return train.model_copy(update={"chat_template": Turns.of(section).chat_template()})
    return train


def held_out_logprobs(engine: Engine, section: SelfAlignConfig, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over the held-out rows of log p(answer | short prompt): summed over the answer's tokens, and per token."""
    if not rows:
        return {}
    prompts = [short_prompt(section, r["prompt"][-1]["content"]) for r in rows]
    scored = engine.score(prompts, [r["completion"][0]["content"] for r in rows])
    return {
        "total": round(sum(s.total for s in scored) / len(scored), 4),
        "per_token": round(sum(s.mean for s in scored) / len(scored), 5),
    }


def release(engine: Any) -> None:
    """Free a lazy engine's model (`sao.engine.lazy.LazyEngine.release`); another engine keeps its own."""
    free = getattr(engine, "release", None)
    if free is not None:
        free()


def engrave(ctx: StageContext, data: Path, held_out: list[dict[str, Any]], model_dir: Path) -> StageResult:
    """Train the engraved model into ``model_dir`` and record the held-out log-probs in the stage's stats."""
    from sao.train.run import run_train

    section: SelfAlignConfig = ctx.section
    store = ctx.store
    if not store.manifest.stages["engrave_data"].rows:
        raise SaoError(
            f"{store.root}: no principle-driven answer was kept to engrave (see answers in report.md); raise "
            "synth.prompts.total, lower synth.answers.min_chars, or lower synth.engrave.held_out"
        )
    store.stage_started(STAGE)
    before = held_out_logprobs(ctx.engine, section, held_out)
    release(ctx.engine)  # the generation model's memory goes back before training
    result = run_train(
        with_turns(section, section.engrave.train),
        section.model,
        data,
        store.root / "engrave",
        model_dir=model_dir,
        force=store.force,
        progress=ctx.progress,
        trust_remote_code=ctx.trust_remote_code,
    )
    assert ctx.engine_for is not None  # the loop and `sao synth` give one
    # The same lazy engine verbose cloning generates with next (`run_synth` keeps one per model), so the
    # engraved model loads once; the verbose stage releases it.
    after = held_out_logprobs(ctx.engine_for(str(result.model_dir)), section, held_out)
    stats = {
        "model": str(result.model_dir),
        "held_out": len(held_out),
        "held_out_logprob_before": before,
        "held_out_logprob_after": after,
        "train": result.metrics,
    }
    store.stage_done(STAGE, rows=result.metrics.get("examples", 0), stats=stats)
    return StageResult(STAGE, total=result.metrics.get("examples", 0), written=0, skipped=0)
