"""Generation and scoring on a Ray cluster: one engine actor per GPU or per CPU slice (``--ray``, extra ``sao[ray]``).

Each actor builds the recipe's own backend with `build_backend` (transformers on CPU, vLLM on a GPU, ...)
once, when `RayEngine` starts, and keeps it until `RayEngine.close`. A ``generate`` or ``score`` call
splits its requests into batches and hands each to whichever actor is free (``ray.util.ActorPool``),
then puts the results back in input order. `RayEngine` is an `Engine` like any other, so a stage run
on Ray appends to the same run store chunk by chunk and resumes like an in-process run.

Why long-lived actors rather than Ray Data ``map_batches`` with a callable class: a Ray Data actor pool
lives for one dataset execution, and the stage loop makes one engine call per chunk, so every chunk
would start the actors and load the model again. On the tiny test model with 2 CPU actors that was
~8 s per 8-prompt call (~2 s of it Ray Data's actor start-up alone, with an empty UDF) against ~0.03 s
here; with vLLM on GPUs it would be a model load per chunk.

Outputs equal the in-process engine's: seeds are per request (`SamplingParams.seed`, `derive_seed`) and
the backends' samples do not depend on what else shares their batch, so batching across actors changes
nothing. Nodes of a remote cluster need sao (and the backend) installed and the model at the same path
or hub id.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from sao.engine.capabilities import Capability, check_call, check_sampling, engine_kind, model_capabilities, require
from sao.engine.config import EngineSection, RaySection
from sao.engine.types import (
    Completion,
    Continuation,
    Engine,
    NextTokenLogprobs,
    Prompt,
    SamplingParams,
    TokenLogprobs,
    check_top_k,
    per_request,
)
from sao.errors import ConfigError, SaoError, first_line

log = logging.getLogger(__name__)

INSTALL_HINT = "--ray needs Ray: pip install 'sao[ray]'"
CONNECT_TIMEOUT_S = 10.0  # ray.init retries an unreachable GCS for minutes; a TCP probe fails in seconds


def import_ray() -> ModuleType:
    """The ``ray`` module, or one ConfigError saying how to install it."""
    try:
        import ray
        import ray.util
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


# ---------------------------------------------------------------------------------------------- settings
def actor_settings(settings: EngineSection) -> EngineSection:
    """The engine section each actor builds its backend from: the same, minus Ray."""
    return settings.model_copy(update={"ray": settings.ray.model_copy(update={"enabled": False})})


def actor_threads(num_cpus: float) -> int:
    """Torch threads per actor: its CPU share, so that actors on one node do not oversubscribe its cores."""
    return max(1, int(num_cpus))


def batch_slices(count: int, batch_size: int, num_actors: int) -> list[slice]:
    """Consecutive batches of at most ``batch_size`` requests.

    A call smaller than ``num_actors * batch_size`` is split evenly instead, so that every actor
    gets a share of a small chunk rather than one actor doing it all.
    """
    size = max(1, min(batch_size, math.ceil(count / num_actors)))
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def missing_resources(section: RaySection, total: dict[str, float]) -> str | None:
    """Why the cluster (``ray.cluster_resources()``) cannot hold the actors, or None if it can."""
    for name, field, per_actor in (
        ("CPU", "num_cpus_per_actor", section.num_cpus_per_actor),
        ("GPU", "num_gpus_per_actor", section.num_gpus_per_actor),
    ):
        needed = per_actor * section.num_actors
        if needed > total.get(name, 0):
            return (
                f"num_actors={section.num_actors} x {field}={per_actor:g} needs {needed:g} {name}, "
                f"the cluster has {total.get(name, 0):g}"
            )
    return None


# ---------------------------------------------------------------------------------------------- connecting
def address_endpoint(address: str) -> tuple[str, int] | None:
    """Host and port of a ``host:port`` or ``ray://host:port`` address; None for 'auto', 'local' and the like."""
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or port is None:
        return None
    return parts.hostname, port


def probe(address: str) -> None:
    """Fail fast, with one line, when nothing listens at ``address``."""
    endpoint = address_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"engine.ray.address: cannot connect to Ray at {address!r}: {exc}") from None


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join the Ray instance in use, the cluster at ``address``, or a new local one.

    Returns True when this call initialised Ray (and so `RayEngine.close` shuts it down: a local
    instance stops, a connection to a cluster is dropped). A Ray already initialised by a
    notebook, a test or a driver script is used as it is and left running.
    """
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False)
        return True
    probe(address)
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"engine.ray.address: cannot connect to Ray at {address!r}: {first_line(exc)}") from None
    return True


@contextmanager
def remote_errors(ray: ModuleType) -> Iterator[None]:
    """Re-raise a user error from an actor as itself, so the CLI shows its one line, not a remote traceback."""
    try:
        yield
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, SaoError):
            raise exc.cause from None
        raise


# ---------------------------------------------------------------------------------------------- actors
class EngineActor:
    """One engine on one Ray worker. The backend is built in `load`, not in the constructor, so
    that a failed load reaches the driver as the original error (a constructor's error only
    reaches it as a dead actor with a traceback)."""

    def __init__(
        self, model: str, settings: EngineSection, trust_remote_code: bool, threads: int, base_model: str | None = None
    ):
        self.model = model
        self.settings = settings
        self.trust_remote_code = trust_remote_code
        self.threads = threads
        self.base_model = base_model
        self.engine: Engine | None = None

    def load(self) -> None:
        import torch

        from sao.engine.backends import build_backend

        torch.set_num_threads(self.threads)
        # An actor's progress bars would only interleave in the driver's log; the driver shows one.
        self.engine = build_backend(
            self.model,
            self.settings,
            trust_remote_code=self.trust_remote_code,
            progress=False,
            base_model=self.base_model,
        )

    def generate(self, prompts: list[Prompt], sampling: list[SamplingParams]) -> list[Completion]:
        assert self.engine is not None, "load() first"
        return self.engine.generate(prompts, sampling)

    def score(self, prompts: list[Prompt], continuations: list[Continuation]) -> list[TokenLogprobs]:
        assert self.engine is not None, "load() first"
        return self.engine.score(prompts, continuations)

    def top_logprobs(self, prompts: list[Prompt], k: int) -> list[NextTokenLogprobs]:
        assert self.engine is not None, "load() first"
        return self.engine.top_logprobs(prompts, k)

    def close(self) -> None:
        # vLLM's engine holds GPU workers of its own; killing the actor alone may leave them behind.
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


@dataclass
class _Cluster:
    """What `RayEngine` holds on to: the module, its actors and whether it initialised Ray."""

    ray: ModuleType
    actors: list[Any]  # ray.actor.ActorHandle of EngineActor
    initialised_ray: bool


def start_actors(
    ray: ModuleType, model: str, settings: EngineSection, trust_remote_code: bool, base_model: str | None = None
) -> list[Any]:
    """Start ``num_actors`` engine actors and wait until each has loaded its model."""
    section = settings.ray
    remote = ray.remote(EngineActor).options(num_cpus=section.num_cpus_per_actor, num_gpus=section.num_gpus_per_actor)
    threads = actor_threads(section.num_cpus_per_actor)
    inner = actor_settings(settings)
    actors = [remote.remote(model, inner, trust_remote_code, threads, base_model) for _ in range(section.num_actors)]
    try:
        with remote_errors(ray):
            ray.get([actor.load.remote() for actor in actors])
    except BaseException:
        for actor in actors:
            ray.kill(actor)
        raise
    return actors


# ---------------------------------------------------------------------------------------------- engine
class RayEngine:
    """An `Engine` whose work runs on Ray engine actors (see the module docstring).

    Args:
        model: alias, directory or hub id, resolved on each actor.
        settings: the ``engine`` section; ``settings.ray`` says where and how many actors,
            the rest which backend each actor runs.
        trust_remote_code: passed to each actor's backend.
        progress: show a progress bar of requests done on the driver.
        base_model: the model ``model`` was trained from, passed to each actor's backend
            (`sao.engine.backends.build_backend`).

    Its ``kind`` and ``capabilities`` are its backend's on its model (`model_capabilities`): every actor runs that
    backend on that model.
    """

    def __init__(
        self,
        model: str,
        settings: EngineSection,
        *,
        trust_remote_code: bool = False,
        progress: bool = True,
        base_model: str | None = None,
    ):
        self.settings = settings
        self.progress = progress
        self.kind = engine_kind(settings)
        self.capabilities = model_capabilities(model, settings)  # every actor runs this backend on this model
        ray = import_ray()
        initialised = connect(ray, settings.ray.address)
        try:
            problem = missing_resources(settings.ray, ray.cluster_resources())
            if problem and initialised and settings.ray.address is None:
                # A local instance never grows, so its actors would wait forever.
                raise ConfigError(f"engine.ray: {problem} (set engine.ray.address to use a cluster)")
            if problem:
                # A cluster with an autoscaler grows to fit the actors; one without leaves them pending.
                log.warning("engine.ray: %s; the actors wait until the cluster grows", problem)
            actors = start_actors(ray, model, settings, trust_remote_code, base_model)
        except BaseException:
            if initialised:
                ray.shutdown()
            raise
        self._cluster: _Cluster | None = _Cluster(ray, actors, initialised)
        log.info("ray: %d engine actors ready", len(actors))

    @property
    def actors(self) -> list[Any]:
        return self._live().actors

    def _live(self) -> _Cluster:
        if self._cluster is None:
            raise RuntimeError("RayEngine is closed")
        return self._cluster

    # Prompt kinds and sampling controls are checked here, so that a refusal is one error on the driver,
    # before any actor works. SamplingParams (logit controls included) reach the actors pickled, as they are.
    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """One Completion per prompt, in input order, from the actors."""
        check_call(self, "generate", prompts)
        params = per_request(sampling, len(prompts))
        check_sampling(self, params, "generate")
        listed = list(prompts)
        return self._map("generate", len(listed), lambda actor, s: actor.generate.remote(listed[s], params[s]))

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-probs of each continuation, in input order, from the actors."""
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
        check_call(self, "score", prompts, continuations)
        listed, conts = list(prompts), list(continuations)
        return self._map("score", len(listed), lambda actor, s: actor.score.remote(listed[s], conts[s]))

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """The ``k`` most likely next tokens after each prompt, in input order, from the actors."""
        check_top_k(k)
        require(self.kind, self.capabilities, [Capability.TOP_LOGPROBS], "a top_logprobs call")
        check_call(self, "top_logprobs", prompts)
        listed = list(prompts)
        return self._map("top_logprobs", len(listed), lambda actor, s: actor.top_logprobs.remote(listed[s], k))

    def _map(self, method: str, count: int, call: Callable[[Any, slice], Any]) -> list[Any]:
        """Run ``call`` on every batch of ``count`` requests, on free actors; results in input order."""
        ray, actors = self._live().ray, self._live().actors
        slices = batch_slices(count, self.settings.ray.batch_size, len(actors))
        results: list[Any] = []
        with tqdm(total=count, unit="req", desc=f"{method} (ray)", disable=not self.progress, leave=False) as bar:
            with remote_errors(ray):
                # ActorPool.map hands the next batch to the first idle actor and yields in submission order.
                for batch in ray.util.ActorPool(actors).map(call, slices):
                    results.extend(batch)
                    bar.update(len(batch))
        log.debug("ray %s: %d requests in %d batches over %d actors", method, count, len(slices), len(actors))
        return results

    def close(self) -> None:
        """Stop the actors, and Ray if this engine initialised it (see `connect`). Safe to call twice."""
        cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        ray = cluster.ray
        try:
            ray.get([actor.close.remote() for actor in cluster.actors])
        except ray.exceptions.RayError as exc:  # a dead actor has nothing left to free
            log.warning("ray: closing an engine actor failed: %s", first_line(exc))
        for actor in cluster.actors:
            ray.kill(actor)
        if cluster.initialised_ray:
            ray.shutdown()
