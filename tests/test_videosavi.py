"""VideoSAVi's parts, each on its own: frame sampling and decoding of synthetic videos, question and rubric
parsing, best-and-worst selection, the CLIP swap, the rows' frame references, and the engines' handling of
message parts (the transformers VLM engine on tiny random Qwen2-VL and LLaVA-OneVision models, vLLM's request
building with no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sao.engine.capabilities import CapabilityError
from sao.engine.media import image_paths, template_messages
from sao.engine.types import SamplingParams
from sao.errors import InputError
from sao.methods.videosavi.parsing import parse_questions, parse_rubric
from sao.methods.videosavi.prompts import video_turn
from sao.methods.videosavi.selection import best_and_worst, clip_swap
from sao.video.decode import VideoDecodeError, decode_frames, sample_indices, write_test_video
from sao.video.frames import load_images, save_frames
from sao.video.sources import read_videos
from tiny_vlm import build_clip, build_llava_onevision, build_qwen2_vl, write_videos


def square_column(image) -> float:
    """The mean column of the red square's pixels."""
    pixels = np.asarray(image).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100)
    return float(np.nonzero(red.any(axis=0))[0].mean())


# ------------------------------------------------------------------------------------------ decoding
def test_sample_indices_spread_evenly_with_first_and_last():
    assert sample_indices(16, 4) == [0, 5, 10, 15]
    assert sample_indices(3, 8) == [0, 1, 2]  # fewer frames than asked: each once
    assert sample_indices(10, 1) == [0]
    with pytest.raises(ValueError):
        sample_indices(0, 4)


def test_decoded_frames_show_the_square_moving_right(tmp_path):
    video = write_test_video(tmp_path / "square.mp4", frames=16)
    decoded = decode_frames(video, 4)
    assert decoded.indices == [0, 5, 10, 15] and decoded.total_frames == 16 and decoded.fps == 8.0
    columns = [square_column(frame) for frame in decoded.frames]
    assert all(b > a + 8 for a, b in zip(columns, columns[1:])), columns  # it moved between every sampled frame
    assert columns[0] < 16 and columns[-1] > 48


@pytest.mark.parametrize("content", [b"", b"not a video", None])
def test_unreadable_files_raise_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4") as err:
        decode_frames(path, 4)
    assert "\n" not in str(err.value)


def test_videos_are_read_from_a_folder_or_a_jsonl_list(tmp_path):
    folder = write_videos(tmp_path / "videos", count=2)
    found = read_videos(folder)
    assert [Path(v.path).name for v in found] == ["broken.mp4", "clip0.mp4", "clip1.mp4"]
    assert len({v.id for v in found}) == 3
    listing = tmp_path / "videos.jsonl"
    listing.write_text(json.dumps({"video": "videos/clip1.mp4", "caption": "a square"}) + "\n")
    (item,) = read_videos(listing)
    assert item.path == str((folder / "clip1.mp4").resolve()) and item.caption == "a square"
    listing.write_text(json.dumps({"caption": "no path"}) + "\n")
    with pytest.raises(InputError, match=r"videos\.jsonl:1: a row needs 'video'"):
        read_videos(listing)
    with pytest.raises(InputError, match=r"^synth\.videos\.source: .* is neither"):
        read_videos(tmp_path / "missing")


def test_frames_are_saved_as_files_and_rows_refer_to_them(tmp_path):
    decoded = decode_frames(write_test_video(tmp_path / "v.mp4"), 3)
    paths = save_frames(decoded.frames, decoded.indices, tmp_path / "frames" / "v")
    assert [Path(p).name for p in paths] == [f"{i:06d}.png" for i in decoded.indices]
    assert [square_column(i) for i in load_images(paths)] == [square_column(f) for f in decoded.frames]  # lossless
    conversation = video_turn(paths, "What moves?")
    assert image_paths(conversation) == paths
    assert template_messages(conversation)[0]["content"] == [{"type": "image"}] * 3 + [
        {"type": "text", "text": "What moves?"}
    ]
    json.dumps(conversation)  # rows hold paths, never pixels


# ---------------------------------------------------------------------------------------------- parsing
def test_questions_are_parsed_by_their_type_label():
    text = """Here are my questions.
What: What colour is the square?
1. Why: Why does the square move?
- **How**: How does it move across the frame?
What: What colour is the square?
What - What shape is it?
How: this one has no question mark
Where: Where is it?"""
    found = parse_questions(text, per_type=2)
    assert [(q.type, q.text) for q in found] == [
        ("what", "What colour is the square?"),
        ("why", "Why does the square move?"),
        ("how", "How does it move across the frame?"),
        ("what", "What shape is it?"),
    ]
    assert [q.type for q in parse_questions(text, per_type=1)] == ["what", "why", "how"]
    assert parse_questions("I cannot see any video.", per_type=1) == []


def test_rubrics_parse_only_when_all_four_scores_are_in_range():
    rubric = parse_rubric("Relevance: 8\nAccuracy: 6/10\n**Temporal grounding**: 7\nClarity = 9.5\nRelevance: 1")
    assert (rubric.relevance, rubric.accuracy, rubric.temporal_grounding, rubric.clarity) == (8, 6, 7, 9.5)
    assert rubric.total == 30.5
    assert parse_rubric("Relevance: 8\nAccuracy: 6\nClarity: 9") is None  # temporal grounding missing
    assert parse_rubric("Relevance: 80\nAccuracy: 6\nTemporal grounding: 7\nClarity: 9") is None
    assert parse_rubric("It is a good answer.") is None


def test_best_and_worst_and_the_pairs_that_are_dropped():
    texts = ["a", "b", "c", "d"]
    assert best_and_worst(texts, [20, 35, None, 12]) == best_and_worst(texts, [20, 35, None, 12])
    choice = best_and_worst(texts, [20, 35, None, 12])
    assert (choice.chosen, choice.rejected, choice.reason) == (1, 3, None)
    assert best_and_worst(texts, [30, 30, 10, 10]).chosen == 0  # ties go to the first written
    assert best_and_worst(texts, [None, 12, None, None]).reason == "no_scores"
    assert best_and_worst(texts, [20, 20, None, 20]).reason == "no_margin"
    assert best_and_worst(["same  answer", "x", "same answer"], [30, None, 10]).reason == "same_text"


@pytest.mark.parametrize(("chosen", "rejected", "swap"), [(0.3, 0.2, False), (0.2, 0.3, True), (0.25, 0.25, False)])
def test_the_clip_swap_happens_exactly_when_rejected_is_closer(chosen, rejected, swap):
    assert clip_swap(chosen, rejected) is swap


# ---------------------------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("frames")
    decoded = decode_frames(write_test_video(folder / "v.mp4", frames=12), 4)
    return save_frames(decoded.frames, decoded.indices, folder / "v")


@pytest.fixture(scope="module", params=["qwen2_vl", "llava_onevision"])
def vlm_engine(request, tmp_path_factory):
    from sao.engine.backends import build_backend
    from sao.engine.config import EngineSection

    build = {"qwen2_vl": build_qwen2_vl, "llava_onevision": build_llava_onevision}[request.param]
    model = build(tmp_path_factory.mktemp(request.param))
    return build_backend(str(model), EngineSection(dtype="float32"), progress=False)


def test_a_vlm_loads_as_the_vision_engine_and_its_answers_depend_on_the_frames(vlm_engine, frames, tmp_path):
    from sao.engine.vision_engine import VisionEngine

    assert isinstance(vlm_engine, VisionEngine) and "multimodal" in vlm_engine.capabilities
    question = video_turn(frames, "What moves?")
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=7)
    first, again = vlm_engine.generate([question], params), vlm_engine.generate([question], params)
    assert [s.token_ids for s in first[0].samples] == [s.token_ids for s in again[0].samples]  # seeded
    assert first[0].samples[0].token_ids != first[0].samples[1].token_ids  # sample j has its own seed
    # Other frames, same text: the model reads the images, so the scores move.
    flipped = [str(tmp_path / f"f{i}.png") for i in range(len(frames))]
    for image, path in zip(load_images(frames), flipped):
        image.transpose(0).save(path)
    a, b = vlm_engine.score([question, video_turn(flipped, "What moves?")], ["A red square.", "A red square."])
    assert len(a.logprobs) == len(a.token_ids) > 0 and a.logprobs != b.logprobs
    assert all(lp < 0 for lp in a.logprobs)


def test_the_vlm_engine_refuses_what_it_lacks_with_one_line(vlm_engine, frames):
    question = video_turn(frames, "Why does it move?")
    with pytest.raises(CapabilityError, match=r"lacks token_prompts .* continuation 0 of a score call"):
        vlm_engine.score([question], [[1, 2, 3]])
    with pytest.raises(CapabilityError, match=r"lacks top_logprobs"):
        vlm_engine.top_logprobs([question], 3)
    with pytest.raises(CapabilityError, match=r"lacks logit_bias"):
        vlm_engine.generate([question], SamplingParams(logit_bias={"the": -5.0}))


def test_a_text_engine_refuses_message_parts_with_one_line(tiny_engine, frames):
    with pytest.raises(CapabilityError, match=r"^engine backend 'transformers' lacks multimodal"):
        tiny_engine.generate([video_turn(frames, "What moves?")], SamplingParams(max_new_tokens=4))


def test_malformed_parts_are_refused_naming_the_part(vlm_engine):
    bad = [{"role": "user", "content": [{"type": "video", "frames": []}, {"type": "text", "text": "?"}]}]
    with pytest.raises(InputError, match=r"message 0 part 0 \(video\) needs 'frames'"):
        vlm_engine.generate([bad], SamplingParams(max_new_tokens=2))


def test_clip_similarities_follow_the_text(tmp_path, frames):
    from sao.video.clip import ClipScorer

    scorer = ClipScorer(str(build_clip(tmp_path / "clip")), device="cpu")
    sims = scorer.similarities(["a red square moves", "a blue dog", "a red square moves"], frames)
    assert len(sims) == 3 and all(-1 <= s <= 1 for s in sims)
    assert sims[0] == pytest.approx(sims[2]) and sims[0] != pytest.approx(sims[1])


def test_vllm_requests_carry_images_as_multi_modal_data(tmp_path, frames):
    from transformers import AutoProcessor

    from sao.engine.vllm_engine import generation_requests, text_only

    processor = AutoProcessor.from_pretrained(build_qwen2_vl(tmp_path / "qwen"))
    text = [{"role": "user", "content": "hi"}]
    video = video_turn(frames, "What moves?")
    requests = generation_requests(processor.tokenizer, [text, video], SamplingParams(n=2, seed=1), processor)
    assert [r.conv for r in requests] == [0, 0, 1, 1]
    assert requests[0].inputs() == {"prompt_token_ids": requests[0].prompt_token_ids} and requests[0].prompt_token_ids
    media = requests[2].inputs()
    assert media["prompt"].count("<|image_pad|>") == 4 and "What moves?" in media["prompt"]
    assert [square_column(i) for i in media["multi_modal_data"]["image"]] == [
        square_column(i) for i in load_images(frames)
    ]
    assert requests[2].seed != requests[3].seed
    with pytest.raises(Exception, match=r"^multimodal: backend 'vllm' takes images only in generate"):
        text_only([text, video], "score")
    with pytest.raises(Exception, match=r"not a vision-language model"):
        generation_requests(processor.tokenizer, [video], SamplingParams(), None)


# --------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize(
    ("build", "dtype"),
    [(build_qwen2_vl, "float32"), (build_llava_onevision, "float32"), (build_qwen2_vl, "bfloat16")],
    ids=["qwen2_vl", "llava_onevision", "qwen2_vl-bf16"],
)
def test_dpo_on_frames_starts_at_ln2_and_trains_the_vision_tower(build, dtype, tmp_path, frames):
    import math

    from safetensors.torch import load_file

    from sao.train.run import run_train
    from test_train import fast

    model = build(tmp_path / "model")
    rows = [
        {
            "id": f"p{i}",
            "prompt": video_turn(frames, f"What moves in clip {i}?"),
            "chosen": [{"role": "assistant", "content": "A red square moves to the right."}],
            "rejected": [{"role": "assistant", "content": "Nothing happens."}],
        }
        for i in range(4)
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = fast(trainer="dpo", epochs=1, batch_size=2, max_length=1024, dtype=dtype)
    result = run_train(config, str(model), pairs, tmp_path / "out", progress=False)
    assert result.metrics["compute_dtype"] == dtype
    assert math.isclose(result.metrics["first_loss"], math.log(2), abs_tol=1e-4)
    assert result.metrics["examples"] == 4 and result.metrics["tokens_per_epoch"] > 0
    before, after = load_file(str(model / "model.safetensors")), load_file(str(result.model_dir / "model.safetensors"))
    vision = [k for k in before if "visual" in k or "vision_tower" in k]
    assert vision and any(not before[k].equal(after[k]) for k in vision)
    assert (result.model_dir / "processor_config.json").is_file()  # the processor is saved beside the model


def test_pairs_with_frames_refuse_a_text_model_and_a_trainer_without_images(tmp_path, frames, tiny_model_dir):
    from sao.errors import ConfigError
    from sao.recipe import validate
    from sao.train.config import TrainConfig
    from sao.train.run import run_train

    row = {"id": "p0", "prompt": video_turn(frames, "What moves?"), "chosen": "A square.", "rejected": "A dog."}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(row) + "\n")
    with pytest.raises(
        InputError, match=r"pairs\.jsonl: the pairs hold images or video frames but the model is a text"
    ):
        run_train(
            validate(TrainConfig, {"trainer": "dpo", "report_to": "none"}),
            str(tiny_model_dir),
            pairs,
            tmp_path / "a",
            progress=False,
        )
    with pytest.raises(
        ConfigError, match=r"^train\.trainer: pairs with images train with dpo, ipo, robust_dpo, not simpo"
    ):
        run_train(
            validate(TrainConfig, {"trainer": "simpo", "report_to": "none"}),
            str(build_qwen2_vl(tmp_path / "m")),
            pairs,
            tmp_path / "b",
            progress=False,
        )


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("synth", "field"),
    [
        ({}, "synth.videos"),
        ({"videos": {"source": "v", "num_frames": 0}}, "synth.videos.num_frames"),
        ({"videos": {"source": "v"}, "answers": {"temperatures": [0.0, 0.5]}}, "synth.answers.temperatures"),
        ({"videos": {"source": "v"}, "answers": {"temperatures": [0.5]}}, "synth.answers.temperatures"),
        ({"videos": {"source": "v"}, "variant": "sft"}, "synth.variant"),
    ],
)
def test_bad_settings_get_one_line_naming_the_field(synth, field):
    from sao.errors import ConfigError
    from sao.loop.config import validate_run

    with pytest.raises(ConfigError, match=rf"^{field}: ") as err:
        validate_run({"method": "videosavi", "synth": synth})
    assert "\n" not in str(err.value)


def test_the_checkpoints_sampling_defaults_do_not_change_what_sao_asks_for(tmp_path, frames):
    from transformers import GenerationConfig

    from sao.engine.vision_engine import VisionEngine

    plain = build_qwen2_vl(tmp_path / "plain", chatty=True)  # ends its turns within a few tokens
    shipped = build_qwen2_vl(tmp_path / "shipped", chatty=True)  # the same weights, with defaults of its own
    config = GenerationConfig.from_pretrained(shipped)
    config.update(top_k=1, top_p=0.001, repetition_penalty=5.0, do_sample=True, temperature=0.01, min_new_tokens=8)
    config.save_pretrained(shipped)
    question = video_turn(frames, "What moves?")
    params = SamplingParams(n=12, temperature=0.7, max_new_tokens=16, seed=11)
    texts = [
        [
            s.token_ids
            for s in VisionEngine.from_spec(str(m), dtype="float32", progress=False)
            .generate([question], params)[0]
            .samples
        ]
        for m in (plain, shipped)
    ]
    assert texts[0] == texts[1] and len({tuple(t) for t in texts[0]}) > 1
    assert min(len(t) for t in texts[0]) < 8  # min_new_tokens 8, had it applied, would have kept every EOS away


def test_the_vlm_engine_in_bf16_scores_as_in_float32_within_its_precision(tmp_path, frames):
    """``dtype: auto`` is bf16 on CPUs with native bf16, float32 on the others: both paths run here, forced."""
    from sao.engine.vision_engine import VisionEngine

    model = str(build_qwen2_vl(tmp_path / "qwen"))
    question = video_turn(frames, "What moves?")
    scored = {
        dtype: VisionEngine.from_spec(model, dtype=dtype, progress=False).score([question], ["A red square moves."])[0]
        for dtype in ("float32", "bfloat16")
    }
    # bf16 keeps 8 bits of mantissa: a log-prob near -6 is good to a few hundredths.
    assert scored["bfloat16"].logprobs == pytest.approx(scored["float32"].logprobs, abs=0.1)
    sample = (
        VisionEngine.from_spec(model, dtype="bfloat16", progress=False)
        .generate([question], SamplingParams(temperature=1.0, max_new_tokens=4, seed=2))[0]
        .samples[0]
    )
    assert len(sample.token_ids) == 4 or sample.finish_reason == "stop"
