"""SAR (Han et al. 2025, "Self-Aligned Reward", arXiv 2509.05489) as a method: GRPO on verifiable tasks,
rewarded by correctness plus the self-aligned reward.

Each iteration draws its own training tasks (prompt + reference answer); GRPO (`sao.train.grpo`) samples
a group of answers per prompt on the live policy and rewards each with r = R_VR + α·R_SA: 1 for a correct
final ``Answer:``, plus α times how much more likely the question makes the answer under the current
policy (`sao.rewards.sar`). After the last iteration every model answers the held-out tasks greedily and
is scored on correctness alone (`sao.methods.sar.accuracy`). docs/methods/sar.md has the details.
"""

from __future__ import annotations

from sao.methods.method import Method, Stage
from sao.methods.sar import stages
from sao.methods.sar.accuracy import compare_accuracy
from sao.methods.sar.config import SARConfig
from sao.methods.sar.report import write_report

METHOD = Method(
    name="sar",
    summary="SAR: GRPO on verifiable tasks, rewarded by correctness + 0.2 x the self-aligned reward (the answer's "
    "perplexity with vs without the query, under the current policy).",
    section=SARConfig,
    stages=(
        Stage(stages.HELD_OUT, stages.run_held_out, role="none"),
        Stage(stages.TASKS, stages.run_tasks, role="none"),
    ),
    trainer="grpo",
    training_data=stages.TASKS,
    columns=frozenset({"prompt", "answer"}),
    report=write_report,
    empty_hint="raise synth.prompts_per_iteration, or give synth.tasks more rows than synth.held_out",
    doc="docs/methods/sar.md",
    finish=compare_accuracy,
)
