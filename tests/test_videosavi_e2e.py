"""VideoSAVi end to end on a tiny random Qwen2-VL and synthetic videos of a moving square, through `sao run`
and `sao synth` in real processes (`tests/video_engine.py`: the model's own replies, except the question and
rubric formats a random model cannot write). The CPU runs prove the mechanics, not the quality."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tiny_vlm import build_clip, build_qwen2_vl, write_videos

TESTS = Path(__file__).parent
pytestmark = pytest.mark.slow


def _sao(*args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VS_KILL_AT_ANSWER_CALL"} | {"HF_HUB_OFFLINE": "1"}
    if kill_at is not None:
        env["VS_KILL_AT_ANSWER_CALL"] = str(kill_at)
    return subprocess.run(
        [sys.executable, str(TESTS / "video_engine.py"), *args], env=env, capture_output=True, text=True, timeout=900
    )


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("videosavi")
    model = build_qwen2_vl(root / "qwen2-vl", chatty=True)
    recipe = {
        "method": "videosavi",
        "model": str(model),
        "iterations": 1,
        "engine": {"dtype": "float32"},
        "synth": {
            "videos": {"source": str(write_videos(root / "videos", count=2)), "num_frames": 4},
            "answers": {"max_new_tokens": 48},
            "evaluation": {"max_new_tokens": 16},
            "questions": {"max_new_tokens": 16},
            "clip": {"model": str(build_clip(root / "clip")), "device": "cpu"},
        },
        "train": {
            "trainer": "dpo",
            "epochs": 1,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "max_length": 1024,
            "dtype": "float32",
            "gradient_checkpointing": False,
            "report_to": "none",
        },
        "report": {"max_new_tokens": 8},
    }
    (root / "videosavi.yaml").write_text(yaml.safe_dump(recipe))
    return {"root": root, "model": model, "recipe": root / "videosavi.yaml"}


def test_one_iteration_writes_every_stage_and_trains_the_vision_tower(setup):
    out = setup["root"] / "run"
    done = _sao("run", str(setup["recipe"]), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    synth = out / "iter-1" / "synth"
    for stage in ("videos", "questions", "answers", "evaluations", "pairs"):
        assert (synth / f"{stage}.jsonl").is_file(), stage
    stages = json.loads((synth / "manifest.json").read_text())["stages"]
    assert stages["videos"]["stats"]["dropped"] == {"unreadable": 1}  # broken.mp4: counted, the run went on
    videos = {v["id"]: v for v in _rows(synth / "videos.jsonl")}
    assert "broken" in next(v for v in videos.values() if v["drop_reason"])["error"]
    questions = _rows(synth / "questions.jsonl")
    assert {q["type"] for row in questions for q in row["questions"]} == {"what", "why", "how"}
    assert all(row["frame_indices"] == videos[row["id"]]["frame_indices"] for row in questions)
    for row in _rows(synth / "answers.jsonl"):  # each answer row keeps its question's type, video and frames
        assert row["type"] in row["id"] and row["frame_indices"] == videos[row["video_id"]]["frame_indices"]
        assert row["video"] == videos[row["video_id"]]["video"]
    assert stages["evaluations"]["stats"]["rubric_parse_failures"] > 0  # malformed rubrics counted, not fatal

    pairs = [p for p in _rows(synth / "pairs.jsonl") if p["drop_reason"] is None]
    assert pairs
    for pair in pairs:
        video = next(v for v in videos.values() if v["video"] == pair["video"])
        assert pair["frame_indices"] == video["frame_indices"] and len(pair["frame_indices"]) == 4
        frames = pair["prompt"][0]["content"][0]["frames"]
        assert frames == video["frames"] and all(Path(f).is_file() for f in frames)
        assert pair["chosen"] != pair["rejected"] and pair["clip_chosen"] >= pair["clip_rejected"]
        if not pair["clip_swapped"]:
            assert pair["chosen_score"] > pair["rejected_score"]
    assert stages["pairs"]["stats"]["clip_swapped"] == sum(p["clip_swapped"] for p in pairs)

    history = _rows(out / "iter-1" / "train" / "history.jsonl")
    assert math.isclose(next(h["loss"] for h in history if "loss" in h), math.log(2), abs_tol=1e-4)
    before = load_file(str(setup["model"] / "model.safetensors"))
    trained = out / "iter-1" / "model"
    after = load_file(str(trained / "model.safetensors"))
    vision = [k for k in before if ".visual." in f".{k}" or k.startswith("model.visual")]
    assert vision and any(not before[k].equal(after[k]) for k in vision)  # the frames reached the gradient
    assert (synth / "report.md").read_text().count("CLIP check swapped") == 1 and (synth / "pairs.png").is_file()

    # The saved model reloads offline and answers about a video it has not seen.
    script = """
import sys
from pathlib import Path
from sao.engine.backends import build_backend
from sao.engine.config import EngineSection
from sao.engine.types import SamplingParams
from sao.methods.videosavi.prompts import video_turn
from sao.video.decode import decode_frames, write_test_video
from sao.video.frames import save_frames
decoded = decode_frames(write_test_video(sys.argv[2] + "/new.mp4", frames=9), 4)
frames = save_frames(decoded.frames, decoded.indices, Path(sys.argv[2]) / "frames")
engine = build_backend(sys.argv[1], EngineSection(dtype="float32"), progress=False)
params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=1)
sample = engine.generate([video_turn(frames, "What moves?")], params)[0].samples[0]
print(type(engine).__name__, len(sample.token_ids))
"""
    reloaded = subprocess.run(
        [sys.executable, "-c", script, str(trained), str(setup["root"])],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )
    assert reloaded.returncode == 0, reloaded.stderr[-2000:]
    kind, tokens = reloaded.stdout.split()[-2:]
    assert kind == "VisionEngine" and int(tokens) >= 0


def test_a_kill_inside_the_answer_stage_resumes_with_no_row_lost_or_repeated(setup):
    out = setup["root"] / "synth"
    args = ["synth", "--recipe", str(setup["recipe"]), "--out", str(out), "--chunk-size", "1"]
    killed = _sao(*args, kill_at=3)  # the third question's answers: two rows are on disk
    assert killed.returncode == -9, killed.stderr[-2000:]
    answers = out / "answers.jsonl"
    assert len(answers.read_text().splitlines()) == 2

    refused = _sao(*args, "--set", "answers.max_new_tokens=40")
    assert refused.returncode != 0
    assert "answers.max_new_tokens" in refused.stderr.strip().splitlines()[-1]
    assert len(answers.read_text().splitlines()) == 2

    resumed = _sao(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _rows(answers)
    questions = _rows(out / "questions.jsonl")
    wanted = [f"{q['id']}-{x['type']}-0" for q in questions if q["drop_reason"] is None for x in q["questions"]]
    assert sorted(r["id"] for r in rows) == sorted(wanted) and len(wanted) == 6  # 2 videos x 3 types, none twice
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["answers"]["attempts"] == 2 and stages["videos"]["attempts"] == 1
    assert all(len(r["candidates"]) == 5 for r in rows)
    assert [c["temperature"] for c in rows[0]["candidates"]] == [0.3, 0.5, 0.7, 0.9, 1.0]


def test_the_critique_variant_prefers_each_revision_over_its_first_answer(setup):
    out = setup["root"] / "critique"
    done = _sao(
        "synth",
        "--recipe",
        str(setup["recipe"]),
        "--out",
        str(out),
        "--set",
        "variant=critique",
        "--set",
        "critique.max_new_tokens=48",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for stage in ("videos", "questions", "drafts", "critiques", "revisions", "pairs"):
        assert (out / f"{stage}.jsonl").is_file(), stage
    assert not (out / "answers.jsonl").exists() and not (out / "evaluations.jsonl").exists()
    drafts = {r["id"]: r for r in _rows(out / "drafts.jsonl")}
    revisions = {r["id"]: r for r in _rows(out / "revisions.jsonl")}
    pairs = [p for p in _rows(out / "pairs.jsonl") if p["drop_reason"] is None]
    assert pairs
    for pair in pairs:
        assert pair["chosen"][0]["content"] == revisions[pair["id"]]["text"]  # a1 over a0
        assert pair["rejected"][0]["content"] == drafts[pair["id"]]["text"]
        assert pair["chosen_score"] is None and not pair["clip_swapped"]
        assert pair["frame_indices"] == drafts[pair["id"]]["frame_indices"]
