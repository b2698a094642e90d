"""The transformers engine's faster decode paths (issue 21) compute what the plain ones do.

- `sao.engine.growing_cache`: keys and values appended in place, not concatenated;
- `sao.engine.attention`: grouped-query SDPA with the mask, each key/value head read once;
- `sao.engine.sampler.choose_tokens`: the argmax taken only for greedy rows.

In float32 each must give the plain path's numbers (the cache and the sampler exactly, attention to float
rounding); bf16's tolerance is stated where it is tested.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

import sao.engine.transformers_engine as transformers_engine
from conftest import GREEDY_QUESTIONS, ask
from sao.engine import SamplingParams
from sao.engine.attention import GQA_SDPA, use_gqa_sdpa
from sao.engine.growing_cache import SPARE, GrowingLayer, growing_cache
from sao.engine.sampler import choose_tokens
from sao.engine.transformers_engine import TransformersEngine
from sao.models import load_model


def states(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, length, 8, generator=g), torch.randn(batch, 3, length, 8, generator=g)


def test_a_growing_layer_holds_what_a_dynamic_layer_holds_through_steps_row_drops_and_crops():
    plain, growing = DynamicLayer(), GrowingLayer()
    steps = [states(4, 10, 0), *(states(4, 1, s) for s in range(1, SPARE + 20))]  # past the first buffer's room
    for key, value in steps:
        for layer in (plain, growing):
            out_k, out_v = layer.update(key, value)
        assert torch.equal(out_k, plain.keys) and torch.equal(out_v, plain.values)
    for layer in (plain, growing):
        layer.batch_select_indices(torch.tensor([0, 2, 2]))  # a row dropped, one repeated (shared prefill)
    assert torch.equal(growing.keys, plain.keys) and growing.keys.shape[0] == 3
    for layer in (plain, growing):
        layer.crop(-5)
        layer.update(*states(3, 2, 99))
    assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)


def test_a_growing_cache_decodes_the_plain_caches_tokens(monkeypatch, smol_dir):
    engine = TransformersEngine(load_model("smollm2-135m", dtype="float32"), max_batch_size=4, progress=False)
    convs = [ask(q) for q in GREEDY_QUESTIONS[:4]]
    sampled = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=24, seed=3)
    growing = [c.samples[0].token_ids for c in engine.generate(convs, sampled)]
    monkeypatch.setattr(transformers_engine, "growing_cache", lambda config: DynamicCache(config=config))
    plain = [c.samples[0].token_ids for c in engine.generate(convs, sampled)]
    assert growing == plain
    assert isinstance(growing_cache(engine.model.config).layers[0], GrowingLayer)


def padded_batch(length: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 1000, (3, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :9] = 0  # left padding: the masked, grouped path transformers' SDPA does not take
    mask[2, :3] = 0
    return ids, mask


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("bfloat16", 0.5)])
def test_grouped_sdpa_gives_transformers_sdpa_logits(smol_dir, dtype, tolerance):
    """A padded prefill and a decode step. Measured on 2026-12-03 (AMX Xeon): the prefill logits equal in
    both dtypes; the decode step's (transformers reshapes the queries there) within 2.7e-5 in float32 and
    0.375 in bf16, three bf16 steps at the logits' magnitude (16-32). So bf16 greedy text can part at
    near-ties, as bf16 already makes it part with the batch (docs/engine.md)."""
    model = load_model("smollm2-135m", dtype=dtype).model
    ids, mask = padded_batch()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        model.set_attn_implementation("sdpa")
        cache = DynamicCache(config=model.config)
        plain = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
        step = torch.tensor([[11], [12], [13]])
        wider = torch.cat([mask, mask.new_ones(3, 1)], 1)
        plain_step = model(
            input_ids=step, attention_mask=wider, position_ids=positions[:, -1:] + 1, past_key_values=cache
        ).logits
        use_gqa_sdpa(model)
        assert model.config._attn_implementation == GQA_SDPA
        cache = DynamicCache(config=model.config)
        ours = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
        ours_step = model(
            input_ids=step, attention_mask=wider, position_ids=positions[:, -1:] + 1, past_key_values=cache
        ).logits
    real = mask.bool()
    assert (plain[real].float() - ours[real].float()).abs().max() < tolerance
    assert (plain_step.float() - ours_step.float()).abs().max() < tolerance


def test_mixed_greedy_and_sampled_rows_take_the_argmax_and_their_own_draws():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    temperature, top_p = torch.ones(4, 1), torch.full((4, 1), 0.9)
    gens = [None, torch.Generator().manual_seed(5), None, torch.Generator().manual_seed(6)]
    mixed = choose_tokens(logits, temperature, top_p, gens)
    assert mixed[0] == logits[0].argmax() and mixed[2] == logits[2].argmax()
    alone = choose_tokens(
        logits[[1, 3]], temperature[:2], top_p[:2], [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    )
    assert mixed[[1, 3]].tolist() == alone.tolist()


def test_a_model_saved_after_the_engine_switched_its_attention_loads_without_sao(tiny_model_dir, tmp_path):
    """The attention implementation is a runtime choice: a trained model's config.json must not name
    `GQA_SDPA`, or transformers without sao imported could not load it."""
    import json

    engine = TransformersEngine(load_model(str(tiny_model_dir), dtype="float32"), progress=False)
    assert engine.model.config._attn_implementation == GQA_SDPA
    engine.model.save_pretrained(tmp_path)
    assert GQA_SDPA not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
