"""The ``synth:`` section of ``method: sar``: where the verifiable tasks come from and how they are split.
Field descriptions feed docs/recipes.md; GRPO's own settings are ``train.grpo``."""

from __future__ import annotations

from pydantic import Field

from sao.recipe import Section
from sao.rewards.tasks import TaskSource


class SAREvalSection(Section):
    """The held-out check after the last iteration (`sao.methods.sar.accuracy`)."""

    max_new_tokens: int = Field(512, ge=1, description="Token budget of each greedy held-out answer.")


class SARConfig(Section):
    tasks: TaskSource = Field(default_factory=TaskSource, description="The verifiable task set (prompt + answer).")
    prompts_per_iteration: int = Field(
        32, ge=1, description="Training prompts per iteration; GRPO samples train.grpo.num_generations answers each."
    )
    held_out: int = Field(50, ge=1, description="Held-out tasks every model answers after the last iteration.")
    seed: int = Field(
        0,
        description="Training draw: the generator's seed for iteration k is seed + k; a file or dataset is "
        "shuffled with it once, held-out tasks first, then one disjoint slice per iteration.",
    )
    held_out_seed: int = Field(
        1_000_003,
        description="The generator's seed for the held-out tasks (a different seed from every training draw; "
        "a training problem whose question is held out is dropped all the same).",
    )
    system: str | None = Field(None, description="A system prompt before every task (none by default).")
    eval: SAREvalSection = Field(default_factory=SAREvalSection)
