"""SELF-ALIGN (Sun et al. 2023, "Principle-Driven Self-Alignment of Language Models from Scratch with Minimal
Human Supervision", arXiv 2305.03047) as a method.

Each iteration: the model brainstorms red-teaming topics and writes questions on them (and plain
self-instruct tasks); answers each under sao's principles and worked exemplars, thinking first which
rules apply; is fine-tuned on those answers under a short prompt alone (principle engraving); the
engraved model answers every prompt at length (verbose cloning); and the loop trains the starting
model on those answers (context distillation). docs/methods/self-align.md has the details.
"""

from __future__ import annotations

from typing import Any

from sao.methods.method import Method, Stage
from sao.methods.self_align import stages
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.lengths import compare_lengths
from sao.methods.self_align.report import write_report
from sao.methods.self_align.training import with_turns

RAW = frozenset({"raw_prompts"})


def _answer_needs(section: SelfAlignConfig) -> frozenset[str]:
    return RAW | ({"logit_bias"} if section.answers.logit_bias else set())


def _engrave_needs(section: SelfAlignConfig) -> frozenset[str]:
    return frozenset({"score"}) | (RAW if section.turns.chat_template == "text" else frozenset())


def _verbose_needs(section: SelfAlignConfig) -> frozenset[str]:
    return RAW | ({"ngram_penalty"} if section.verbose.penalty_ngram > 1 else set())


def _tasks_skipped(section: SelfAlignConfig) -> str | None:
    return "self_instruct.requests: 0" if section.self_instruct.requests == 0 else None


def for_iteration(section: SelfAlignConfig, index: int, model: str) -> SelfAlignConfig:
    """Iteration k starts from the latest model, with seeds moved on so that it writes new prompts."""
    return section.model_copy(update={"model": model, "seed": section.seed + index - 1})


def train_config(section: SelfAlignConfig, train: Any) -> Any:
    return with_turns(section, train)


METHOD = Method(
    name="self_align",
    summary="SELF-ALIGN: red-teaming and self-instruct prompts, principle-driven answers, principle engraving (SFT), "
    "verbose cloning; SFT of the starting model.",
    section=SelfAlignConfig,
    stages=(
        Stage(stages.TOPICS, stages.run_topics, needs=RAW),
        Stage(stages.QUESTIONS, stages.run_questions, needs=RAW),
        Stage(stages.TASKS, stages.run_tasks, needs=RAW, skipped=_tasks_skipped),
        Stage(stages.PROMPTS, stages.run_prompts, role="none"),
        Stage(stages.ANSWERS, stages.run_answers, needs=_answer_needs),
        Stage(stages.HELD_OUT, stages.run_held_out, role="none"),
        Stage(stages.ENGRAVE_DATA, stages.run_engrave_data, role="none"),
        Stage(stages.ENGRAVE, stages.run_engrave, needs=_engrave_needs),
        Stage(stages.VERBOSE, stages.run_verbose, needs=_verbose_needs),
        Stage(stages.TRAINING, stages.run_training, role="none"),
    ),
    trainer="sft",
    training_data=stages.TRAINING,
    columns=frozenset({"prompt", "completion"}),
    report=write_report,
    for_iteration=for_iteration,
    train_config=train_config,
    empty_hint="raise synth.prompts.total, synth.topics.rounds or synth.self_instruct.requests, or lower "
    "synth.answers.min_chars / synth.verbose.min_chars",
    doc="docs/methods/self-align.md",
    finish=compare_lengths,
)
