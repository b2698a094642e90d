"""Tiny random vision-language models and a tiny CLIP, built from configs with tokenizers trained here, and
synthetic videos: what the VideoSAVi tests run on, with no downloads.

The models are random, so what they write is noise; the tests check the mechanics (frames reach the model,
rows carry them, gradients reach the vision tower), not quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "What is in the video? A red square moves from the left to the right across a dark frame.",
    "Why does the square move? How does it move? It slides to the right, one step in each frame.",
    "What: What colour is the square? Why: Why is it moving? How: How fast does it move?",
    "Relevance: 7 Accuracy: 5 Temporal grounding: 6 Clarity: 8",
    "The answer is wrong about the order of events. A better answer: the square moves right.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}{{ IMAGE }}{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(specials: list[str], image_markup: str):
    """A byte-level BPE tokenizer trained on `CORPUS`, with the chat and image special tokens of a family."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", *specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 10, trainer)
    template = CHAT_TEMPLATE.replace("{{ IMAGE }}", image_markup)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=template
    ), template


def make_chatty(model, eos_id: int, strength: float = 2.0) -> None:
    """Make a random model end its turns within a few dozen tokens, as `tests/conftest.py`'s chatty model does:
    every input embedding gets a shared direction v and EOS's output row points along v, so EOS's logit
    stands above the rest (a random model would almost never sample EOS, and every answer would be cut off)."""
    hidden = model.get_input_embeddings().weight.shape[1]
    with torch.no_grad():
        v = torch.randn(hidden)
        v /= v.norm()
        model.get_input_embeddings().weight += v
        model.get_output_embeddings().weight[eos_id] = v * strength / hidden**0.5


def _save(model, processor, out: Path, chatty: bool = False) -> Path:
    if chatty:
        make_chatty(model, processor.tokenizer.convert_tokens_to_ids("<|im_end|>"))
    model.generation_config.eos_token_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_qwen2_vl(out: Path, seed: int = 0, chatty: bool = False) -> Path:
    """Qwen2-VL: 2 layers, hidden 32 (head_dim 8, mrope_section [1, 1, 2] sums to head_dim / 2), a 2-block
    vision tower with 14-pixel patches merged 2x2."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    specials = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer, template = train_tokenizer(specials, "<|vision_start|><|image_pad|><|vision_end|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    pixels = dict(min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=template,
    )
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=32,
            num_heads=4,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    return _save(Qwen2VLForConditionalGeneration(config), processor, out, chatty)


def build_llava_onevision(out: Path, seed: int = 0, chatty: bool = False) -> Path:
    """LLaVA-OneVision: a 2-layer Qwen2 language model (hidden 32) on a 2-layer SigLIP tower over 28-pixel
    images in 14-pixel patches, with one anyres grid of a single tile."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer, template = train_tokenizer(["<image>", "<video>"], "<image>")
    size = {"height": 28, "width": 28}
    grid = [[28, 28]]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, crop_size=size, image_grid_pinpoints=grid),
        video_processor=LlavaOnevisionVideoProcessor(size=size, crop_size=size),
        tokenizer=tokenizer,
        chat_template=template,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
    )
    config = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=28,
            patch_size=14,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=grid,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    return _save(LlavaOnevisionForConditionalGeneration(config), processor, out, chatty)


def build_clip(out: Path, seed: int = 0) -> Path:
    """A CLIPModel with 2-layer text and vision towers (hidden 32) and a tokenizer trained on `CORPUS`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer, _ = train_tokenizer([], "")
    tokenizer.model_max_length = 64
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=28,
            patch_size=14,
        ),
        projection_dim=16,
        bos_token_id=None,
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def write_videos(folder: Path, count: int = 2, frames: int = 12) -> Path:
    """``count`` synthetic clips of a moving square (`sao.video.decode.write_test_video`), plus one file
    that is not a video, which the videos stage must count and skip."""
    from sao.video.decode import write_test_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_test_video(folder / f"clip{i}.mp4", frames=frames + 2 * i)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return folder
