"""VideoSAVi (Kulkarni & Fazli, "VideoSAVi: Self-Aligned Video Language Models without Human Supervision",
arXiv 2412.00624) as a method: a video language model writes What / Why / How questions about each video,
answers each five times, scores its own answers on a rubric while seeing the frames, keeps best over worst
(checked by CLIP), and trains with DPO. ``variant: critique`` is the v3 loop: answer, self-critique, revise,
and prefer the revision. docs/methods/videosavi.md has the details and what differs from the paper.
"""

from __future__ import annotations

from sao.engine.capabilities import Capability
from sao.methods.method import Method, Stage
from sao.methods.videosavi import stages
from sao.methods.videosavi.config import VideoSAViConfig
from sao.methods.videosavi.report import write_report

MULTIMODAL = frozenset({Capability.MULTIMODAL})


def _only(variant: str):  # noqa: ANN202 - a Stage.skipped predicate
    def skipped(section: VideoSAViConfig) -> str | None:
        return None if section.variant == variant else f"variant is {section.variant}"

    return skipped


METHOD = Method(
    name="videosavi",
    summary="VideoSAVi: a video LM asks What/Why/How questions of each video, answers five times, rubric-scores "
    "its own answers, CLIP-checks best over worst; DPO (or v3: critique and revise).",
    section=VideoSAViConfig,
    stages=(
        Stage(stages.VIDEOS, stages.run_videos, role="none"),
        Stage(stages.QUESTIONS, stages.run_questions, needs=MULTIMODAL),
        Stage(stages.ANSWERS, stages.run_answers, needs=MULTIMODAL, skipped=_only("dpo")),
        Stage(stages.EVALUATIONS, stages.run_evaluations, needs=MULTIMODAL, skipped=_only("dpo")),
        Stage(stages.DRAFTS, stages.run_drafts, needs=MULTIMODAL, skipped=_only("critique")),
        Stage(stages.CRITIQUES, stages.run_critiques, needs=MULTIMODAL, skipped=_only("critique")),
        Stage(stages.REVISIONS, stages.run_revisions, needs=MULTIMODAL, skipped=_only("critique")),
        Stage(stages.PAIRS, stages.run_pairs, role="none"),
    ),
    trainer="dpo",
    training_data=stages.PAIRS,
    columns=frozenset({"prompt", "chosen", "rejected"}),
    report=write_report,
    empty_hint="add videos (synth.videos.source), raise synth.questions.per_type, or check the rubric parse "
    "failures in evaluations.jsonl",
    doc="docs/methods/videosavi.md",
)
