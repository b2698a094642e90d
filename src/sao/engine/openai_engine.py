"""An engine over any OpenAI-compatible HTTP server: vLLM, SGLang, TGI, llama.cpp server, hosted APIs.

Requests go out concurrently (at most ``max_concurrency`` in flight) from an asyncio loop
that runs on a thread of its own, so the sync ``generate``/``score`` work from any thread,
including one that already runs an event loop (a notebook), and the HTTP client and its
connection pool live as long as the engine (``close`` ends both).

``api: completions`` (the default) renders the chat template here, with the model's own
tokenizer, and sends the prompt's token ids: the server sees the very tokens the in-process
engine would decode from. Text would not do: a server tokenizes a text prompt with its
special tokens added (vLLM's default ``add_special_tokens``, llama.cpp's ``add_bos_token``),
so a template that renders its own BOS (Llama 3, Gemma) would start with two (issue 14).
A server that refuses token ids (llama-cpp-python's, TGI) gets text, once a probe request
has shown whether it adds a BOS of its own: then the template's BOS is left out of the text
(`_use_text`). ``api: chat`` sends the messages and lets the server apply its own template
(hosted APIs offer nothing else); no tokenizer is needed, and nothing can be scored, since
chat completions return no log-probs of the prompt.

Token ids: servers return text, not ids. ``Sample.token_ids`` are the tokenizer's ids of
the returned text, an approximation of the server's own ids (they can differ where a
re-tokenisation merges differently). Without a tokenizer (``api: chat``) the ids are
unknown and every id is ``-1``; their number is the server's ``usage.completion_tokens``,
so ``num_tokens`` stays right.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import openai
from tqdm.auto import tqdm

from sao.engine.capabilities import (
    CAPABILITIES,
    Capability,
    CapabilityError,
    check_call,
    check_sampling,
    missing,
    openai_kind,
)
from sao.engine.chat_template import check_conversation, render_prompt
from sao.engine.logit_controls import bias_ids
from sao.engine.types import (
    Completion,
    Continuation,
    FinishReason,
    NextTokenLogprobs,
    Prompt,
    Sample,
    SamplingParams,
    TokenLogprobs,
    per_request,
    sample_seed,
)
from sao.errors import ConfigError, LogprobsUnavailable, SaoError

if TYPE_CHECKING:
    from sao.engine.config import EngineSection

log = logging.getLogger(__name__)

T = TypeVar("T")
Api = Literal["chat", "completions"]

PLACEHOLDER_KEY = "EMPTY"  # local servers want no key, but the client insists on one
UNKNOWN_ID = -1  # a token whose id the server did not tell
MAX_DELAY = 30.0
# 408 and 429 say "try again later"; every 5xx is the server's trouble, not the request's.
RETRYABLE_STATUS = frozenset({408, 429})
# Statuses with which servers refuse echo/logprobs (or the completions endpoint) outright.
NO_LOGPROBS_STATUS = frozenset({400, 404, 422})
# Statuses with which servers refuse a prompt of token ids: 400 or 422 (TGI), and 500 from llama-cpp-python,
# whose schema takes strings and which answers a validation error with a 500.
IDS_REFUSED_STATUS = frozenset({400, 422, 500})


class EndpointError(SaoError):
    """The server refused a request (a 4xx), or kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Retry delay: ``backoff * 2**attempt`` seconds, capped at ``max_delay``, scaled by full jitter."""

    max_retries: int = 6
    backoff: float = 1.0
    max_delay: float = MAX_DELAY


def backoff_delay(policy: RetryPolicy, attempt: int, draw: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based); ``draw`` is uniform in [0, 1).

    Full jitter (a uniform draw below the exponential bound) spreads the retries of many
    requests that failed together, so a restarted server is not hit by all at once.
    """
    return draw * min(policy.max_delay, policy.backoff * 2**attempt)


def is_retryable(exc: BaseException) -> bool:
    """429, 408 and 5xx answers, timeouts and lost connections are worth another try; other 4xx are not."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # APITimeoutError is one too


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own words: OpenAI's ``{"error": {"message"}}`` (already unwrapped by the client),
    FastAPI's ``{"detail"}`` or a plain body."""
    body = exc.body
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error") or body
    else:
        text = body or exc.response.text
    return str(text)[:500]


def describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {server_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def sampling_body(
    params: SamplingParams, seed: int | None, logit_bias: dict[int, float] | None = None
) -> dict[str, Any]:
    """The sampling fields of one request. Each request asks for one sample (``n`` is left at 1), so that
    every sample has its own seed. ``max_tokens`` rather than ``max_completion_tokens``: every server
    above knows it.

    Frequency and presence penalties are OpenAI's own fields, over the generated tokens as in sao (n = 1;
    ``penalty_ngram > 1`` is refused by `check_sampling` first). ``logit_bias`` is ``params.logit_bias``
    resolved to token ids (`sao.engine.logit_controls.bias_ids`), sent as OpenAI's ``{"id": bias}``; OpenAI
    takes biases in [-100, 100], and a server may refuse or clip others. ``top_k`` is no OpenAI field: it goes
    in ``extra_body`` (the client's way to send one at the top level of the JSON), as vLLM's, SGLang's and
    llama.cpp's servers take it; hosted OpenAI refuses it. Each is sent only when set (``top_k`` only when
    sampling), so a plain request's body is what it always was (some servers refuse fields they do not know).
    """
    body: dict[str, Any] = {"max_tokens": params.max_new_tokens, "temperature": params.temperature}
    if not params.greedy:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = list(params.stop)
    if seed is not None:
        body["seed"] = seed
    if params.frequency_penalty:
        body["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty:
        body["presence_penalty"] = params.presence_penalty
    if logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in sorted(logit_bias.items())}
    if params.top_k and not params.greedy:
        body["extra_body"] = {"top_k": params.top_k}
    return body


def check_logprobs(kind: str, params: Sequence[SamplingParams]) -> None:
    """CapabilityError for a request that asks for its samples' log-probs, which this engine does not return.

    The server's log-probs are per server token, and ``Sample.token_ids`` here are the local tokenizer's ids
    of the returned text (or unknown): the two need not line up one for one, and log-probs misaligned with
    ``token_ids`` would be worse than none.
    """
    for i, p in enumerate(params):
        if p.logprobs:
            raise CapabilityError(
                f"logprobs: engine backend '{kind}' does not return the log-probs of sampled tokens "
                f"(request {i} of a generate call asks for them)"
            )


def score_body(model: str) -> dict[str, Any]:
    """Echo the prompt with its log-probs (the prompt is added per request). One new token, not zero:
    llama.cpp reads ``max_tokens=0`` as "no limit", and some servers refuse 0."""
    return {"model": model, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}


def without_bos(text: str, bos: str | None) -> str:
    """``text`` without the BOS its template rendered at the start, for a server that adds its own."""
    return text[len(bos) :] if bos and text.startswith(bos) else text


def finish_reason(reason: str | None) -> FinishReason:
    # Anything but a hit token budget (EOS, a stop string, a content filter) ended the text on purpose.
    return "length" if reason == "length" else "stop"


def continuation_logprobs(
    offsets: Sequence[int], tokens: Sequence[str], logprobs: Sequence[float | None], generated: int, chars: int
) -> list[float | None]:
    """Log-probs of the echoed tokens that spell the last ``chars`` characters of the prompt.

    The echoed entries are all but the last ``generated`` ones. Offsets are counted from the
    end of the echo, not from the prompt's length: servers render special tokens in
    ``text_offset`` differently (llama.cpp counts them as empty), so the prompt's length in
    server coordinates is unknown, but the plain-text continuation at its end is the same.
    A token that straddles the start of the continuation (the server merged it with the
    prompt's end) is left out.
    """
    echoed = len(offsets) - generated
    if echoed <= 0:
        return []
    end = offsets[echoed] if generated else offsets[echoed - 1] + len(tokens[echoed - 1])
    return [lp for offset, lp in zip(offsets[:echoed], logprobs[:echoed]) if end - chars <= offset < end]


@dataclass(frozen=True)
class _Job:
    """One request: sample ``sample`` of conversation ``conv``.

    Completions requests carry their prompt twice, as token ids (sent) and as text (sent to servers that
    refuse ids); ``body`` is the rest of the request. Chat requests have the messages in ``body``.
    """

    conv: int
    sample: int
    seed: int | None
    body: dict[str, Any]
    tail: int = 0  # score requests: characters at the end of the prompt that are the continuation
    ids: tuple[int, ...] = ()
    text: str = ""


class _LoopThread:
    """An asyncio loop on a daemon thread; `run` hands it a coroutine and blocks until it is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sao-openai-engine", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: stop the requests in flight too
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class OpenAIEngine:
    """Generation and scoring over an OpenAI-compatible server.

    Args:
        base_url: the server's URL up to ``/v1``.
        served_model: the model name the server knows.
        tokenizer: the model's tokenizer; required for ``api="completions"``, optional for ``"chat"``.
        api: ``completions`` (sao renders the chat template) or ``chat`` (the server does).
        api_key: sent as the bearer token; never logged nor shown in ``repr``.
        max_concurrency: requests in flight at once.
        timeout: seconds one request may take; then it counts as failed and is retried.
        retry: how often and how patiently to retry.
        progress: show a progress bar.

    ``stats`` counts ``requests`` sent (retries included), ``retries``, ``logprobs_unavailable``
    (score calls that raised `LogprobsUnavailable`) and ``prompt_token_mismatches`` (answers whose
    ``usage.prompt_tokens`` is not the number of prompt tokens sent: the server added or changed some).
    ``prompt_format`` is how completions prompts go out: ``ids``, ``text`` (the server refused ids),
    or None before the first answer.
    """

    def __init__(
        self,
        base_url: str,
        served_model: str,
        *,
        tokenizer: Any = None,
        api: Api = "completions",
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        progress: bool = True,
    ):
        if api == "completions" and tokenizer is None:
            raise ConfigError("openai.api: 'completions' renders the chat template here and needs the tokenizer")
        self.kind = openai_kind(api)
        self.capabilities = CAPABILITIES[self.kind]
        self.base_url = base_url
        self.served_model = served_model
        self.tokenizer = tokenizer
        self.api = api
        self.retry = retry
        self.progress = progress
        self.stats = {"requests": 0, "retries": 0, "logprobs_unavailable": 0, "prompt_token_mismatches": 0}
        self.prompt_format: Literal["ids", "text"] | None = None
        self._strip_bos = False  # text prompts: the server adds a BOS, so the template's is left out
        # max_retries=0: the client's own retries can neither report how many they made nor
        # take the recipe's base delay, so the retry loop is ours (`_call`).
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout, max_retries=0
        )
        self._limit = asyncio.Semaphore(max_concurrency)
        self._switching = asyncio.Lock()  # one probe when the server refuses token ids
        self._rng = random.Random()
        self._loop = _LoopThread()

    @classmethod
    def from_spec(
        cls, model: str, settings: EngineSection, *, trust_remote_code: bool = False, progress: bool = True
    ) -> OpenAIEngine:
        """The engine a recipe's ``engine`` section (`EngineSection`) describes, for ``model``.

        With ``api: completions`` the tokenizer of ``model`` is loaded (it renders the chat
        template); with ``api: chat`` nothing is loaded, so ``model`` may be a hosted model's name.
        """
        section = settings.openai
        if not section.base_url:
            raise ConfigError("openai.base_url: backend 'openai' needs the server's URL, e.g. http://localhost:8000/v1")
        tokenizer = load_tokenizer(model, trust_remote_code) if section.api == "completions" else None
        return cls(
            section.base_url,
            section.served_model or model,
            tokenizer=tokenizer,
            api=section.api,
            api_key=os.environ.get(section.api_key_env),
            max_concurrency=section.max_concurrency,
            timeout=section.timeout,
            retry=RetryPolicy(max_retries=section.max_retries, backoff=section.backoff),
            progress=progress,
        )

    def __repr__(self) -> str:
        return f"OpenAIEngine(base_url={self.base_url!r}, served_model={self.served_model!r}, api={self.api!r})"

    def close(self) -> None:
        """Close the HTTP connections and stop the engine's loop; the engine is unusable afterwards."""
        if self._loop.thread.is_alive():
            self._loop.run(self._client.close())
            self._loop.stop()

    # ------------------------------------------------------------------ generate
    def generate(
        self, conversations: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """Sample ``n`` continuations per conversation, one request per sample; one Completion each, in order.

        Prompts of a kind this engine lacks (raw text, token ids, message parts) raise CapabilityError, and
        so do sampling controls it lacks (an n-gram penalty; a logit bias with ``api: chat``, which has no
        tokenizer to name token ids with) and ``SamplingParams.logprobs`` (`check_logprobs`).
        """
        check_call(self, "generate", conversations)
        params = per_request(sampling, len(conversations))
        check_sampling(self, params, "generate")
        check_logprobs(self.kind, params)
        # The local tokenizer is the served model's (completions prompts go out as its ids too).
        biases = {p: bias_ids(self.tokenizer, p.logit_bias) for p in set(params) if p.logit_bias}
        if self.api == "chat":
            for i, conversation in enumerate(conversations):
                check_conversation(conversation, f"conversation {i}")
            prompts = [({"model": self.served_model, "messages": list(c)}, (), "") for c in conversations]
        else:
            texts = [render_prompt(self.tokenizer, c) for c in conversations]
            prompts = [({"model": self.served_model}, self._ids(text), text) for text in texts]
        jobs = [
            _Job(c, j, seed, body | sampling_body(p, seed, biases.get(p)), ids=ids, text=text)
            for c, ((body, ids, text), p) in enumerate(zip(prompts, params))
            for j, seed in enumerate(sample_seed(p, j) for j in range(p.n))
        ]
        samples = self._loop.run(self._all(jobs, self._sample, "generate"))
        completions = [Completion([None] * p.n) for p in params]  # type: ignore[list-item]
        for job, sample in zip(jobs, samples):
            completions[job.conv].samples[job.sample] = sample
        return completions

    def _ids(self, text: str) -> tuple[int, ...]:
        """The token ids of rendered template text, as `sao.engine.chat_template.encode_prompt` makes them."""
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def _sample(self, job: _Job) -> Sample:
        if self.api == "chat":
            response = await self._call(lambda: self._client.chat.completions.create(**job.body), "chat completion")
            choice = response.choices[0]
            text = choice.message.content or ""
        else:
            response = await self._complete(job, "completion")
            choice = response.choices[0]
            text = choice.text
        counted = response.usage.completion_tokens if response.usage else 0
        return Sample(text, self._token_ids(text, counted), finish_reason(choice.finish_reason), job.seed)

    def _token_ids(self, text: str, counted: int) -> list[int]:
        if self.tokenizer is None:
            return [UNKNOWN_ID] * counted
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ score
    def score(self, conversations: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-probs of each continuation's tokens, from the server's echoed prompt log-probs.

        Raises `LogprobsUnavailable` when the server returns none (``api: chat`` never does: the judge
        then falls back to generated rankings). The log-probs are per server token; ``token_ids`` are
        the tokenizer's ids of the continuation when the server split it into as many tokens, else
        unknown (-1).
        """
        if len(conversations) != len(continuations):
            raise ValueError(f"score: {len(conversations)} prompts but {len(continuations)} continuations")
        if self.api == "chat":
            self.stats["logprobs_unavailable"] += 1
            raise LogprobsUnavailable(
                "openai.api 'chat': chat completions return no log-probs of the prompt; "
                "use api 'completions' with a server that echoes prompt log-probs, or judge mode 'generate'"
            )
        check_call(self, "score", conversations, continuations)
        prompts = [render_prompt(self.tokenizer, c) for c in conversations]
        # Prompt and continuation tokenized apart, as the in-process engines and the trainers do.
        jobs = [
            _Job(
                i, 0, None, score_body(self.served_model), len(cont), self._ids(prompt) + self._ids(cont), prompt + cont
            )
            for i, (prompt, cont) in enumerate(zip(prompts, continuations))
        ]
        try:
            scored = self._loop.run(self._all(jobs, self._score_one, "score"))
        except LogprobsUnavailable:
            self.stats["logprobs_unavailable"] += 1
            raise
        return [self._token_logprobs(cont, lps) for cont, lps in zip(continuations, scored)]

    async def _score_one(self, job: _Job) -> list[float]:
        try:
            response = await self._complete(job, "score")
        except EndpointError as exc:
            if exc.status in NO_LOGPROBS_STATUS:
                raise LogprobsUnavailable(f"{self.base_url} refused echoed prompt log-probs: {exc}") from None
            raise
        choice = response.choices[0]
        lp = choice.logprobs
        if lp is None or not lp.text_offset or not lp.tokens or not lp.token_logprobs or response.usage is None:
            raise LogprobsUnavailable(f"{self.base_url} returned no prompt log-probs for an echo=True completion")
        found = continuation_logprobs(
            lp.text_offset, lp.tokens, lp.token_logprobs, response.usage.completion_tokens, job.tail
        )
        if not found or any(x is None for x in found):
            raise LogprobsUnavailable(f"{self.base_url} returned no log-probs for the continuation's tokens")
        return [float(x) for x in found]  # type: ignore[arg-type]

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """Not offered (see `sao.engine.capabilities.CAPABILITIES`): raises CapabilityError."""
        raise missing(self.kind, Capability.TOP_LOGPROBS, "a top_logprobs call")

    def _token_logprobs(self, continuation: str, logprobs: list[float]) -> TokenLogprobs:
        ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        return TokenLogprobs(ids if len(ids) == len(logprobs) else [UNKNOWN_ID] * len(logprobs), logprobs)

    # ------------------------------------------------------------------ requests
    async def _complete(self, job: _Job, what: str) -> Any:
        """One /v1/completions request with the job's prompt as token ids, or as text where the server refuses ids."""
        if self.prompt_format != "text":
            # Until a server has answered ids, the statuses that may refuse them are not retried but probed.
            final = IDS_REFUSED_STATUS if self.prompt_format is None else frozenset()
            try:
                response = await self._call(
                    lambda: self._client.completions.create(**job.body, prompt=list(job.ids)), what, final
                )
            except EndpointError as refused:
                # Once ids have been answered, a refusal is about something else (a prompt too long, say).
                if refused.status not in IDS_REFUSED_STATUS or self.prompt_format == "ids":
                    raise
                async with self._switching:
                    if self.prompt_format is None:
                        probed = await self._use_text(job, what, refused)
                        if probed is not None:
                            return probed
            else:
                self.prompt_format = "ids"
                self._count_prompt(response, len(job.ids))
                return response
        text = without_bos(job.text, self.tokenizer.bos_token) if self._strip_bos else job.text
        response = await self._call(lambda: self._client.completions.create(**job.body, prompt=text), what)
        self._count_prompt(response, len(self._ids(job.text)))  # the server's own BOS stands in for the template's
        return response

    async def _use_text(self, job: _Job, what: str, refused: EndpointError) -> Any:
        """Switch to text prompts after ``refused``, if the server takes this job's prompt as text.

        The probe is the job's own request as text. Where the server counts one prompt token more than
        the tokenizer gives for that text, and the text starts with the template's BOS, the server adds a
        BOS of its own (llama.cpp with ``add_bos_token``): from then on the template's is left out, and the
        probe (which had two) is not used. Returns the probe's answer where it can stand, else None.
        Raises ``refused`` when the text is refused too: then the ids were not what the server minded.
        """
        try:
            probe = await self._call(lambda: self._client.completions.create(**job.body, prompt=job.text), what)
        except EndpointError:
            raise refused from None
        expected = len(self._ids(job.text))
        counted = probe.usage.prompt_tokens if probe.usage else None
        bos = self.tokenizer.bos_token
        self._strip_bos = counted == expected + 1 and without_bos(job.text, bos) != job.text
        self.prompt_format = "text"
        log.warning(
            "%s refuses token-id prompts (HTTP %s); sending text%s",
            self.base_url,
            refused.status,
            f", without the template's {bos} (the server adds its own)" if self._strip_bos else "",
        )
        if self._strip_bos:
            return None
        self._count_prompt(probe, expected)
        return probe

    def _count_prompt(self, response: Any, sent: int) -> None:
        counted = response.usage.prompt_tokens if response.usage else None
        if counted is not None and counted != sent:
            if not self.stats["prompt_token_mismatches"]:
                log.warning(
                    "%s counted %d prompt tokens where %d were sent: it adds or re-tokenizes some",
                    self.base_url,
                    counted,
                    sent,
                )
            self.stats["prompt_token_mismatches"] += 1

    async def _all(self, jobs: list[_Job], one: Callable[[_Job], Awaitable[T]], desc: str) -> list[T]:
        """Run ``one`` over every job concurrently (bounded by the semaphore in `_call`), in job order."""
        with tqdm(total=len(jobs), unit="req", desc=desc, disable=not self.progress, leave=False) as bar:

            async def tracked(job: _Job) -> T:
                result = await one(job)
                bar.update(1)
                return result

            tasks = [asyncio.ensure_future(tracked(job)) for job in jobs]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:  # one failed: the others are of no use any more
                    task.cancel()

    async def _call(self, request: Callable[[], Awaitable[T]], what: str, final: frozenset[int] = frozenset()) -> T:
        """One request, retried with backoff after 429, 408, 5xx, a timeout or a lost connection
        (but not after a status in ``final``)."""
        retries = 0
        while True:
            try:
                async with self._limit:
                    self.stats["requests"] += 1
                    return await request()
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                if not is_retryable(exc) or status in final:
                    raise EndpointError(f"{what} request to {self.base_url} failed: {describe(exc)}", status) from None
                if retries == self.retry.max_retries:
                    raise EndpointError(
                        f"{what} request to {self.base_url} failed after {retries} retries: {describe(exc)}"
                    ) from None
                delay = backoff_delay(self.retry, retries, self._rng.random())
                retries += 1
                self.stats["retries"] += 1
                log.warning("%s request failed (%s); retry %d in %.1fs", what, describe(exc), retries, delay)
            # Outside the semaphore: a request waiting to retry holds no slot.
            await asyncio.sleep(delay)


def load_tokenizer(model: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    from sao.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(model), trust_remote_code=trust_remote_code)
