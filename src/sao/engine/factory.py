"""Build the engine a recipe's ``engine`` section asks for. Backends import lazily, so
vLLM, the OpenAI client and Ray are only needed by the runs that use them."""

from __future__ import annotations

from typing import Any

from sao.engine.backends import build_backend
from sao.engine.config import EngineSection
from sao.engine.types import Engine


def build_engine(
    model: str,
    settings: EngineSection,
    *,
    trust_remote_code: bool = False,
    progress: bool = True,
    base_model: str | None = None,
) -> Engine:
    """An engine on ``model`` (alias, directory or hub id; for ``openai``, the served model by default):
    Ray engine actors when ``settings.ray.enabled``, else `sao.engine.backends.build_backend` here.

    ``base_model`` is lineage, not a backend setting: the model ``model`` was trained from (the model a
    run started from), or None. An engine on a model this run trained passes it, whatever the backend;
    llama.cpp uses it to export the trained weights to GGUF once (see `build_backend`).
    """
    if settings.ray.enabled:
        from sao.engine.ray_engine import RayEngine

        return RayEngine(model, settings, trust_remote_code=trust_remote_code, progress=progress, base_model=base_model)
    return build_backend(model, settings, trust_remote_code=trust_remote_code, progress=progress, base_model=base_model)


def engine_model_info(model: str, settings: EngineSection) -> dict[str, Any]:
    """What a run manifest records about the model behind an engine, and the engine itself.

    A local model is identified by its weights' fingerprint (`sao.models.model_info`). A model
    behind an HTTP endpoint has no weights here: the endpoint and served name stand in for
    them (the API key is never part of it). The engine is recorded as ``backend``, ``dtype``
    (the precision it computes in, ``auto`` resolved on this machine) and, for llama.cpp,
    the GGUF ``weights`` type and file: each changes the rows, so `RunStore.open` refuses a
    resume that changes one. A model trained from another is identified by its own HF weights on every
    backend: llama.cpp's GGUF of it is exported from them (`sao.engine.llamacpp_engine.served_gguf`),
    and the ``gguf`` setting recorded then names the base model's GGUF, its template.
    """
    if settings.backend == "openai" and not settings.ray.enabled:
        served = settings.openai.served_model or model
        return {"spec": model, "backend": "openai", "fingerprint": f"{settings.openai.base_url}#{served}"}
    from sao.models import model_info

    return model_info(model) | engine_identity(settings)


def engine_identity(settings: EngineSection) -> dict[str, Any]:
    """The settings of a local engine that change what it generates (see `engine_model_info`)."""
    identity: dict[str, Any] = {"backend": settings.backend}
    if settings.backend == "llamacpp":  # llama.cpp runs the GGUF's own types; it has no dtype setting
        identity["weights"] = settings.llamacpp.weights
        if settings.llamacpp.gguf:
            identity["gguf"] = settings.llamacpp.gguf
    elif settings.backend == "transformers":
        from sao.models import pick_device, pick_dtype

        dtype = pick_dtype(settings.dtype, pick_device(settings.device))
        identity["dtype"] = str(dtype).removeprefix("torch.")
    else:  # vllm resolves 'auto' from the model's config when it loads
        identity["dtype"] = settings.dtype
    return identity
