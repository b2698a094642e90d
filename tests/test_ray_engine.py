"""The Ray engine on a local 2-CPU Ray cluster: two transformers actors on the tiny model must give the
same rows, samples and scores as the in-process engine, and finish a run that one started.

One cluster and one pair of actors serve the whole module, since starting them is most of its cost.
The pure helpers and the missing-Ray error are tested without Ray.
"""

import builtins
import importlib.util
import json
import socket
import time
from types import SimpleNamespace

import pytest

from conftest import ask
from sao.engine import CapabilityError, RawPrompt, SamplingParams, TokenPrompt
from sao.engine.chat_template import encode_prompt
from sao.engine.config import EngineSection
from sao.engine.ray_engine import (
    INSTALL_HINT,
    RayEngine,
    actor_settings,
    actor_threads,
    address_endpoint,
    batch_slices,
    connect,
    import_ray,
    missing_resources,
    probe,
)
from sao.errors import ConfigError, InputError, ModelLoadError
from sao.stages.generate import GenerateConfig, load_prompts, run_generate

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (sao[ray])")

PROMPTS = [{"prompt": f"question number {i}" + " and more" * (i % 3)} for i in range(8)]


def ray_settings(**ray) -> EngineSection:
    """The tiny model on CPU in float32, like the in-process `tiny_engine`, on two 1-CPU actors."""
    return EngineSection(
        device="cpu",
        dtype="float32",
        batch_size=4,
        ray={"enabled": True, "num_actors": 2, "num_cpus_per_actor": 1, "batch_size": 2} | ray,
    )


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_engine(ray_cluster, tiny_model_dir):
    # 0.75 CPU each (still one torch thread) leaves room for the short-lived actor of the failed-load test.
    engine = RayEngine(str(tiny_model_dir), ray_settings(num_cpus_per_actor=0.75), progress=False)
    yield engine
    engine.close()


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return load_prompts(path)


def eventually(condition, timeout=10.0):
    """Whether ``condition`` holds within ``timeout`` s (Ray frees a killed actor's resources asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def rows_by_id(store):
    rows = store.rows("generations")
    assert len(rows) == len({r["id"] for r in rows}), "duplicated row ids"
    return {r["id"]: r for r in rows}


# ---------------------------------------------------------------------------------------------- pure helpers
def test_small_calls_are_split_over_all_actors():
    assert batch_slices(8, 16, 2) == [slice(0, 4), slice(4, 8)]
    assert batch_slices(8, 2, 2) == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert batch_slices(5, 16, 2) == [slice(0, 3), slice(3, 5)]
    assert batch_slices(1, 16, 4) == [slice(0, 1)]
    assert batch_slices(0, 16, 2) == []


def test_actors_build_the_same_backend_without_ray():
    settings = ray_settings()
    inner = actor_settings(settings)
    assert not inner.ray.enabled and settings.ray.enabled  # the recipe's section is left alone
    assert inner.model_dump(exclude={"ray"}) == settings.model_dump(exclude={"ray"})
    assert [actor_threads(n) for n in (0.5, 1, 2.5, 8)] == [1, 1, 2, 8]


def test_resources_and_addresses():
    section = ray_settings(num_gpus_per_actor=1).ray
    assert missing_resources(section, {"CPU": 16.0}) == (
        "num_actors=2 x num_gpus_per_actor=1 needs 2 GPU, the cluster has 0"
    )
    assert missing_resources(section, {"CPU": 2.0, "GPU": 2.0}) is None
    assert address_endpoint("auto") is None
    assert address_endpoint("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert address_endpoint("ray://head:10001") == ("head", 10001)


def test_missing_ray_is_one_line_with_the_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match="^--ray needs Ray: pip install 'sao\\[ray\\]'$"):
        import_ray()
    assert INSTALL_HINT == "--ray needs Ray: pip install 'sao[ray]'"


def test_unreachable_address_fails_fast_naming_the_field():
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"^engine\.ray\.address: cannot connect to Ray at '127\.0\.0\.1:{port}': "):
        probe(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 5


def test_failed_connection_is_one_line_naming_the_field():
    def init(address):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    fake_ray = SimpleNamespace(is_initialized=lambda: False, init=init)
    with pytest.raises(ConfigError, match="^engine.ray.address: cannot connect to Ray at 'auto': Could not find") as e:
        connect(fake_ray, "auto")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- on Ray
@needs_ray
def test_greedy_run_matches_the_in_process_run(ray_engine, tiny_engine, prompts, tmp_path):
    config = GenerateConfig(model="tiny", n=1, temperature=0, max_new_tokens=12)
    local, _ = run_generate(tiny_engine, config, prompts, tmp_path / "local", chunk_size=8, progress=False)
    remote, result = run_generate(ray_engine, config, prompts, tmp_path / "ray", chunk_size=8, progress=False)
    assert (result.total, result.written, result.skipped) == (8, 8, 0)
    assert rows_by_id(remote) == rows_by_id(local)
    assert set(rows_by_id(remote)) == {p.id for p in prompts}


@needs_ray
def test_both_actors_hold_their_cpus(ray_engine, ray_cluster):
    assert len(ray_engine.actors) == 2
    assert ray_cluster.available_resources().get("CPU") == pytest.approx(0.5)


@needs_ray
def test_seeded_samples_match_the_in_process_engine(ray_engine, tiny_engine):
    conversations = [ask(p["prompt"]) for p in PROMPTS]
    params = [SamplingParams(n=2, temperature=0.7, top_p=0.95, max_new_tokens=10, seed=100 + i) for i in range(8)]
    remote = ray_engine.generate(conversations, params)
    local = tiny_engine.generate(conversations, params)
    assert remote == local
    assert all(s.seed is not None for c in remote for s in c.samples)


@needs_ray
def test_scores_match_the_in_process_engine(ray_engine, tiny_engine):
    conversations = [ask(p["prompt"]) for p in PROMPTS]
    continuations = [f"answer {i}" + " indeed" * i for i in range(8)]
    remote = ray_engine.score(conversations, continuations)
    local = tiny_engine.score(conversations, continuations)
    assert [r.token_ids for r in remote] == [r.token_ids for r in local]
    for r, loc in zip(remote, local):
        assert r.logprobs == pytest.approx(loc.logprobs, abs=1e-5)


@needs_ray
def test_prompt_kinds_and_top_logprobs_reach_the_actors(ray_engine, tiny_engine):
    tok = tiny_engine.tokenizer
    prompts = [TokenPrompt(encode_prompt(tok, ask(p["prompt"]))) for p in PROMPTS[:3]] + [RawPrompt("Once upon")]
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    assert (ray_engine.kind, ray_engine.capabilities) == (tiny_engine.kind, tiny_engine.capabilities)
    assert ray_engine.generate(prompts, greedy) == tiny_engine.generate(prompts, greedy)
    for remote, local in zip(ray_engine.top_logprobs(prompts, 4), tiny_engine.top_logprobs(prompts, 4)):
        assert remote.token_ids == local.token_ids
        assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-5)
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    with pytest.raises(
        CapabilityError, match=r"^engine backend 'transformers' lacks multimodal .* prompt 1 of a generate"
    ):
        ray_engine.generate([prompts[0], parts], greedy)


@needs_ray
def test_ray_finishes_a_run_started_in_process(ray_engine, tiny_engine, prompts, tmp_path):
    config = GenerateConfig(model="tiny", n=2, temperature=0.7, max_new_tokens=8)
    reference, _ = run_generate(tiny_engine, config, prompts, tmp_path / "reference", chunk_size=4, progress=False)
    run_generate(tiny_engine, config, prompts[:4], tmp_path / "run", chunk_size=4, progress=False)
    store, result = run_generate(ray_engine, config, prompts, tmp_path / "run", chunk_size=4, progress=False)
    assert (result.total, result.written, result.skipped) == (8, 4, 4)
    assert rows_by_id(store) == rows_by_id(reference)  # none lost, none twice, and the same samples


@needs_ray
def test_user_errors_from_actors_are_one_line(ray_engine, ray_cluster, tmp_path):
    with pytest.raises(InputError) as bad_role:
        ray_engine.generate([[{"role": "robot", "content": "hi"}]], SamplingParams(max_new_tokens=2))
    assert "\n" not in str(bad_role.value)
    with pytest.raises(ModelLoadError) as missing:
        RayEngine(str(tmp_path / "no-such-model"), ray_settings(num_actors=1, num_cpus_per_actor=0.5), progress=False)
    assert "\n" not in str(missing.value) and "no-such-model" in str(missing.value)
    assert ray_cluster.is_initialized()  # a Ray this engine did not start stays up
    assert eventually(lambda: ray_cluster.available_resources().get("CPU") == pytest.approx(0.5))  # actor freed
