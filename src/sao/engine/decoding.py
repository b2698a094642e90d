"""Per-sequence decoding state shared by the in-process engines (transformers and llama.cpp).

Both run their own decode loop (per-request seeds, rows that leave the batch when they
finish); what a row does with each new token (EOS, stop strings, the token budget) and
how progress is shown is the same in both, and lives here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from sao.engine.logit_controls import LogitControls, adjust_logits, logit_controls
from sao.engine.prompts import prompt_ids
from sao.engine.stops import StopStrings
from sao.engine.types import FinishReason, Prompt, Sample, SamplingParams, per_request, sample_seed


@dataclass
class Job:
    """One sequence to decode: sample ``sample`` of prompt ``conv``."""

    conv: int
    sample: int
    prompt: list[int]
    params: SamplingParams
    seed: int | None
    controls: LogitControls | None = None  # its logit bias and penalties (`sao.engine.logit_controls`)
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # of each generated token, when params.logprobs
    finish: FinishReason = "length"
    eos_token: int | None = None

    def accept(self, token: int, eos_ids: set[int], stops: StopStrings, logprob: float | None = None) -> bool:
        """Take the next token (and its log-prob, when the params ask for them); False once the sequence
        is finished. An EOS is not kept, nor its log-prob; the tokens of a stop string are, with theirs."""
        if token in eos_ids:
            self.finish, self.eos_token = "stop", token
            return False
        self.generated.append(token)
        if self.params.logprobs:
            assert logprob is not None, "logprobs asked for but not computed"
            self.logprobs.append(logprob)
        if stops.hit(self.generated):
            self.finish = "stop"
            return False
        return len(self.generated) < self.params.max_new_tokens

    def result(self, tokenizer: Any, stops: StopStrings) -> Sample:
        text = tokenizer.decode(self.generated, skip_special_tokens=True)
        logprobs = self.logprobs if self.params.logprobs else None
        return Sample(stops.truncate(text), self.generated, self.finish, self.seed, self.eos_token, logprobs)


def make_jobs(
    tokenizer: Any, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
) -> tuple[list[Job], list[SamplingParams]]:
    """One Job per requested sample, with the prompt's token ids (`sao.engine.prompts.prompt_ids`) and its
    logit controls, resolved once per distinct params (they are hashable), not per row or per step."""
    params = per_request(sampling, len(prompts))
    encoded = prompt_ids(tokenizer, prompts)
    controls = {p: logit_controls(tokenizer, p) for p in set(params)}
    jobs = [
        Job(c, j, prompt, p, sample_seed(p, j), controls[p])
        for c, (prompt, p) in enumerate(zip(encoded, params))
        for j in range(p.n)
    ]
    return jobs, params


def adjusted(logits: Any, jobs: Sequence[Job]) -> Any:
    """One step's logits with each row's controls applied (``jobs[i]`` is row i); untouched when no row has
    any, the common case."""
    if all(job.controls is None for job in jobs):
        return logits
    return adjust_logits(logits, [(job.controls, job.generated) for job in jobs])


def token_logprobs(logits: Any, tokens: Any, jobs: Sequence[Job]) -> list[float | None]:
    """Each row's log-prob of its chosen token (``tokens`` [B]) under ``logits`` [B, V] (already `adjusted`, not
    temperature-scaled): the float32 log-softmax, for the rows whose params ask for log-probs (None for
    the others; nothing is computed when no row asks)."""
    wanted = [row for row, job in enumerate(jobs) if job.params.logprobs]
    values: list[float | None] = [None] * len(jobs)
    if not wanted:
        return values
    rows = torch.as_tensor(wanted, device=logits.device)
    chosen = logits[rows].float()
    picked = chosen.gather(-1, tokens[rows][:, None].to(chosen.device)).squeeze(-1) - chosen.logsumexp(-1)
    for row, value in zip(wanted, picked.tolist()):
        values[row] = value
    return values


def eos_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


class Meter:
    """The progress bar: finished sequences, with generated tokens/s alongside."""

    def __init__(self, total: int, enabled: bool):
        self.bar = tqdm(total=total, unit="seq", desc="generate", disable=not enabled, leave=False)
        self.started = time.perf_counter()
        self.tokens = 0

    def advance(self, tokens: int, finished: int) -> None:
        self.tokens += tokens
        self.bar.update(finished)
        self.bar.set_postfix_str(f"{self.tokens / self.elapsed:.0f} tok/s", refresh=False)

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def close(self) -> None:
        self.bar.close()
