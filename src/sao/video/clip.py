"""A CLIP or SigLIP model that scores texts against a video's frames: VideoSAVi's check of each pair.

Any dual-encoder with ``get_text_features`` and ``get_image_features`` (CLIP, SigLIP, SigLIP 2 and their
fine-tunes) loads by name with ``AutoModel`` and ``AutoProcessor``, safetensors only. A text's similarity to
a video is the cosine between its embedding and the mean of the frames' unit embeddings, renormalised: one
direction for the whole clip, so that an answer is judged against every sampled moment at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sao.errors import ModelLoadError, first_line
from sao.video.frames import load_images


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output from get_*_features for some families, a tensor for others.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return torch.nn.functional.normalize(tensor.float(), dim=-1)


class ClipScorer:
    """Text-to-video similarities with a CLIP-family model (``spec``: directory or hub id)."""

    def __init__(self, spec: str, *, device: str = "auto", trust_remote_code: bool = False):
        from transformers import AutoModel, AutoProcessor

        from sao.models import hub_reachable, pick_device, resolve_model_path

        path = resolve_model_path(spec)
        options = dict(trust_remote_code=trust_remote_code, local_files_only=not hub_reachable())
        try:
            self.processor = AutoProcessor.from_pretrained(path, **options)
            self.model = AutoModel.from_pretrained(path, use_safetensors=True, **options)
        except (OSError, ValueError, ImportError) as exc:
            raise ModelLoadError(f"synth.clip.model: cannot load '{spec}': {first_line(exc)}") from exc
        if not (hasattr(self.model, "get_text_features") and hasattr(self.model, "get_image_features")):
            raise ModelLoadError(f"synth.clip.model: '{spec}' ({type(self.model).__name__}) is not a CLIP-style model")
        self.spec = spec
        self.model.to(pick_device(device)).eval()
        # SigLIP was trained on texts padded to its full length; CLIP pads to the longest in the batch.
        self.padding = "max_length" if "siglip" in self.model.config.model_type else True

    @torch.inference_mode()
    def video_embedding(self, frames: Sequence[str]) -> torch.Tensor:
        inputs = self.processor(images=load_images(frames), return_tensors="pt").to(self.model.device)
        frames_unit = _features(self.model.get_image_features(**inputs))
        return torch.nn.functional.normalize(frames_unit.mean(0), dim=-1)

    @torch.inference_mode()
    def similarities(self, texts: Sequence[str], frames: Sequence[str]) -> list[float]:
        """The cosine similarity of each text to the video of ``frames`` (frame file paths)."""
        video = self.video_embedding(frames)
        inputs = self.processor(text=list(texts), padding=self.padding, truncation=True, return_tensors="pt")
        text_unit = _features(self.model.get_text_features(**inputs.to(self.model.device)))
        return (text_unit @ video).tolist()
