"""DNO-Prct (Rosset et al. 2024, "Direct Nash Optimization", arXiv 2404.03715, Algorithm 2) as a method.

Each iteration takes its own split of a prompt set, samples K answers from the current policy,
has a judge score every candidate (and a gold answer where there is one) on a 0-6 rubric, keeps
large-margin pairs, mixes in capped shares of earlier iterations' pairs, and trains with DPO
against the previous iterate. docs/methods/dno.md has the details and what differs from the paper.
"""

from __future__ import annotations

from sao.judge.sar import sar_needs
from sao.methods.dno import stages
from sao.methods.dno.config import DNOConfig
from sao.methods.dno.report import write_report
from sao.methods.dno.selection import select_iterate
from sao.methods.method import Method, Stage
from sao.rain.config import rain_needs

METHOD = Method(
    name="dno",
    summary="DNO-Prct: K on-policy samples per prompt split, rubric-scored, large-margin pairs mixed with earlier "
    "ones; DPO against the previous iterate.",
    section=DNOConfig,
    stages=(
        Stage(stages.PROMPTS, stages.run_prompts, role="none"),
        Stage(stages.SAMPLES, stages.run_samples, needs=lambda section: rain_needs(section.samples.rain)),
        Stage(stages.SCORES, stages.run_scores, role="judge", needs=sar_needs),
        Stage(stages.PAIRS, stages.run_pairs, role="none"),
        Stage(stages.TRAINING, stages.run_training, role="none"),
    ),
    trainer="dpo",
    training_data=stages.TRAINING,
    columns=frozenset({"prompt", "chosen", "rejected"}),
    report=write_report,
    judge=lambda section: section.judge,
    empty_hint="raise synth.prompts.per_iteration or synth.samples.k, or lower synth.pairs.min_positive",
    doc="docs/methods/dno.md",
    finish=select_iterate,
)
