"""vLLM behind sao's engine interface: the offline ``vllm.LLM`` on GPUs (``backend: vllm``, extra ``sao[vllm]``).

It agrees with the in-process `TransformersEngine` wherever two backends can:

- prompts are sao's own token ids (`sao.engine.prompts`: chat-templated for a conversation, as training
  sees it), fed as ``prompt_token_ids``, so vLLM never applies a template of its own; raw-text and
  token-id prompts go the same way;
- sample ``j`` of a request is its own vLLM request with ``n=1`` and ``seed=derive_seed(base, j)``, so any
  sample can be regenerated alone. The seeds equal the in-process engine's; the tokens drawn from them do
  not, since each backend turns a seed into random numbers its own way;
- ``token_ids`` hold no trailing EOS, stop strings are cut from the text (vLLM does that), and scores are
  the log-softmax of the raw logits (vLLM's default ``logprobs_mode``);
- ``top_k`` is vLLM's own (sent only when set: 0 and -1 both mean no limit, depending on the release), and a
  sample's log-probs (``SamplingParams.logprobs``) are vLLM's for the sampled token (``logprobs=0``): raw,
  that is before temperature, top-k and top-p as in sao, but also before logit bias and penalties, which
  sao's engines apply first; `check_logprobs` refuses that combination rather than report other numbers.

Building requests and mapping outputs are pure functions that never import vLLM, so they are tested
without it; only `VLLMEngine` talks to vLLM. Written against vLLM 0.27-0.32, the releases that pin
torch 2.13.0 like sao does.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sao.engine.capabilities import CAPABILITIES, Capability, check_call, check_sampling, prompt_needs
from sao.engine.chat_template import check_conversation
from sao.engine.logit_controls import bias_ids
from sao.engine.media import image_paths, template_messages
from sao.engine.prompts import continuation_ids, prompt_ids
from sao.engine.types import (
    Completion,
    Continuation,
    FinishReason,
    NextTokenLogprobs,
    Prompt,
    Sample,
    SamplingParams,
    TokenLogprobs,
    check_top_k,
    per_request,
    sample_seed,
)
from sao.errors import ConfigError, ModelLoadError, first_line
from sao.models import is_vision_model, resolve_model_path
from sao.video.frames import load_images

if TYPE_CHECKING:
    from sao.engine.config import EngineSection

log = logging.getLogger(__name__)

INSTALL_HINT = "backend 'vllm' needs vLLM and a GPU: pip install 'sao[vllm]'"

# Scoring reads the prompt's own log-probs, so one generated token (greedy, never decoded) is the least
# vLLM accepts. prompt_logprobs=0 returns only the actual token at each position; flat_logprobs stores
# them in a few flat lists rather than one dict per token, which long judge prompts make worth it. vLLM
# skips reading the prefix cache for such requests (cached blocks carry no logits), so scores do not
# depend on it.
SCORE_SAMPLING: dict[str, Any] = {
    "n": 1,
    "max_tokens": 1,
    "temperature": 0.0,
    "prompt_logprobs": 0,
    "flat_logprobs": True,
    "detokenize": False,
}
# vLLM's default cap on the log-probs one position returns (``LLM(max_logprobs=...)``).
MAX_LOGPROBS = 20


# ---------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class GenerationRequest:
    """One vLLM request: sample ``sample`` of prompt ``conv``."""

    conv: int
    sample: int
    prompt_token_ids: list[int]  # empty for a conversation with images: vLLM expands their placeholders itself
    sampling: dict[str, Any]  # keyword arguments of vllm.SamplingParams
    prompt_text: str | None = None  # a conversation with images, rendered with the model's processor
    images: tuple[str, ...] = ()  # their paths, in the order the placeholders of ``prompt_text`` take them

    @property
    def seed(self) -> int | None:
        return self.sampling["seed"]

    def inputs(self) -> dict[str, Any]:
        """vLLM's prompt: token ids, or for images the rendered text with ``multi_modal_data``."""
        if not self.images:
            return {"prompt_token_ids": self.prompt_token_ids}
        return {"prompt": self.prompt_text, "multi_modal_data": {"image": load_images(self.images)}}


@dataclass(frozen=True)
class ScoreRequest:
    """One scoring request: the prompt's ids followed by the continuation's."""

    prompt_token_ids: list[int]
    start: int  # index of the continuation's first token

    @property
    def target(self) -> list[int]:
        return self.prompt_token_ids[self.start :]


def sampling_kwargs(
    params: SamplingParams, seed: int | None, logit_bias: dict[int, float] | None = None
) -> dict[str, Any]:
    """``vllm.SamplingParams`` keywords for one sample (n=1: the n samples are separate requests).

    ``logit_bias`` is ``params.logit_bias`` resolved to token ids (`sao.engine.logit_controls.bias_ids`, with
    the engine's HF tokenizer, as the in-process engines resolve it); vLLM adds it at every step, as they do.
    vLLM's frequency and presence penalties count the output tokens, as sao's do for n = 1; it has no
    n-gram penalty (``penalty_ngram > 1`` is refused by `check_sampling` first). The controls are sent only
    when set, so a plain request's keywords are what they always were; so are ``top_k`` and ``logprobs``
    (``logprobs=0``: the sampled token's log-prob and no others).
    """
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop),
        "seed": seed,
    }
    if params.frequency_penalty:
        kwargs["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty:
        kwargs["presence_penalty"] = params.presence_penalty
    if logit_bias:
        kwargs["logit_bias"] = dict(logit_bias)
    if params.top_k:
        kwargs["top_k"] = params.top_k
    if params.logprobs:
        kwargs["logprobs"] = 0
    return kwargs


def check_logprobs(params: Sequence[SamplingParams]) -> None:
    """ConfigError for a request that asks for log-probs with a logit bias or a penalty: vLLM's raw
    log-probs come before those, sao's after them (`sao.engine.types.SamplingParams`)."""
    for i, p in enumerate(params):
        if p.logprobs and (p.logit_bias or p.penalised):
            raise ConfigError(
                f"logprobs: backend 'vllm' reports them before logit_bias and penalties, not after as sao's "
                f"engines do; request {i} asks for both"
            )


def _encoded(tokenizer: Any, processor: Any, prompt: Prompt) -> tuple[list[int], str | None, tuple[str, ...]]:
    """(token ids, None, ()) for a text prompt; ([], rendered text, image paths) for one with images."""
    if prompt_needs(prompt) != Capability.MULTIMODAL:
        return prompt_ids(tokenizer, [prompt])[0], None, ()
    if processor is None:
        raise ConfigError("multimodal: this vLLM engine's model is not a vision-language model (no processor)")
    check_conversation(prompt)  # type: ignore[arg-type]
    text = processor.apply_chat_template(template_messages(prompt), tokenize=False, add_generation_prompt=True)  # type: ignore[arg-type]
    return [], text, tuple(image_paths(prompt))  # type: ignore[arg-type]


def generation_requests(
    tokenizer: Any,
    prompts: Sequence[Prompt],
    sampling: SamplingParams | Sequence[SamplingParams],
    processor: Any = None,
) -> list[GenerationRequest]:
    """One request per sample of each prompt, in (prompt, sample) order; each logit_bias is resolved to
    token ids once per distinct params. A conversation with images is rendered with ``processor`` (a vision
    model's AutoProcessor) and sent as text with its images, which vLLM's own processor expands."""
    params = per_request(sampling, len(prompts))
    biases = {p: bias_ids(tokenizer, p.logit_bias) for p in set(params) if p.logit_bias}
    requests = []
    for c, (prompt, p) in enumerate(zip(prompts, params)):
        ids, text, images = _encoded(tokenizer, processor, prompt)
        for j in range(p.n):
            requests.append(
                GenerationRequest(c, j, ids, sampling_kwargs(p, sample_seed(p, j), biases.get(p)), text, images)
            )
    return requests


def score_requests(
    tokenizer: Any, prompts: Sequence[Prompt], continuations: Sequence[Continuation]
) -> list[ScoreRequest]:
    """Prompt ids plus continuation ids (`sao.engine.prompts`), exactly as `TransformersEngine.score` has them."""
    if len(prompts) != len(continuations):
        raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
    targets = continuation_ids(tokenizer, continuations)
    return [ScoreRequest(p + t, len(p)) for p, t in zip(prompt_ids(tokenizer, prompts), targets)]


# ----------------------------------------------------------------------------------------------- outputs
def finish_reason(output: Any) -> FinishReason:
    """vLLM's finish reason in sao's terms.

    'stop' (EOS, a stop token or a stop string) and 'length' (max_tokens or max_model_len) carry over.
    Any other ('abort', 'error', 'repetition') means the sample did not end on its own: it becomes
    'length', which the stages already treat as cut off, so it is never taken for a finished answer.
    """
    return "stop" if output.finish_reason == "stop" else "length"


def sample_token_ids(output: Any) -> list[int]:
    """The sample's token ids without the EOS that ended it.

    vLLM keeps the EOS, or the generation config's extra EOS ids (then ``stop_reason`` is that id), as the
    last token; the in-process engine never appends it. A stop string (``stop_reason`` is the string)
    ends on an ordinary token, which both engines keep.
    """
    ids = list(output.token_ids)
    if output.finish_reason == "stop" and not isinstance(output.stop_reason, str) and ids:
        ids.pop()
    return ids


def sample_logprobs(output: Any, token_ids: Sequence[int]) -> list[float] | None:
    """The log-prob of each of ``token_ids`` (`sample_token_ids`: a prefix of ``output.token_ids``), read from
    ``CompletionOutput.logprobs``, one ``{token id: Logprob}`` per generated token (a dict or vLLM's flat
    form, indexed alike); None when the request asked for none."""
    positions = output.logprobs
    if positions is None:
        return None
    return [float(positions[i][token].logprob) for i, token in enumerate(token_ids)]


def to_sample(output: Any, seed: int | None) -> Sample:
    """A vLLM ``CompletionOutput`` as a `Sample`."""
    reason = finish_reason(output)
    if output.finish_reason not in ("stop", "length"):
        log.warning("vLLM ended a sample with finish_reason=%r; reporting it as 'length'", output.finish_reason)
    ids = sample_token_ids(output)
    return Sample(output.text, ids, reason, seed, logprobs=sample_logprobs(output, ids))


def to_completions(
    requests: Sequence[GenerationRequest], outputs: Sequence[Any], counts: Sequence[int]
) -> list[Completion]:
    """One Completion per conversation (``counts[c]`` samples each) from the ``RequestOutput`` of each request."""
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
    completions = [Completion([None] * n) for n in counts]  # type: ignore[list-item]
    for request, output in zip(requests, outputs):
        completions[request.conv].samples[request.sample] = to_sample(output.outputs[0], request.seed)
    return completions


def top_k_sampling(k: int) -> dict[str, Any]:
    """One greedy token whose position reports its ``k`` most likely tokens: vLLM's raw log-probs (the
    log-softmax of the logits, before temperature and any processing), as the in-process engines report them."""
    return {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprobs": k, "detokenize": False}


def to_next_token_logprobs(output: Any, k: int) -> NextTokenLogprobs:
    """The ``k`` most likely next tokens, most likely first, from the first ``CompletionOutput.logprobs`` position
    (vLLM adds the sampled token there when it is not among the top k; greedy, it always is)."""
    position = output.outputs[0].logprobs[0]
    ranked = sorted(position.items(), key=lambda item: -float(item[1].logprob))[:k]
    return NextTokenLogprobs([int(token) for token, _ in ranked], [float(lp.logprob) for _, lp in ranked])


def to_token_logprobs(request: ScoreRequest, output: Any) -> TokenLogprobs:
    """The log-prob of each continuation token, read from ``RequestOutput.prompt_logprobs``.

    ``prompt_logprobs[i]`` maps token ids to ``Logprob`` for prompt position ``i`` (``None`` at 0, which
    has no context); the actual token is always among them.
    """
    positions = output.prompt_logprobs
    target = request.target
    logprobs = [float(positions[request.start + i][token].logprob) for i, token in enumerate(target)]
    return TokenLogprobs(target, logprobs)


# ------------------------------------------------------------------------------------------------ engine
def import_vllm() -> Any:
    """The vllm module, or a ConfigError with one line saying what to install."""
    try:
        import vllm
    except ImportError as exc:
        if exc.name == "vllm":
            raise ConfigError(INSTALL_HINT) from exc
        # vLLM is there but one of its own imports failed (often a CPU-only torch or a CUDA mismatch).
        raise ConfigError(f"backend 'vllm': vLLM is installed but does not import: {first_line(exc)}") from exc
    return vllm


def check_device(device: str) -> None:
    """vLLM places the model itself, on the visible GPUs; a recipe cannot point it at one device."""
    if device not in ("auto", "cuda"):
        raise ConfigError(
            f"engine.device: backend 'vllm' runs on the visible GPUs (choose them with CUDA_VISIBLE_DEVICES), "
            f"got '{device}'; use 'auto' or 'cuda'"
        )


def llm_kwargs(path: str, settings: EngineSection, *, trust_remote_code: bool, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for ``settings``.

    sao's dtype names are vLLM's. Their 'auto' differ slightly: vLLM takes the checkpoint's dtype and
    downcasts float32 checkpoints to the GPU's preferred half type (bf16 where supported), sao picks bf16
    where native, else float32. ``seed`` only seeds vLLM's global RNG; every sampled request has its own.
    """
    opts = settings.vllm
    kwargs: dict[str, Any] = {
        "model": path,
        "dtype": settings.dtype,
        "trust_remote_code": trust_remote_code,
        "seed": seed,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "gpu_memory_utilization": opts.gpu_memory_utilization,
        "enable_prefix_caching": opts.enable_prefix_caching,
        "enforce_eager": opts.enforce_eager,
    }
    if opts.max_model_len is not None:  # unset: vLLM takes the model's own context length
        kwargs["max_model_len"] = opts.max_model_len
    return kwargs


def text_only(prompts: Sequence[Prompt], call: str) -> None:
    """ConfigError for the first prompt with images: vLLM takes them only in `VLLMEngine.generate`."""
    for i, prompt in enumerate(prompts):
        if prompt_needs(prompt) == Capability.MULTIMODAL:
            raise ConfigError(
                f"multimodal: backend 'vllm' takes images only in generate; prompt {i} of a {call} call has some"
            )


def load_processor(spec: str, path: str, *, trust_remote_code: bool) -> Any:
    """A vision model's AutoProcessor, whose chat template renders image placeholders."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"cannot load the processor of model '{spec}': {first_line(exc)}") from exc


def load_tokenizer(spec: str, path: str, *, trust_remote_code: bool) -> Any:
    """The HF tokenizer that `encode_prompts` uses, the same one the in-process engine and training load."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of model '{spec}': {first_line(exc)}") from exc


class VLLMEngine:
    """Generation and scoring with an offline ``vllm.LLM``.

    GPU memory: vLLM reserves ``gpu_memory_utilization`` of each GPU for weights and KV cache as soon as
    it starts, so a run that also trains on the same GPUs works in phases: generate (and judge/score),
    then `close` the engine, which ends vLLM's workers and hands the memory back, then train; the next
    round starts a fresh engine on the new weights (`sao.engine.lazy.LazyEngine.release` calls `close`).
    vLLM also offers ``LLM.sleep(level=1)`` / ``wake_up()`` (weights to CPU RAM, KV cache dropped; it needs
    ``enable_sleep_mode=True`` at start), which saves the restart when the same weights are needed again.

    Args:
        llm: a started ``vllm.LLM``.
        tokenizer: the model's HF tokenizer, for sao's chat template.
        progress: show vLLM's progress bar.
    """

    kind = "vllm"
    capabilities = CAPABILITIES["vllm"]

    def __init__(self, llm: Any, tokenizer: Any, *, progress: bool = True, processor: Any = None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.progress = progress
        self.processor = processor  # a vision model's AutoProcessor: it renders conversations with images

    @classmethod
    def from_spec(
        cls,
        spec: str,
        settings: EngineSection,
        *,
        trust_remote_code: bool = False,
        seed: int = 0,
        progress: bool = True,
    ) -> VLLMEngine:
        """Start vLLM on ``spec`` (alias, directory or hub id) with the recipe's ``engine`` settings."""
        vllm = import_vllm()
        check_device(settings.device)
        path = resolve_model_path(spec)
        tokenizer = load_tokenizer(spec, path, trust_remote_code=trust_remote_code)
        processor = load_processor(spec, path, trust_remote_code=trust_remote_code) if is_vision_model(spec) else None
        llm = vllm.LLM(**llm_kwargs(path, settings, trust_remote_code=trust_remote_code, seed=seed))
        return cls(llm, tokenizer, progress=progress, processor=processor)

    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """Sample ``n`` continuations per prompt; returns one Completion each, in order."""
        check_call(self, "generate", prompts)
        params = per_request(sampling, len(prompts))
        check_sampling(self, params, "generate")
        check_logprobs(params)
        requests = generation_requests(self.tokenizer, prompts, params, self.processor)
        started = time.perf_counter()
        outputs = self._run([r.inputs() for r in requests], [r.sampling for r in requests])
        completions = to_completions(requests, outputs, [p.n for p in params])
        tokens = sum(s.num_tokens for c in completions for s in c.samples)
        elapsed = max(time.perf_counter() - started, 1e-9)
        log.debug(
            "generated %d tokens for %d sequences in %.1fs (%.0f tok/s)",
            tokens,
            len(requests),
            elapsed,
            tokens / elapsed,
        )
        return completions

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-prob of each continuation token after its prompt (a conversation's: as the assistant's reply).
        Text conversations only: vLLM expands image placeholders itself, so a continuation's start in the
        prompt log-probs is not known here (a conversation with images is a ConfigError)."""
        check_call(self, "score", prompts, continuations)
        text_only(prompts, "score")
        requests = score_requests(self.tokenizer, prompts, continuations)
        outputs = self._run(
            [{"prompt_token_ids": r.prompt_token_ids} for r in requests], [SCORE_SAMPLING] * len(requests)
        )
        return [to_token_logprobs(r, o) for r, o in zip(requests, outputs)]

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """The ``k`` most likely next tokens after each prompt, most likely first (one greedy token per prompt,
        `top_k_sampling`). vLLM returns at most ``MAX_LOGPROBS`` per position: a larger ``k`` is a ConfigError."""
        check_top_k(k)
        if k > MAX_LOGPROBS:
            raise ConfigError(f"top_logprobs: vLLM returns at most {MAX_LOGPROBS} log-probs a position; asked for {k}")
        check_call(self, "top_logprobs", prompts)
        text_only(prompts, "top_logprobs")
        encoded = prompt_ids(self.tokenizer, prompts)
        outputs = self._run([{"prompt_token_ids": ids} for ids in encoded], [top_k_sampling(k)] * len(encoded))
        return [to_next_token_logprobs(output, k) for output in outputs]

    def _run(self, prompts: list[dict[str, Any]], sampling: list[dict[str, Any]]) -> list[Any]:
        if self.llm is None:
            raise RuntimeError("VLLMEngine: used after close()")
        if not prompts:  # vLLM rejects an empty batch
            return []
        from vllm import SamplingParams as VLLMSamplingParams

        return self.llm.generate(
            prompts,
            [VLLMSamplingParams(**kwargs) for kwargs in sampling],
            use_tqdm=self.progress,
        )

    def close(self) -> None:
        """Stop vLLM and free its GPU memory for training; the engine cannot be used afterwards.

        Dropping the ``LLM`` is not enough: its engine core runs in a child process (and its tensor
        parallel workers in more), which hold the weights and KV cache until they are shut down.
        """
        llm, self.llm = self.llm, None
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm, engine_core
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        except ImportError:  # moved or renamed in a later vLLM: the gc and cache release below still run
            pass
        else:
            cleanup_dist_env_and_memory()
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
