"""The per-process engine of each backend. Backends import lazily, so vLLM, the OpenAI client
and llama.cpp are only needed by the runs that use them."""

from __future__ import annotations

from sao.engine.config import EngineSection
from sao.engine.types import Engine


def build_backend(
    model: str,
    settings: EngineSection,
    *,
    trust_remote_code: bool = False,
    progress: bool = True,
    base_model: str | None = None,
) -> Engine:
    """The engine of ``settings.backend`` in this process (alias, directory or hub id; for ``openai``,
    the served model by default). `sao.engine.factory.build_engine` adds Ray; its actors call this.

    ``base_model`` is the model ``model`` was trained from, if any. Only llama.cpp needs it: it runs
    GGUF files, and a trained model's is exported from its HF weights with the base model's GGUF as
    template (`sao.engine.llamacpp_engine.served_gguf`). The others run the HF weights as they are.
    """
    if settings.backend == "llamacpp":
        from sao.engine.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.from_spec(
            model, settings, trust_remote_code=trust_remote_code, progress=progress, base_model=base_model
        )
    if settings.backend == "vllm":
        from sao.engine.vllm_engine import VLLMEngine

        return VLLMEngine.from_spec(model, settings, trust_remote_code=trust_remote_code, progress=progress)
    if settings.backend == "openai":
        from sao.engine.openai_engine import OpenAIEngine

        return OpenAIEngine.from_spec(model, settings, trust_remote_code=trust_remote_code, progress=progress)
    from sao.models import is_vision_model

    if is_vision_model(model):
        from sao.engine.vision_engine import VisionEngine

        return VisionEngine.from_spec(
            model, device=settings.device, dtype=settings.dtype, trust_remote_code=trust_remote_code, progress=progress
        )
    from sao.engine.transformers_engine import TransformersEngine

    engine = TransformersEngine.from_spec(
        model,
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=trust_remote_code,
        max_batch_size=settings.batch_size,
    )
    engine.progress = progress
    return engine
