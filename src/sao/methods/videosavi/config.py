"""The ``synth:`` section of ``method: videosavi`` (Kulkarni & Fazli, arXiv 2412.00624). Field help feeds
docs/recipes.md; docs/methods/videosavi.md says where each default comes from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sao.recipe import Section

QUESTION_TYPES = ("what", "why", "how")


class VideoSection(Section):
    source: str = Field(
        description="The videos: a folder (every .mp4/.avi/.mov/.mkv/.webm/... file in it, subfolders included) or "
        'a JSONL file of {"video": path relative to the file, "caption": optional text}.'
    )
    num_frames: int = Field(
        4,
        ge=1,
        le=64,
        description="Frames sampled uniformly from each video, first and last included (paper v1 code: 4; v3: 32).",
    )
    max_videos: int | None = Field(None, ge=1, description="Use only the first N videos of the source (none: all).")


class QuestionSection(Section):
    per_type: int = Field(1, ge=1, le=8, description="Questions kept of each type (What, Why, How) per video.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature of the question writing.")
    max_new_tokens: int = Field(256, ge=16, description="Token budget of one video's questions.")


class AnswerSection(Section):
    temperatures: list[float] = Field(
        [0.3, 0.5, 0.7, 0.9, 1.0],
        min_length=2,
        description="One candidate answer per temperature (paper: five, at 0.3, 0.5, 0.7, 0.9 and 1.0).",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus mass of every candidate.")
    max_new_tokens: int = Field(256, ge=8, description="Token budget of one answer.")

    @field_validator("temperatures")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(t <= 0 for t in value):
            raise ValueError("every temperature must be > 0 (sampled candidates; 0 would repeat the greedy answer)")
        return value


class EvaluationSection(Section):
    max_new_tokens: int = Field(64, ge=16, description="Token budget of one rubric (four score lines).")


class ClipSection(Section):
    model: str | None = Field(
        None,
        description="The CLIP or SigLIP model that checks each pair (a directory or hub id, loaded with "
        "AutoModel/AutoProcessor, safetensors only): if the rejected answer is closer to the frames than the chosen "
        "one, they swap. None: no filter.",
    )
    device: str = Field("auto", description="Where the scorer runs: auto (CUDA when present), cpu, cuda, ...")


class CritiqueSection(Section):
    temperature: float = Field(
        0.7,
        ge=0,
        description="Sampling temperature of the first answer a0, the critique and the revision a1 (0: greedy).",
    )
    max_new_tokens: int = Field(256, ge=8, description="Token budget of each answer, critique and revision.")


class VideoSAViConfig(Section):
    variant: Literal["dpo", "critique"] = Field(
        "dpo",
        description="dpo (paper v1): five candidates, self-evaluated on a rubric, best over worst, CLIP-checked. "
        "critique (v2/v3): the model answers, critiques its answer against the frames and revises; the revision "
        "is chosen over the first answer.",
    )
    videos: VideoSection
    questions: QuestionSection = Field(default_factory=QuestionSection)
    answers: AnswerSection = Field(default_factory=AnswerSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    clip: ClipSection = Field(default_factory=ClipSection)
    critique: CritiqueSection = Field(default_factory=CritiqueSection)
    seed: int = Field(0, description="Base seed; every request's seed derives from it, the iteration and its row id.")
