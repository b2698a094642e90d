"""VideoSAVi's stages for one iteration, each a resumable `sao.stage.run_stage`:

- v1 (``variant: dpo``): videos (frames) -> questions (What / Why / How) -> answers (one candidate per
  temperature) -> evaluations (the model's rubric of each candidate, seeing the frames) -> pairs (best over
  worst, swapped where CLIP finds the rejected one closer to the video);
- v3 (``variant: critique``): videos -> questions -> drafts (a0) -> critiques -> revisions (a1) -> pairs (a1
  over a0).

Rows hold frame paths (`sao.video.frames`), never pixels; every request shows the model the frames first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sao.engine import SamplingParams, derive_seed
from sao.methods.method import StageContext
from sao.methods.videosavi import prompts
from sao.methods.videosavi.config import QUESTION_TYPES, VideoSAViConfig
from sao.methods.videosavi.parsing import parse_questions, parse_rubric
from sao.methods.videosavi.selection import best_and_worst, clip_swap
from sao.stage import StageResult, drop_stats, kept, run_stage
from sao.video.decode import VideoDecodeError, decode_frames
from sao.video.frames import save_frames
from sao.video.sources import VideoItem, read_videos

VIDEOS, QUESTIONS, ANSWERS, EVALUATIONS = "videos", "questions", "answers", "evaluations"
DRAFTS, CRITIQUES, REVISIONS, PAIRS = "drafts", "critiques", "revisions", "pairs"
FRAMES_DIR = "frames"


# ------------------------------------------------------------------------------------------------- rows
class VideoRow(BaseModel):
    id: str
    schema_version: int = 1
    video: str  # the file's path
    caption: str | None
    frame_indices: list[int]  # positions in the video of the frames below
    frames: list[str]  # the frame files, in order
    total_frames: int | None
    fps: float | None
    drop_reason: str | None = None
    error: str | None = None  # why the file could not be decoded


class QuestionSet(BaseModel):
    """One video's questions, as the model wrote them."""

    id: str  # the video's id
    schema_version: int = 1
    video: str
    frame_indices: list[int]
    output: str
    questions: list[dict[str, str]]  # {"type", "text"}
    drop_reason: str | None = None


class VideoQuestion(BaseModel):
    """One question to answer: an item of the answer stages, carrying its video and frames along."""

    id: str  # "<video id>-<type>-<k>"
    video_id: str
    video: str
    type: str
    question: str
    frame_indices: list[int]
    frames: list[str]


class Candidate(BaseModel):
    text: str
    temperature: float
    seed: int | None
    finish_reason: str


class AnswerSet(VideoQuestion):
    schema_version: int = 1
    candidates: list[Candidate]
    drop_reason: str | None = None


class RubricRow(BaseModel):
    index: int  # the candidate's
    output: str  # the model's rubric text
    relevance: float | None
    accuracy: float | None
    temporal_grounding: float | None
    clarity: float | None
    total: float | None  # None: the rubric did not parse


class Evaluation(BaseModel):
    id: str
    schema_version: int = 1
    rubrics: list[RubricRow]
    parse_failures: int
    drop_reason: str | None = None


class Generated(VideoQuestion):
    """A draft, a critique or a revision of one question (the critique variant)."""

    schema_version: int = 1
    text: str
    seed: int | None
    finish_reason: str
    drop_reason: str | None = None


class VideoPair(BaseModel):
    id: str
    schema_version: int = 1
    video: str
    type: str
    frame_indices: list[int]
    prompt: list[dict[str, Any]]  # the question after the video's frames (a video part: frame paths)
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    chosen_score: float | None  # rubric totals (v1); None in the critique variant
    rejected_score: float | None
    clip_chosen: float | None  # CLIP similarities to the video, when synth.clip.model is set
    clip_rejected: float | None
    clip_swapped: bool
    iteration: int
    drop_reason: str | None = None


# ------------------------------------------------------------------------------------------------ helpers
def _seed(ctx: StageContext, stage: str, row_id: str) -> int:
    return derive_seed(ctx.section.seed, ctx.iteration, stage, row_id)


def _run(
    ctx: StageContext,
    stage: str,
    items: list[Any],
    process: Callable[[list[Any]], list[BaseModel]],
    stats: Callable[[list[dict[str, Any]]], dict[str, Any]] = drop_stats,
) -> StageResult:
    return run_stage(
        ctx.store,
        stage,
        items,
        key=lambda r: r["id"] if isinstance(r, dict) else r.id,
        process=process,
        chunk_size=ctx.chunk_size,
        stats=stats,
        progress=ctx.progress,
    )


def _finished(sample: Any) -> bool:
    return sample.finish_reason == "stop" and bool(sample.text.strip())


# ------------------------------------------------------------------------------------------------- videos
def decode_video(item: VideoItem, num_frames: int, folder: Path) -> VideoRow:
    """The video's sampled frames written to ``folder``; an unreadable file becomes a dropped row naming why."""
    try:
        decoded = decode_frames(item.path, num_frames)
    except VideoDecodeError as exc:
        return VideoRow(
            id=item.id,
            video=item.path,
            caption=item.caption,
            frame_indices=[],
            frames=[],
            total_frames=None,
            fps=None,
            drop_reason="unreadable",
            error=str(exc),
        )
    paths = save_frames(decoded.frames, decoded.indices, folder / item.id)
    return VideoRow(
        id=item.id,
        video=item.path,
        caption=item.caption,
        frame_indices=decoded.indices,
        frames=paths,
        total_frames=decoded.total_frames,
        fps=decoded.fps,
    )


def run_videos(ctx: StageContext) -> StageResult:
    v = ctx.section.videos
    items = read_videos(v.source)[: v.max_videos]
    folder = ctx.store.root / FRAMES_DIR
    return _run(ctx, VIDEOS, items, lambda chunk: [decode_video(item, v.num_frames, folder) for item in chunk])


# ---------------------------------------------------------------------------------------------- questions
def run_questions(ctx: StageContext) -> StageResult:
    q = ctx.section.questions

    def process(chunk: list[dict[str, Any]]) -> list[QuestionSet]:
        requests = [
            prompts.video_turn(
                v["frames"],
                prompts.QUESTIONS.format(
                    count=len(v["frames"]), caption=prompts.caption_line(v["caption"]), per_type=q.per_type
                ),
            )
            for v in chunk
        ]
        params = [
            SamplingParams(
                temperature=q.temperature, max_new_tokens=q.max_new_tokens, seed=_seed(ctx, QUESTIONS, v["id"])
            )
            for v in chunk
        ]
        rows = []
        for video, completion in zip(chunk, ctx.engine.generate(requests, params)):
            text = completion.samples[0].text
            found = parse_questions(text, q.per_type)
            rows.append(
                QuestionSet(
                    id=video["id"],
                    video=video["video"],
                    frame_indices=video["frame_indices"],
                    output=text,
                    questions=[{"type": x.type, "text": x.text} for x in found],
                    drop_reason=None if found else "no_questions",
                )
            )
        return rows

    return _run(ctx, QUESTIONS, kept(ctx.store.rows(VIDEOS)), process)


def question_items(ctx: StageContext) -> list[VideoQuestion]:
    """Every question written, with its video's frames: the items of the answer stages."""
    videos = {v["id"]: v for v in ctx.store.rows(VIDEOS)}
    items = []
    for written in kept(ctx.store.rows(QUESTIONS)):
        video = videos[written["id"]]
        counts = dict.fromkeys(QUESTION_TYPES, 0)
        for question in written["questions"]:
            k = counts[question["type"]]
            counts[question["type"]] += 1
            items.append(
                VideoQuestion(
                    id=f"{video['id']}-{question['type']}-{k}",
                    video_id=video["id"],
                    video=video["video"],
                    type=question["type"],
                    question=question["text"],
                    frame_indices=video["frame_indices"],
                    frames=video["frames"],
                )
            )
    return items


def question_fields(row: Any) -> dict[str, Any]:
    """The `VideoQuestion` fields of a row or item, for the rows that carry them on."""
    data = row if isinstance(row, dict) else row.model_dump()
    return {name: data[name] for name in VideoQuestion.model_fields}


# ------------------------------------------------------------------------------------------------ answers
def run_answers(ctx: StageContext) -> StageResult:
    a = ctx.section.answers

    def process(chunk: list[VideoQuestion]) -> list[AnswerSet]:
        requests, params = [], []
        for item in chunk:
            for t in a.temperatures:
                requests.append(prompts.video_turn(item.frames, prompts.ANSWER.format(question=item.question)))
                params.append(
                    SamplingParams(
                        temperature=t,
                        top_p=a.top_p,
                        max_new_tokens=a.max_new_tokens,
                        seed=_seed(ctx, ANSWERS, f"{item.id}@{t}"),
                    )
                )
        done = ctx.engine.generate(requests, params)
        rows, k = [], len(a.temperatures)
        for i, item in enumerate(chunk):
            samples = [c.samples[0] for c in done[i * k : (i + 1) * k]]
            candidates = [
                Candidate(text=s.text, temperature=t, seed=s.seed, finish_reason=s.finish_reason)
                for s, t in zip(samples, a.temperatures)
            ]
            usable = sum(_finished(s) for s in samples)
            rows.append(
                AnswerSet(
                    **question_fields(item),
                    candidates=candidates,
                    drop_reason=None if usable >= 2 else "fewer_than_two_answers",
                )
            )
        return rows

    return _run(ctx, ANSWERS, question_items(ctx), process)


def run_evaluations(ctx: StageContext) -> StageResult:
    e = ctx.section.evaluation

    def process(chunk: list[dict[str, Any]]) -> list[Evaluation]:
        asked = [
            (row, i)
            for row in chunk
            for i, c in enumerate(row["candidates"])
            if c["finish_reason"] == "stop" and c["text"].strip()
        ]
        requests = [
            prompts.video_turn(
                row["frames"], prompts.RUBRIC.format(question=row["question"], answer=row["candidates"][i]["text"])
            )
            for row, i in asked
        ]
        outputs = ctx.engine.generate(requests, SamplingParams(temperature=0, max_new_tokens=e.max_new_tokens))
        by_row: dict[str, list[RubricRow]] = {row["id"]: [] for row in chunk}
        for (row, i), completion in zip(asked, outputs):
            text = completion.samples[0].text
            rubric = parse_rubric(text)
            scores = (
                {
                    "relevance": rubric.relevance,
                    "accuracy": rubric.accuracy,
                    "temporal_grounding": rubric.temporal_grounding,
                    "clarity": rubric.clarity,
                    "total": rubric.total,
                }
                if rubric
                else dict.fromkeys(("relevance", "accuracy", "temporal_grounding", "clarity", "total"))
            )
            by_row[row["id"]].append(RubricRow(index=i, output=text, **scores))
        rows = []
        for row in chunk:
            rubrics = by_row[row["id"]]
            failures = sum(r.total is None for r in rubrics)
            parsed = len(rubrics) - failures
            rows.append(
                Evaluation(
                    id=row["id"],
                    rubrics=rubrics,
                    parse_failures=failures,
                    drop_reason=None if parsed >= 2 else "fewer_than_two_rubrics",
                )
            )
        return rows

    return _run(ctx, EVALUATIONS, kept(ctx.store.rows(ANSWERS)), process, evaluation_stats)


def evaluation_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return drop_stats(rows) | {"rubric_parse_failures": sum(r["parse_failures"] for r in rows)}


# --------------------------------------------------------------------------------------- critique variant
def _generated(ctx: StageContext, stage: str, items: list[Any], ask: Callable[[Any], str]) -> StageResult:
    c = ctx.section.critique

    def process(chunk: list[Any]) -> list[Generated]:
        requests = [prompts.video_turn(question_fields(item)["frames"], ask(item)) for item in chunk]
        params = [
            SamplingParams(
                temperature=c.temperature,
                max_new_tokens=c.max_new_tokens,
                seed=_seed(ctx, stage, question_fields(item)["id"]),
            )
            for item in chunk
        ]
        rows = []
        for item, completion in zip(chunk, ctx.engine.generate(requests, params)):
            sample = completion.samples[0]
            rows.append(
                Generated(
                    **question_fields(item),
                    text=sample.text,
                    seed=sample.seed,
                    finish_reason=sample.finish_reason,
                    drop_reason=None if _finished(sample) else "unfinished",
                )
            )
        return rows

    return _run(ctx, stage, items, process)


def run_drafts(ctx: StageContext) -> StageResult:
    return _generated(ctx, DRAFTS, question_items(ctx), lambda q: prompts.ANSWER.format(question=q.question))


def run_critiques(ctx: StageContext) -> StageResult:
    return _generated(
        ctx,
        CRITIQUES,
        kept(ctx.store.rows(DRAFTS)),
        lambda d: prompts.CRITIQUE.format(question=d["question"], answer=d["text"]),
    )


def run_revisions(ctx: StageContext) -> StageResult:
    drafts = {d["id"]: d for d in ctx.store.rows(DRAFTS)}
    return _generated(
        ctx,
        REVISIONS,
        kept(ctx.store.rows(CRITIQUES)),
        lambda c: prompts.REVISION.format(question=c["question"], answer=drafts[c["id"]]["text"], critique=c["text"]),
    )


# -------------------------------------------------------------------------------------------------- pairs
def _pair(ctx: StageContext, question: dict[str, Any], chosen: str, rejected: str, **fields: Any) -> VideoPair:
    return VideoPair(
        id=question["id"],
        video=question["video"],
        type=question["type"],
        frame_indices=question["frame_indices"],
        prompt=prompts.video_turn(question["frames"], prompts.ANSWER.format(question=question["question"])),
        chosen=[{"role": "assistant", "content": chosen}],
        rejected=[{"role": "assistant", "content": rejected}],
        iteration=ctx.iteration,
        **(
            {
                "chosen_score": None,
                "rejected_score": None,
                "clip_chosen": None,
                "clip_rejected": None,
                "clip_swapped": False,
            }
            | fields
        ),
    )


def rubric_pairs(ctx: StageContext, scorer: Any) -> StageResult:
    answers = {a["id"]: a for a in ctx.store.rows(ANSWERS)}

    def process(chunk: list[dict[str, Any]]) -> list[VideoPair]:
        rows = []
        for evaluation in chunk:
            question = answers[evaluation["id"]]
            texts = [c["text"] for c in question["candidates"]]
            totals: list[float | None] = [None] * len(texts)
            for rubric in evaluation["rubrics"]:
                totals[rubric["index"]] = rubric["total"]
            choice = best_and_worst(texts, totals)
            if choice.reason:
                rows.append(_pair(ctx, question, "", "", drop_reason=choice.reason))
                continue
            chosen, rejected = choice.chosen, choice.rejected
            fields: dict[str, Any] = {}
            if scorer is not None:
                sim_c, sim_r = scorer.similarities([texts[chosen], texts[rejected]], question["frames"])
                swapped = clip_swap(sim_c, sim_r)
                if swapped:
                    chosen, rejected, sim_c, sim_r = rejected, chosen, sim_r, sim_c
                fields = {"clip_chosen": sim_c, "clip_rejected": sim_r, "clip_swapped": swapped}
            rows.append(
                _pair(
                    ctx,
                    question,
                    texts[chosen],
                    texts[rejected],
                    chosen_score=totals[chosen],
                    rejected_score=totals[rejected],
                    **fields,
                )
            )
        return rows

    return _run(ctx, PAIRS, kept(ctx.store.rows(EVALUATIONS)), process, pair_stats)


def critique_pairs(ctx: StageContext) -> StageResult:
    drafts = {d["id"]: d for d in ctx.store.rows(DRAFTS)}

    def process(chunk: list[dict[str, Any]]) -> list[VideoPair]:
        rows = []
        for revision in chunk:
            draft = drafts[revision["id"]]["text"]
            same = " ".join(draft.split()) == " ".join(revision["text"].split())
            rows.append(_pair(ctx, revision, revision["text"], draft, drop_reason="same_text" if same else None))
        return rows

    return _run(ctx, PAIRS, kept(ctx.store.rows(REVISIONS)), process, pair_stats)


def pair_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return drop_stats(rows) | {"clip_swapped": sum(bool(r["clip_swapped"]) for r in rows)}


def clip_scorer(section: VideoSAViConfig, trust_remote_code: bool) -> Any:
    if section.clip.model is None:
        return None
    from sao.video.clip import ClipScorer

    return ClipScorer(section.clip.model, device=section.clip.device, trust_remote_code=trust_remote_code)


def run_pairs(ctx: StageContext) -> StageResult:
    if ctx.section.variant == "critique":
        return critique_pairs(ctx)
    # The scorer loads only when there are pairs left to make: a resumed, finished stage loads nothing.
    done = {r["id"] for r in ctx.store.rows(PAIRS)}
    todo = [r for r in kept(ctx.store.rows(EVALUATIONS)) if r["id"] not in done]
    return rubric_pairs(ctx, clip_scorer(ctx.section, ctx.trust_remote_code) if todo else None)
