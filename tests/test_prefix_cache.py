"""Shared-prefix prefill (`sao.engine.prefix_cache`): the same log-probs as a full recompute, for less work."""

from __future__ import annotations

import pytest
import torch

from sao.engine.prefix_cache import PrefixCache, common_prefix_length
from sao.engine.types import TokenPrompt
from test_engine import forward_logprobs

# 40 shared tokens (above MIN_SHARED), then suffixes of different lengths.
SHARED = list(range(100, 140))
ROWS = [SHARED + [7, 8, 9], SHARED + [11], SHARED + [12, 13, 14, 15, 16]]


def test_common_prefix_length() -> None:
    assert common_prefix_length(ROWS) == 40
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 3
    assert common_prefix_length([[1, 2], [3]]) == 0


def test_shared_prefill_gives_each_row_its_own_logits_and_reuses_a_kept_prefix(tiny_engine) -> None:
    cache = PrefixCache(tiny_engine.model, tiny_engine.pad_id, capacity=2)
    with torch.inference_mode():
        first = cache.prefill(ROWS, 1, [1, 1, 1])
    assert (first.shared, first.reused) == (40, 0)
    for row, logits in zip(ROWS, first.logits[:, -1]):
        torch.testing.assert_close(
            logits.float().log_softmax(-1), forward_logprobs(tiny_engine.model, row)[-1], atol=1e-4, rtol=0
        )
    # A later batch that shares 40 tokens with a kept prefix, then parts from it, crops the kept KV.
    later = [SHARED + [50, 51, 52, 7], SHARED + [50, 51, 52, 9, 9]]
    with torch.inference_mode():
        again = cache.prefill(later, 1, [1, 1])
    assert (again.shared, again.reused) == (43, 40)
    for row, logits in zip(later, again.logits[:, -1]):
        torch.testing.assert_close(
            logits.float().log_softmax(-1), forward_logprobs(tiny_engine.model, row)[-1], atol=1e-4, rtol=0
        )


def test_rows_keep_the_positions_whose_logits_are_wanted_out_of_the_prefix(tiny_engine) -> None:
    cache = PrefixCache(tiny_engine.model, tiny_engine.pad_id)
    rows = [SHARED + [7, 8, 9], SHARED + [7, 8, 9, 10]]
    with torch.inference_mode():
        run = cache.prefill(rows, 4, [4, 4])
    assert run.shared == 39  # the first row's last four tokens stay in its suffix
    full = forward_logprobs(tiny_engine.model, rows[0])
    torch.testing.assert_close(run.logits[0].float().log_softmax(-1), full[-4:], atol=1e-4, rtol=0)


def test_off_or_short_prefixes_take_the_plain_pass(tiny_engine) -> None:
    off = PrefixCache(tiny_engine.model, tiny_engine.pad_id, capacity=0)
    with torch.inference_mode():
        assert off.prefill(ROWS, 1, [1, 1, 1]).shared == 0
        assert PrefixCache(tiny_engine.model, tiny_engine.pad_id).prefill([[1, 2, 3], [1, 2, 4]], 1, [1, 1]).shared == 0


def test_engine_score_and_top_logprobs_agree_with_the_cache_on_and_off(tiny_engine) -> None:
    prompts = [TokenPrompt(SHARED + [7]), TokenPrompt(SHARED + [8, 9]), TokenPrompt(SHARED + [10, 11, 12])]
    continuations = [[1, 2], [3], [4, 5, 6]]
    capacity = tiny_engine.prefix.capacity
    try:
        tiny_engine.prefix.capacity = 0
        plain_scores = tiny_engine.score(prompts, continuations)
        plain_tops = tiny_engine.top_logprobs(prompts, 5)
        tiny_engine.prefix.capacity = 4
        shared_scores = tiny_engine.score(prompts, continuations)
        shared_tops = tiny_engine.top_logprobs(prompts, 5)
    finally:
        tiny_engine.prefix.capacity = capacity
        tiny_engine.prefix.clear()
    for plain, shared in zip(plain_scores, shared_scores):
        assert shared.token_ids == plain.token_ids
        assert shared.logprobs == pytest.approx(plain.logprobs, abs=1e-4)
    for plain, shared in zip(plain_tops, shared_tops):
        assert shared.token_ids == plain.token_ids
        assert shared.logprobs == pytest.approx(plain.logprobs, abs=1e-4)


def test_shared_prefill_holds_in_bf16_too(tiny_engine) -> None:
    """bf16 is the default on CPUs with native bf16 and runs emulated elsewhere: both kinds of CI take this path."""
    import copy

    model = copy.deepcopy(tiny_engine.model).to(torch.bfloat16)
    cache = PrefixCache(model, tiny_engine.pad_id)
    with torch.inference_mode():
        run = cache.prefill(ROWS, 1, [1, 1, 1])
        assert run.shared == 40
        for row, logits in zip(ROWS, run.logits[:, -1]):
            full = model(torch.tensor([row])).logits[0, -1].float().log_softmax(-1)
            got = logits.float().log_softmax(-1)
            # bf16 rounds by matmul shape; a wrong position or a lost prefix is off by far more.
            torch.testing.assert_close(got, full, atol=0.05, rtol=0)
