"""The embedded default engine: a transformers model, in-process, on CPU or GPU.

It runs its own decode loop over the model's KV cache rather than ``model.generate``,
for two reasons ``generate`` cannot serve: per-request seeds (``generate`` draws every
row from one global RNG) and dropping finished rows from the batch so that the
remaining ones run faster (``generate`` keeps decoding pad tokens for them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from sao.engine.attention import use_gqa_sdpa
from sao.engine.batching import left_pad, length_buckets
from sao.engine.capabilities import IN_PROCESS, check_call, check_sampling
from sao.engine.decoding import Job, Meter, adjusted, eos_ids, make_jobs, token_logprobs
from sao.engine.growing_cache import growing_cache
from sao.engine.prefix_cache import PrefixCache, cached_forward
from sao.engine.prompts import continuation_ids, prompt_ids
from sao.engine.sampler import choose_tokens
from sao.engine.scoring import ScoreGroup, expand, group_requests
from sao.engine.stops import StopStrings
from sao.engine.types import (
    Completion,
    Continuation,
    NextTokenLogprobs,
    Prompt,
    Sample,
    SamplingParams,
    TokenLogprobs,
    check_top_k,
    per_request,
)
from sao.models import DEFAULT_MODEL, LoadedModel, load_model

log = logging.getLogger(__name__)


class TransformersEngine:
    """Generation and scoring with a transformers causal LM.

    Args:
        loaded: the model and tokenizer (see `sao.models.load_model`).
        max_batch_size: sequences decoded together; buckets are length-sorted.
        score_batch_size: sequences per forward pass in `score` and `top_logprobs`.
        progress: show a progress bar with tokens/s.
        prefix_cache: recent shared prefixes whose KV `score` and `top_logprobs` keep for later calls
            (`sao.engine.prefix_cache`); 0 recomputes every prefix.
    """

    kind = "transformers"
    capabilities = IN_PROCESS  # a text model: the backend's message parts are the vision engine's

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int = 32,
        score_batch_size: int = 8,
        progress: bool = True,
        prefix_cache: int = 4,
    ):
        self.loaded = loaded
        self.model = loaded.model
        use_gqa_sdpa(self.model)  # each key/value head read once, mask or not (`sao.engine.attention`)
        self.tokenizer = loaded.tokenizer
        self.max_batch_size = max_batch_size
        self.score_batch_size = score_batch_size
        self.progress = progress
        self.eos_ids = eos_ids(self.model.generation_config, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self.prefix = PrefixCache(self.model, self.pad_id, capacity=prefix_cache)

    @classmethod
    def from_spec(
        cls,
        spec: str = DEFAULT_MODEL,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> TransformersEngine:
        """Load ``spec`` (alias, directory or hub id) and wrap it in an engine."""
        return cls(load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """Sample ``n`` continuations per prompt; returns one Completion each, in order."""
        check_call(self, "generate", prompts)
        params = per_request(sampling, len(prompts))
        check_sampling(self, params, "generate")
        jobs, params = make_jobs(self.tokenizer, prompts, params)
        completions = [Completion([None] * p.n) for p in params]  # type: ignore[list-item]
        meter = Meter(len(jobs), self.progress)
        try:
            for bucket in length_buckets([len(job.prompt) for job in jobs], self.max_batch_size):
                batch = [jobs[i] for i in bucket]
                for job, sample in zip(batch, self._decode(batch, meter)):
                    completions[job.conv].samples[job.sample] = sample
        finally:
            meter.close()
        log.debug(
            "generated %d tokens for %d sequences in %.1fs (%.0f tok/s)",
            meter.tokens,
            len(jobs),
            meter.elapsed,
            meter.tokens / meter.elapsed,
        )
        return completions

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        return cached_forward(self.model, input_ids, mask, positions, cache, 1)[:, -1, :]

    def _decode(self, batch: list[Job], meter: Meter) -> list[Sample]:
        """Decode one bucket; rows leave the batch as soon as they finish, and rows with the same prompt are
        prefilled once. Each row's logit controls (`Job.controls`) apply before every token is chosen, and its
        log-probs (when asked) are read from the logits they leave."""
        device = self.device
        # Rows with the same prompt (a request's n samples; RAIN's draws from one leaf) share one prefill.
        unique: dict[tuple[int, ...], int] = {}
        owner = [unique.setdefault(tuple(job.prompt), len(unique)) for job in batch]
        ids, mask, positions = left_pad([list(p) for p in unique], self.pad_id, device)
        temperature = torch.tensor([[job.params.temperature or 1.0] for job in batch], device=device)
        top_p = torch.tensor([[job.params.top_p] for job in batch], device=device)
        generators = [None if job.seed is None else torch.Generator().manual_seed(job.seed) for job in batch]
        stops = {job.params.stop: StopStrings(self.tokenizer, job.params.stop) for job in batch}
        alive = list(range(len(batch)))  # batch index of each row still decoding

        cache = growing_cache(self.model.config)  # appends in place: no whole-cache copy per step
        logits = self._forward(ids, mask, positions, cache)
        if len(unique) < len(batch):
            rows = torch.as_tensor(owner, device=device)
            cache.batch_select_indices(rows)
            logits, mask, positions = logits[rows], mask[rows], positions[rows]
        positions = positions[:, -1:]
        for _ in range(max(job.params.max_new_tokens for job in batch)):
            rows_jobs = [batch[i] for i in alive]
            logits = adjusted(logits, rows_jobs)
            top_k = [job.params.top_k for job in rows_jobs]
            tokens = choose_tokens(logits, temperature, top_p, [generators[i] for i in alive], top_k)
            logprobs = token_logprobs(logits, tokens, rows_jobs)
            keep = [
                row
                for row, (job, token, logprob) in enumerate(zip(rows_jobs, tokens.tolist(), logprobs))
                if job.accept(token, self.eos_ids, stops[job.params.stop], logprob)
            ]
            meter.advance(tokens=len(alive), finished=len(alive) - len(keep))
            if not keep:
                break
            if len(keep) < len(alive):
                rows = torch.as_tensor(keep, device=device)
                cache.batch_select_indices(rows)
                mask, positions, tokens = mask[rows], positions[rows], tokens[rows]
                temperature, top_p = temperature[rows], top_p[rows]
                alive = [alive[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            positions = positions + 1
            logits = self._forward(tokens[:, None], mask, positions, cache)
        return [job.result(self.tokenizer, stops[job.params.stop]) for job in batch]

    # ------------------------------------------------------------------ score
    @torch.inference_mode()
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-prob of each continuation token after its prompt (a conversation's: as the assistant's reply).

        Text continuations are tokenized on their own (no special tokens), the way a trainer
        tokenizes a completion after the chat-templated prompt. Requests that differ only in
        their last token share one forward pass (`sao.engine.scoring`), and a batch's shared prefix
        runs once, its KV kept for later calls (`sao.engine.prefix_cache`).
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
        check_call(self, "score", prompts, continuations)
        targets = continuation_ids(self.tokenizer, continuations)
        groups = group_requests(prompt_ids(self.tokenizer, prompts), targets)
        scored: list[tuple[list[float], list[float]]] = [([], [])] * len(groups)
        buckets = length_buckets([g.length for g in groups], self.score_batch_size)
        for bucket in tqdm(buckets, unit="batch", desc="score", disable=not self.progress, leave=False):
            for i, result in zip(bucket, self._score_batch([groups[i] for i in bucket])):
                scored[i] = result
        return expand(groups, scored, targets)

    def _score_batch(self, groups: list[ScoreGroup]) -> list[tuple[list[float], list[float]]]:
        # Left padding puts every continuation at the end of its row, so the logits of the
        # last K+1 positions cover all continuations and the rest need no lm_head pass.
        k = max(len(g.target) for g in groups)
        if k == 0:
            return [([], []) for _ in groups]
        # A row's last len(target) + 1 positions predict its target, so they stay out of the shared prefix.
        run = self.prefix.prefill([g.prompt + g.target for g in groups], k + 1, [len(g.target) + 1 for g in groups])
        ids = run.ids
        logits = run.logits[:, :-1].float()
        norm = logits.logsumexp(-1)
        wanted = ids[:, ids.shape[1] - k :]
        token_logprobs = logits.gather(-1, wanted[..., None]).squeeze(-1) - norm
        results = []
        for row, group in enumerate(groups):
            n = len(group.target)
            head = token_logprobs[row, k - n : k - 1].tolist() if n else []
            last = (logits[row, -1, group.last_tokens] - norm[row, -1]).tolist() if n else []
            results.append((head, last))
        return results

    # ------------------------------------------------------------------ top_logprobs
    @torch.inference_mode()
    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """The ``k`` most likely next tokens after each prompt (at most the vocabulary), most likely first.

        One forward pass per batch of ``score_batch_size`` prompts, over what the batch's shared prefix
        (`sao.engine.prefix_cache`) leaves; only the last position goes through the LM head. Log-probs
        are the log-softmax of the raw logits, as in `score`.
        """
        check_top_k(k)
        check_call(self, "top_logprobs", prompts)
        encoded = prompt_ids(self.tokenizer, prompts)
        results: list[NextTokenLogprobs] = [None] * len(encoded)  # type: ignore[list-item]
        buckets = length_buckets([len(ids) for ids in encoded], self.score_batch_size)
        for bucket in tqdm(buckets, unit="batch", desc="top_logprobs", disable=not self.progress, leave=False):
            logits = self.prefix.prefill([encoded[i] for i in bucket], 1, [1] * len(bucket)).logits
            values, tokens = logits[:, -1].float().log_softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
            for row, i in enumerate(bucket):
                results[i] = NextTokenLogprobs(tokens[row].tolist(), values[row].tolist())
        return results
