"""The ``engine`` recipe section: which backend generates and scores, and where it runs.

One section serves every command that runs a model (``sao run``, ``sao eval``,
``sao judge-eval``), so a recipe switches a whole run from the in-process engine to
vLLM, to an OpenAI-compatible server or onto a Ray cluster by editing one block.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sao.recipe import Section

Backend = Literal["transformers", "llamacpp", "vllm", "openai"]


class VLLMSection(Section):
    """Settings of the offline ``vllm.LLM`` engine (``backend: vllm``, GPU, extra ``sao[vllm]``)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is sharded over.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="Share of each GPU's memory vLLM may take for weights and KV cache."
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse the KV cache of shared prompt prefixes (judge prompts share long ones)."
    )
    max_model_len: int | None = Field(None, ge=16, description="Context length; default: the model's own.")
    enforce_eager: bool = Field(False, description="Skip CUDA graph capture (faster start, slower decode).")


class LlamaCppSection(Section):
    """The in-process llama.cpp engine (``backend: llamacpp``, extra ``sao[llamacpp]``): GGUF weights, fast on CPUs."""

    gguf: str | None = Field(
        None,
        description="GGUF file with the weights; default: the embedded model's own, or model.gguf in a "
        "model directory (sao run writes it for each trained model).",
    )
    weights: Literal["f16", "bf16", "q8_0", "source"] = Field(
        "f16",
        description="Weight type llama.cpp runs: the GGUF is converted once and cached. f16 is fastest at "
        "batch and closest to float32 torch on AVX2 CPUs; bf16 uses AVX512-BF16 dot products where the CPU "
        "has them (docs/benchmarks.md compares the two); q8_0 is fastest single-stream; source: as given.",
    )
    context_per_sequence: int = Field(
        2048, ge=16, description="KV cells per sequence (prompt + generated); memory grows with batch_size x this."
    )
    n_threads: int | None = Field(None, ge=1, description="CPU threads; default: every CPU this process may use.")


class OpenAISection(Section):
    """The OpenAI-compatible HTTP engine (``backend: openai``): vLLM, SGLang, TGI, llama.cpp server, hosted APIs."""

    base_url: str | None = Field(None, description="Server URL up to /v1, e.g. http://localhost:8000/v1.")
    served_model: str | None = Field(None, description="Model name the server knows; default: the recipe's model.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never logged or stored)."
    )
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout: float = Field(120.0, gt=0, description="Seconds one request may take before it is retried.")
    max_retries: int = Field(
        6, ge=0, description="Retries of a request after 429, 5xx, a timeout or a lost connection."
    )
    backoff: float = Field(1.0, gt=0, description="First retry delay in seconds; doubles each retry, with jitter.")
    api: Literal["chat", "completions"] = Field(
        "completions",
        description="completions: sao renders the chat template and sends token ids (text to servers that "
        "refuse ids), so outputs match the in-process engine; chat: the server applies its own template "
        "(hosted APIs).",
    )


class RaySection(Section):
    """Generation as Ray Data ``map_batches`` over engine actors (``sao ... --ray``)."""

    enabled: bool = Field(False, description="Run generation on Ray engine actors.")
    address: str | None = Field(None, description="Ray cluster address ('auto', ray://host:10001); none: a local one.")
    num_actors: int = Field(1, ge=1, description="Engine actors: one per GPU, or one per CPU slice.")
    num_gpus_per_actor: float = Field(0, ge=0, description="GPUs each actor reserves (1 per vLLM actor with TP 1).")
    num_cpus_per_actor: float = Field(1, gt=0, description="CPUs each actor reserves.")
    batch_size: int = Field(16, ge=1, description="Requests handed to an actor at a time.")


class EngineSection(Section):
    backend: Backend = Field(
        "transformers", description="transformers (in-process, default), llamacpp (GGUF, CPU), vllm or openai."
    )
    batch_size: int = Field(32, ge=1, description="Sequences decoded together by the in-process engine.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Generation precision; 'auto' is bf16 where native, else float32."
    )
    llamacpp: LlamaCppSection = Field(default_factory=LlamaCppSection)
    vllm: VLLMSection = Field(default_factory=VLLMSection)
    openai: OpenAISection = Field(default_factory=OpenAISection)
    ray: RaySection = Field(default_factory=RaySection)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> EngineSection:
        if self.backend == "openai" and not self.openai.base_url:
            raise ValueError("openai.base_url: backend 'openai' needs the server's URL, e.g. http://localhost:8000/v1")
        return self
