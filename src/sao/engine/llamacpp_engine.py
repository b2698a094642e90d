"""A llama.cpp engine: a GGUF model in-process through llama-cpp-python's C API (extra ``sao[llamacpp]``).

On a CPU this is the fast path for generation and judging. llama.cpp runs the GGUF's
quantised weights directly (SmolLM2-135M ships as Q4_1: 85 MB read per decode step
instead of 540 MB of float32) with AVX2 integer kernels, and decodes many sequences in
one ``llama_decode`` call, each in its own KV stream.

The batch is refilled continuously: a sequence that finishes frees its KV stream and the
next waiting prompt is prefilled in the same call that decodes the others, so the batch
stays full instead of draining down to its longest row.

Prompts of every kind are tokenized by the model's Hugging Face tokenizer (`sao.engine.prompts`),
and tokens are chosen by sao's own sampler with per-request generators, exactly as in the
transformers engine; only the forward pass is llama.cpp's. Its numerics differ from float32 torch
(activations are quantised to 8 bits for the integer dot products), so greedy text agrees
with the transformers engine for a prefix, not token for token (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import tempfile
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sao.engine.capabilities import CAPABILITIES, check_call, check_sampling
from sao.engine.config import LlamaCppSection
from sao.engine.decoding import Job, Meter, adjusted, eos_ids, make_jobs, token_logprobs
from sao.engine.prefix_cache import MIN_SHARED, common_prefix_length, shareable_length
from sao.engine.prompts import continuation_ids, prompt_ids
from sao.engine.sampler import choose_tokens
from sao.engine.scoring import expand, group_requests
from sao.engine.stops import StopStrings
from sao.engine.types import (
    Completion,
    Continuation,
    NextTokenLogprobs,
    Prompt,
    SamplingParams,
    TokenLogprobs,
    check_top_k,
    per_request,
)
from sao.errors import ConfigError, InputError, ModelLoadError
from sao.gguf_export import FILE_TYPES, TRAINED_GGUF, ensure_gguf

log = logging.getLogger(__name__)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(
            f"engine backend 'llamacpp' needs llama-cpp-python: pip install 'sao[llamacpp]' ({exc})"
        ) from None
    return llama_cpp


_silence: Any = None  # the C log callback must outlive every context, so it is kept here
_GGML_LOG_LEVEL_ERROR = 3  # ggml.h's enum ggml_log_level; llama-cpp-python does not export it


def _quiet_logs(llama_cpp: Any) -> None:
    """llama.cpp prints every tensor it loads to stderr; route only its errors to our logger."""
    global _silence
    if _silence is None:

        def forward(level: int, text: bytes, _user_data: Any) -> None:
            if level == _GGML_LOG_LEVEL_ERROR:
                log.error("llama.cpp: %s", text.decode(errors="replace").rstrip())

        _silence = llama_cpp.llama_log_callback(forward)
        llama_cpp.llama_log_set(_silence, ctypes.c_void_p(0))


def gguf_path(spec: str, settings: LlamaCppSection) -> Path:
    """The GGUF file behind ``spec``: the recipe's ``llamacpp.gguf``, the embedded model's own, or
    ``model.gguf`` in a model directory."""
    from sao.embedded_models import EMBEDDED_MODELS
    from sao.models import gguf_location

    if settings.gguf:
        path = Path(settings.gguf).expanduser()
        if not path.is_file():
            raise ConfigError(f"engine.llamacpp.gguf: no such file: {path}")
        return path
    if spec in EMBEDDED_MODELS:
        return gguf_location(EMBEDDED_MODELS[spec])
    if (Path(spec).expanduser() / TRAINED_GGUF).is_file():
        return Path(spec).expanduser() / TRAINED_GGUF
    raise ConfigError(
        f"engine.llamacpp.gguf: model '{spec}' has no GGUF file (not an embedded model, no {TRAINED_GGUF} in it); "
        "give the path of its GGUF file"
    )


def served_gguf(spec: str, settings: LlamaCppSection, base_model: str | None = None) -> Path:
    """The GGUF file llama.cpp runs for ``spec``, trained from ``base_model`` (None: not trained here).

    A model trained from another (a directory of HF weights, as `sao run` writes) has no GGUF of its
    own: its weights are exported once to ``model.gguf`` in its directory, with the tokenizer and
    metadata of ``base_model``'s GGUF (training changes neither), and that file is used from then on.
    ``llamacpp.gguf`` then names the base model's GGUF, the one the run started from.
    """
    if base_model is None or spec == base_model:
        return gguf_path(spec, settings)
    directory = Path(spec).expanduser()
    if not directory.is_dir():
        raise ConfigError(
            f"engine.llamacpp: model '{spec}', trained from '{base_model}', is not a directory of HF weights "
            "to export to GGUF"
        )
    # 'source' means the base GGUF's own type, which an export cannot keep: it writes float16.
    weights = "f16" if settings.weights == "source" else settings.weights
    return ensure_gguf(directory, gguf_path(base_model, settings), weights)


def model_params(lc: Any) -> Any:
    """llama.cpp's default model parameters, without the extra (repacked) weight buffers on AMX CPUs.

    On a CPU with AMX, llama.cpp (as built by llama-cpp-python 0.3.36) moves quantised weights
    (q8_0, the shipped Q4_1) into its AMX buffer type, and the first decode then segfaults: seen on
    a Xeon with amx_tile/amx_int8, in this engine and in llama-cpp-python's own `Llama`. f16 weights
    never use that buffer. Without extra buffers the weights stay in plain CPU memory and run on the
    AVX-512 kernels. Elsewhere the extra buffers stay on: they hold the AVX2 repacks of Q4_0.
    """
    params = lc.llama_model_default_params()
    if torch.cpu._is_amx_tile_supported():
        params.use_extra_bufts = False
    return params


def runnable_gguf(source: Path, weights: str) -> Path:
    """``source`` in the weight type ``weights``: itself when it already is (or ``weights`` is 'source'),
    else a copy converted once by llama.cpp's own quantizer and cached under sao's cache directory."""
    import gguf

    from sao.embedded_models import cache_root

    if weights == "source":
        return source
    file_type = gguf.GGUFReader(source).fields.get(gguf.Keys.General.FILE_TYPE)
    if file_type is not None and int(file_type.contents()) == FILE_TYPES[weights]:
        return source
    stat = source.resolve().stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    dest = cache_root() / "gguf" / f"{source.stem}-{key}.{weights}.gguf"
    if dest.is_file():
        return dest
    lc = _import_llama_cpp()
    _quiet_logs(lc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    os.close(fd)
    try:
        params = lc.llama_model_quantize_default_params()
        params.ftype = FILE_TYPES[weights]
        params.allow_requantize = True  # the embedded GGUF is already quantised (Q4_1)
        log.info("converting %s to %s for llama.cpp (first use only)", source.name, weights)
        if lc.llama_model_quantize(str(source).encode(), tmp.encode(), params) != 0:
            raise ModelLoadError(f"llama.cpp could not convert {source} to {weights}")
        os.replace(tmp, dest)  # a killed conversion leaves no half-written file behind
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _free_native(llama_cpp: Any, batch: Any, ctx: Any, model: Any) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


@dataclass
class _Stream:
    """One sequence in one KV stream (``slot``): tokens still to feed, and at which position."""

    pending: list[int]
    job: Job | None = None  # generating: the sequence's decoding state
    tokens: list[int] | None = None  # scoring: the whole sequence, prompt + continuation
    index: int = 0  # scoring: which request group
    slot: int = -1
    pos: int = 0  # where ``pending`` starts: past the ``pos`` prefix tokens copied from the prefix stream

    @property
    def length(self) -> int:
        return len(self.tokens or ())


class LlamaCppEngine:
    """Generation and scoring with a GGUF model in llama.cpp, many sequences per decode call.

    Args:
        model_path: the GGUF file.
        tokenizer: the model's Hugging Face tokenizer (chat template, tokenization, decoding).
        generation_config: where EOS ids beyond the tokenizer's come from (may be None).
        max_batch_size: sequences decoded together, each in its own KV stream.
        context_per_sequence: KV cells per stream (prompt + generated tokens).
        n_threads: CPU threads; default: the CPUs this process may use.
        tokens_per_call: most tokens per ``llama_decode`` call (prefill chunks + one per decoding row).
        progress: show progress bars.
        prefix_stream: keep one more KV stream for the prefix that a `score` or `top_logprobs` call's rows
            share (`_share_prefix`); False recomputes every prefix.
    """

    kind = "llamacpp"
    capabilities = CAPABILITIES["llamacpp"]

    def __init__(
        self,
        model_path: Path,
        tokenizer: Any,
        generation_config: Any = None,
        *,
        max_batch_size: int = 32,
        context_per_sequence: int = 2048,
        n_threads: int | None = None,
        tokens_per_call: int = 512,
        progress: bool = True,
        prefix_stream: bool = True,
    ):
        self.llama_cpp = lc = _import_llama_cpp()
        _quiet_logs(lc)
        lc.llama_backend_init()
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.context_per_sequence = context_per_sequence
        self.tokens_per_call = tokens_per_call
        self.progress = progress
        self.eos_ids = eos_ids(generation_config, tokenizer)

        self._model = lc.llama_model_load_from_file(str(model_path).encode(), model_params(lc))
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {model_path}")
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self._model))
        params = lc.llama_context_default_params()
        # The stream after the batch's holds a shared prefix (`_share_prefix`), copied into rows' streams.
        self._prefix_slot = max_batch_size if prefix_stream else None
        self._prefix: list[int] = []  # the tokens the prefix stream holds
        self.reused_tokens = 0  # prefix tokens rows copied from it instead of computing them
        streams = max_batch_size + (1 if prefix_stream else 0)
        params.n_seq_max = streams
        # One KV stream per sequence: attention then costs each row its own length only.
        # A unified cache would make every row attend over all rows' cells (masked).
        params.kv_unified = False
        params.n_ctx = streams * context_per_sequence
        params.n_batch = params.n_ubatch = tokens_per_call
        params.n_threads = params.n_threads_batch = n_threads or len(os.sched_getaffinity(0))
        params.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, params)
        if not self._ctx:
            lc.llama_model_free(self._model)
            raise ModelLoadError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens "
                "(engine.batch_size x engine.llamacpp.context_per_sequence); lower one of them"
            )
        self._memory = lc.llama_get_memory(self._ctx)
        self._batch = lc.llama_batch_init(tokens_per_call, 0, 1)
        # finalize, not __del__: it also runs at interpreter exit, before llama_cpp's module is torn down.
        self._free = weakref.finalize(self, _free_native, lc, self._batch, self._ctx, self._model)

    @classmethod
    def from_spec(
        cls,
        spec: str,
        settings: Any,
        *,
        trust_remote_code: bool = False,
        progress: bool = True,
        base_model: str | None = None,
    ) -> LlamaCppEngine:
        """``spec`` names the tokenizer (alias, directory or hub id); the weights are its GGUF
        (`served_gguf`: exported once when ``spec`` was trained from ``base_model``)."""
        from transformers import AutoTokenizer, GenerationConfig

        from sao.models import resolve_model_path

        path = runnable_gguf(served_gguf(spec, settings.llamacpp, base_model), settings.llamacpp.weights)
        source = resolve_model_path(spec)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        try:
            generation_config = GenerationConfig.from_pretrained(source)
        except OSError:
            generation_config = None
        return cls(
            path,
            tokenizer,
            generation_config,
            max_batch_size=settings.batch_size,
            context_per_sequence=settings.llamacpp.context_per_sequence,
            n_threads=settings.llamacpp.n_threads,
            progress=progress,
        )

    def close(self) -> None:
        """Free the context, the batch and the weights (idempotent; also runs at garbage collection or exit)."""
        self._free()

    # ------------------------------------------------------------------ decode calls
    def _decode(self, streams: list[_Stream], wants: Callable[[_Stream, int], bool]) -> list[tuple[_Stream, int]]:
        """Feed one ``llama_decode`` call from ``streams``; returns the owner of each logit row.

        Rows already decoding (one pending token) go first, in stream order, so that
        prefilling a new prompt never stalls them; prompts fill the rest of the call's token
        budget in chunks.
        ``wants(stream, position)`` says whether a token needs its logits. Each output is
        (stream, position of the token whose logits it holds).
        """
        lc, batch = self.llama_cpp, self._batch
        batch.n_tokens = 0
        outputs: list[tuple[_Stream, int]] = []
        budget = self.tokens_per_call
        for stream in sorted(streams, key=lambda s: (len(s.pending) > 1, s.slot)):
            take = min(len(stream.pending), budget)
            for i in range(take):
                n, pos = batch.n_tokens, stream.pos + i
                want = wants(stream, pos)
                batch.token[n] = stream.pending[i]
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = stream.slot
                batch.logits[n] = want
                batch.n_tokens = n + 1
                if want:
                    outputs.append((stream, pos))
            stream.pending = stream.pending[take:]
            stream.pos += take
            budget -= take
            if budget == 0:
                break
        status = lc.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} ({batch.n_tokens} tokens)")
        return outputs

    def _logits(self, rows: int) -> torch.Tensor:
        """The last call's ``rows`` output logits, copied out of llama.cpp's buffer."""
        pointer = self.llama_cpp.llama_get_logits(self._ctx)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(rows, self.n_vocab)).copy())

    def _drive(
        self,
        streams: list[_Stream],
        wants: Callable[[_Stream, int], bool],
        handle: Callable[[list[tuple[_Stream, int]], torch.Tensor], None],
        finished: Callable[[int], None],
    ) -> None:
        """Run ``streams`` through the KV streams, refilling each one as soon as it frees.

        ``handle`` gets every call's outputs and their logits, and queues a stream's next
        token in ``pending``; a stream with nothing pending after that is finished, and
        ``finished`` hears how many finished in each call.
        """
        waiting = deque(streams)
        free = list(range(self.max_batch_size))  # ascending: the lowest free slot is taken first
        active: list[_Stream] = []
        try:
            while waiting or active:
                while waiting and free:
                    stream = waiting.popleft()
                    stream.slot = free.pop(0)
                    if stream.pos:  # its first ``pos`` tokens are the prefix stream's: copy that KV, cut the rest
                        self.llama_cpp.llama_memory_seq_cp(self._memory, self._prefix_slot, stream.slot, -1, -1)
                        self.llama_cpp.llama_memory_seq_rm(self._memory, stream.slot, stream.pos, -1)
                    active.append(stream)
                outputs = self._decode(active, wants)
                if outputs:
                    handle(outputs, self._logits(len(outputs)))
                done = [s for s in active if not s.pending]
                for stream in done:
                    self.llama_cpp.llama_memory_seq_rm(self._memory, stream.slot, -1, -1)
                    free.append(stream.slot)
                free.sort()
                active = [s for s in active if s.pending]
                if not waiting:
                    self._compact(active, free)
                finished(len(done))
        finally:
            for stream in active:  # an exception mid-run must not leave stale KV behind
                self.llama_cpp.llama_memory_seq_rm(self._memory, stream.slot, -1, -1)

    def _compact(self, active: list[_Stream], free: list[int]) -> None:
        """Move the highest-numbered streams into lower free slots, so the active ones stay contiguous.

        A llama.cpp decode call attends over the range of KV streams from its lowest to its
        highest, and runs best with its tokens in stream order (`_decode` sorts them). With
        the holes finished rows leave, a draining batch ran at half speed on a 2-core CPU:
        155 vs 332 tok/s in a bare llama.cpp loop; the engine went from 162 to 264 tok/s
        with ordering and compaction. Refilling closes holes while prompts wait; once none
        do, this moves rows down (a copy of one stream's KV).
        """
        lc = self.llama_cpp
        for stream in sorted(active, key=lambda s: -s.slot):
            if not free or free[0] > stream.slot:
                break
            target = free.pop(0)
            lc.llama_memory_seq_cp(self._memory, stream.slot, target, -1, -1)
            lc.llama_memory_seq_rm(self._memory, stream.slot, -1, -1)
            free.append(stream.slot)
            free.sort()
            stream.slot = target

    def _share_prefix(self, rows: list[list[int]], keep_last: list[int]) -> int:
        """How many leading tokens of ``rows`` their streams can copy from the prefix stream instead of computing.

        RAIN's evaluations open with the same instructions and examples, and its searches ask again and again about
        one committed prefix. The prefix stream keeps the last shared prefix it was given; a call whose rows share
        enough of it (`sao.engine.prefix_cache.MIN_SHARED` tokens) reuses that much, and one that shares a prefix
        the stream lacks first writes it there, once. ``keep_last[r]``: trailing tokens of row r whose logits are
        wanted, which stay out of the prefix.
        """
        if self._prefix_slot is None:
            return 0
        shared = shareable_length(rows, keep_last)
        if not shared:
            return 0
        kept = common_prefix_length([self._prefix, rows[0][:shared]])
        if kept >= MIN_SHARED:  # what the stream holds serves, even when these rows share more
            self.reused_tokens += kept * len(rows)
            return kept
        lc, slot = self.llama_cpp, self._prefix_slot
        lc.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._prefix = []
        stream = _Stream(list(rows[0][:shared]), slot=slot)
        while stream.pending:
            self._decode([stream], lambda _stream, _pos: False)
        self._prefix = list(rows[0][:shared])
        self.reused_tokens += shared * (len(rows) - 1)  # the first row's prefix was computed, once, for all
        return shared

    def _check_fits(self, index: int, length: int, what: str) -> None:
        """InputError unless ``length`` tokens (``what`` of request ``index``) fit one KV stream."""
        if length > self.context_per_sequence:
            raise InputError(
                f"prompt {index}: {length} tokens ({what}) do not fit "
                f"engine.llamacpp.context_per_sequence ({self.context_per_sequence})"
            )

    # ------------------------------------------------------------------ generate
    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """Sample ``n`` continuations per prompt; returns one Completion each, in order."""
        check_call(self, "generate", prompts)
        params = per_request(sampling, len(prompts))
        check_sampling(self, params, "generate")
        jobs, params = make_jobs(self.tokenizer, prompts, params)
        for job in jobs:
            self._check_fits(job.conv, len(job.prompt) + 1, "the prompt and one new token")
        stops = {p.stop: StopStrings(self.tokenizer, p.stop) for p in params}
        generators = [None if job.seed is None else torch.Generator().manual_seed(job.seed) for job in jobs]
        # The n samples of one prompt (or a RAIN search's draws from one leaf) copy its KV from the prefix stream.
        shared = self._share_prefix([list(job.prompt) for job in jobs], [1] * len(jobs))
        streams = [_Stream(list(job.prompt[shared:]), job=job, index=i, pos=shared) for i, job in enumerate(jobs)]
        meter = Meter(len(jobs), self.progress)

        def step(outputs: list[tuple[_Stream, int]], logits: torch.Tensor) -> None:
            rows = [stream for stream, _ in outputs]
            temperature = torch.tensor([[s.job.params.temperature or 1.0] for s in rows])  # type: ignore[union-attr]
            top_p = torch.tensor([[s.job.params.top_p] for s in rows])  # type: ignore[union-attr]
            jobs_now = [s.job for s in rows]
            logits = adjusted(logits, jobs_now)  # type: ignore[arg-type]
            top_k = [s.job.params.top_k for s in rows]  # type: ignore[union-attr]
            tokens = choose_tokens(logits, temperature, top_p, [generators[s.index] for s in rows], top_k)
            logprobs = token_logprobs(logits, tokens, jobs_now)  # type: ignore[arg-type]
            for stream, token, logprob in zip(rows, tokens.tolist(), logprobs):
                job = stream.job
                assert job is not None
                # A full KV stream ends the row as if it had hit max_new_tokens.
                accepted = job.accept(token, self.eos_ids, stops[job.params.stop], logprob)
                if accepted and stream.pos < self.context_per_sequence:
                    stream.pending = [token]
            meter.advance(tokens=len(rows), finished=0)

        def wants(stream: _Stream, pos: int) -> bool:
            return pos >= len(stream.job.prompt) - 1  # type: ignore[union-attr]

        # Longest prompts first: they take longest, and the short ones fill in behind them.
        streams.sort(key=lambda s: -len(s.pending))
        try:
            self._drive(streams, wants, step, lambda done: meter.advance(tokens=0, finished=done))
        finally:
            meter.close()
        completions = [Completion([None] * p.n) for p in params]  # type: ignore[list-item]
        for job in jobs:
            completions[job.conv].samples[job.sample] = job.result(self.tokenizer, stops[job.params.stop])
        return completions

    # ------------------------------------------------------------------ score
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-prob of each continuation token after its prompt (a conversation's: as the assistant's reply).

        Requests that differ only in their last token share one pass (`sao.engine.scoring`).
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
        check_call(self, "score", prompts, continuations)
        targets = continuation_ids(self.tokenizer, continuations)
        groups = group_requests(prompt_ids(self.tokenizer, prompts), targets)
        for group in groups:
            self._check_fits(group.members[0], group.length, "the prompt and its continuation")
        rows = [g.prompt + g.target for g in groups]
        # A row's last len(target) + 1 positions predict its target, so they stay out of the shared prefix.
        shared = self._share_prefix(rows, [len(g.target) + 1 for g in groups])
        streams = [_Stream(row[shared:], tokens=row, index=i, pos=shared) for i, row in enumerate(rows)]
        heads: list[list[float]] = [[0.0] * max(len(g.target) - 1, 0) for g in groups]
        lasts: list[list[float]] = [[] for _ in groups]

        def first_scored(stream: _Stream) -> int:
            """The position whose logits predict the continuation's first token."""
            return stream.length - len(groups[stream.index].target) - 1

        def wants(stream: _Stream, pos: int) -> bool:
            return first_scored(stream) <= pos < stream.length - 1

        def step(outputs: list[tuple[_Stream, int]], logits: torch.Tensor) -> None:
            norm = logits.logsumexp(-1)
            following = torch.tensor([stream.tokens[pos + 1] for stream, pos in outputs])  # type: ignore[index]
            values = (logits.gather(-1, following[:, None]).squeeze(-1) - norm).tolist()
            for row, (stream, pos) in enumerate(outputs):
                if pos == stream.length - 2:  # the last position: every member's final token
                    lasts[stream.index] = (logits[row, groups[stream.index].last_tokens] - norm[row]).tolist()
                else:
                    heads[stream.index][pos - first_scored(stream)] = values[row]

        bar = tqdm(total=len(streams), unit="seq", desc="score", disable=not self.progress, leave=False)
        try:
            self._drive(streams, wants, step, bar.update)
        finally:
            bar.close()
        return expand(groups, list(zip(heads, lasts)), targets)

    # ------------------------------------------------------------------ top_logprobs
    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """The ``k`` most likely next tokens after each prompt (at most the vocabulary), most likely first.

        Each prompt runs through a KV stream with logits asked for at its last position only.
        """
        check_top_k(k)
        check_call(self, "top_logprobs", prompts)
        encoded = prompt_ids(self.tokenizer, prompts)
        for i, ids in enumerate(encoded):
            self._check_fits(i, len(ids), "the prompt")
        shared = self._share_prefix([list(ids) for ids in encoded], [1] * len(encoded))
        streams = [_Stream(list(ids[shared:]), tokens=list(ids), index=i, pos=shared) for i, ids in enumerate(encoded)]
        results: list[NextTokenLogprobs] = [None] * len(encoded)  # type: ignore[list-item]

        def wants(stream: _Stream, pos: int) -> bool:
            return pos == stream.length - 1

        def step(outputs: list[tuple[_Stream, int]], logits: torch.Tensor) -> None:
            values, tokens = logits.float().log_softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
            for row, (stream, _) in enumerate(outputs):
                results[stream.index] = NextTokenLogprobs(tokens[row].tolist(), values[row].tolist())

        bar = tqdm(total=len(streams), unit="seq", desc="top_logprobs", disable=not self.progress, leave=False)
        try:
            self._drive(streams, wants, step, bar.update)
        finally:
            bar.close()
        return results
