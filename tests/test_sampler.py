import pytest
import torch

from sao.engine.sampler import choose_tokens, top_p_filter
from sao.engine.stops import StopStrings
from sao.engine.types import SamplingParams, derive_seed
from sao.errors import ConfigError


def test_top_p_keeps_smallest_nucleus_and_always_the_top_token():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.9, 0.05, 0.03, 0.02]])
    out = top_p_filter(probs, torch.tensor([[0.7], [0.5]]))
    assert out[0].tolist() == pytest.approx([0.5, 0.3, 0.0, 0.0])
    assert out[1].tolist() == pytest.approx([0.9, 0.0, 0.0, 0.0])


def test_greedy_rows_take_argmax_and_seeded_rows_repeat():
    logits = torch.randn(3, 50)
    temp = torch.ones(3, 1)
    top_p = torch.ones(3, 1)

    def draw():
        gens = [None, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
        return choose_tokens(logits.clone(), temp, top_p, gens)

    first, second = draw(), draw()
    assert first[0] == logits[0].argmax()
    assert torch.equal(first, second)


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[choose_tokens(logits, torch.ones(1, 1), torch.ones(1, 1), [gen])[0]] += 1
    assert (counts / 2000).tolist() == pytest.approx([0.7, 0.2, 0.1], abs=0.04)


@pytest.mark.parametrize("vocab", [8, 2000])
def test_top_p_sampling_draws_only_from_the_nucleus(vocab):
    # vocab 8: the nucleus lies among the top-k candidates; vocab 2000 with a flat tail:
    # it does not, and the full-sort path runs.
    head = torch.tensor([0.4, 0.3, 0.2])
    tail = torch.linspace(2.0, 1.0, vocab - 3)  # strictly decreasing, so the nucleus is well defined
    tail = tail / tail.sum() * 0.1
    logits = torch.log(torch.cat([head, tail]))[None]
    top_p = torch.tensor([[0.65 if vocab == 8 else 0.95]])
    gen = torch.Generator().manual_seed(0)
    draws = [int(choose_tokens(logits, torch.ones(1, 1), top_p, [gen])[0]) for _ in range(3000)]
    counts = torch.bincount(torch.tensor(draws), minlength=vocab).float() / len(draws)
    if vocab == 8:  # nucleus {0, 1}: mass before token 2 is 0.7 >= 0.65
        assert counts[:2].tolist() == pytest.approx([0.4 / 0.7, 0.3 / 0.7], abs=0.03)
        assert counts[2:].sum() == 0
    else:  # nucleus: the head (0.9) plus the first tail tokens up to 0.95
        assert counts[:3].tolist() == pytest.approx([0.4 / 0.95, 0.3 / 0.95, 0.2 / 0.95], abs=0.03)
        assert counts[3:].sum() == pytest.approx(0.05 / 0.95, abs=0.02)
        assert counts[1000:].sum() == 0  # the nucleus ends near tail token 700


def test_derive_seed_is_stable_and_spreads():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert len({derive_seed(0, f"row{i}") for i in range(1000)}) == 1000
    assert 0 <= derive_seed(1, 2) < 2**63


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": 0}, "n"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_sampling_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        SamplingParams(**kwargs)


def test_stop_truncates_at_earliest_stop():
    stops = StopStrings(tokenizer=None, stops=["\n\n", "END"])
    assert stops.truncate("abc END x\n\n") == "abc "
    assert stops.truncate("no stop here") == "no stop here"
