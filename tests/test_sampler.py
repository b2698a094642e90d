import pytest
import torch

from sao.engine.sampler import NUCLEUS_CANDIDATES, choose_tokens, top_p_filter
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
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_sampling_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        SamplingParams(**kwargs)


def test_top_k_and_logprobs_default_off_and_stay_hashable():
    params = SamplingParams()
    assert (params.top_k, params.logprobs) == (0, False)
    assert hash(SamplingParams(top_k=5, logprobs=True)) == hash(SamplingParams(top_k=5, logprobs=True))
    assert SamplingParams(top_k=5) != SamplingParams(top_k=6)


# ------------------------------------------------------------------------------------------------ top-k
def seeded(rows: int, base: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(base + i) for i in range(rows)]


def draws(logits, top_k, top_p=1.0, temperature=1.0, steps=1500, seed=0):
    """``steps`` draws from one row of ``logits`` with one generator."""
    gen = torch.Generator().manual_seed(seed)
    temp, mass = torch.full((1, 1), temperature), torch.full((1, 1), top_p)
    return torch.tensor([int(choose_tokens(logits, temp, mass, [gen], [top_k])[0]) for _ in range(steps)])


def test_top_k_1_samples_exactly_the_greedy_token():
    logits = torch.randn(6, 3000)
    logits[0, 7] = logits[0, 9] = logits[0].max() + 1  # a tie: greedy's argmax takes the first
    temp = torch.tensor([[1.0], [0.5], [2.0], [1.0], [1.0], [0.7]])
    top_p = torch.tensor([[1.0], [1.0], [0.9], [0.3], [1.0], [0.95]])
    greedy = choose_tokens(logits, temp, top_p, [None] * 6)
    for base in range(5):
        assert torch.equal(choose_tokens(logits, temp, top_p, seeded(6, base), [1] * 6), greedy)
    assert greedy[0] == 7
    # Without the limit, these flat rows are not greedy: top_k=1 is what makes them so.
    assert not torch.equal(choose_tokens(logits, temp, top_p, seeded(6), [0] * 6), greedy)


@pytest.mark.parametrize("k", [5, NUCLEUS_CANDIDATES, NUCLEUS_CANDIDATES + 44])  # candidate path, its edge, full sort
def test_top_k_never_draws_outside_the_k_most_likely_and_renormalises(k):
    vocab = 2000
    torch.manual_seed(k)
    logits = torch.randn(1, vocab) * 0.1  # nearly flat: an unlimited draw lands anywhere
    allowed = set(logits[0].topk(k).indices.tolist())
    drawn = draws(logits, k, steps=3000)
    assert set(drawn.tolist()) <= allowed
    if k == 5:  # the top 5, in proportion to their probabilities
        probs = torch.softmax(logits[0, sorted(allowed)], -1)
        counts = torch.bincount(drawn, minlength=vocab)[sorted(allowed)].float() / len(drawn)
        assert counts.tolist() == pytest.approx(probs.tolist(), abs=0.03)
    else:
        assert len(set(drawn.tolist())) > k // 2  # the limit is not tighter than asked
    unlimited = draws(logits, 0, steps=300)
    assert not set(unlimited.tolist()) <= allowed


@pytest.mark.parametrize("k", [2, NUCLEUS_CANDIDATES + 44])
def test_top_p_applies_to_the_top_k_renormalised(k):
    # Token 0 holds half the mass, token 1 0.3, a flat tail the rest. Top-k first: the k kept renormalise,
    # token 0 then holds more than top_p, and the nucleus is token 0 alone. Top-p on the raw distribution
    # would keep token 1 too (0.5 < top_p), and top-k after it would not remove it.
    vocab = 1000
    probs = torch.cat([torch.tensor([0.5, 0.3]), torch.linspace(2.0, 1.0, vocab - 2)])
    probs[2:] *= 0.2 / probs[2:].sum()
    logits = probs.log()[None]
    head = float(0.5 / probs[:k].sum())
    assert set(draws(logits, k, top_p=head - 0.02, steps=500).tolist()) == {0}
    assert {0, 1} <= set(draws(logits, 0, top_p=head - 0.02, steps=500).tolist())
    # With top_p just above token 0's renormalised share, token 1 comes back.
    assert {0, 1} <= set(draws(logits, k, top_p=head + 0.02, steps=500).tolist())


def test_temperature_applies_before_top_k():
    # A temperature that flattens the distribution changes which tokens are drawn but not which are allowed.
    logits = torch.tensor([[5.0, 4.0, 3.0, -2.0, -3.0]])
    hot = draws(logits, 3, temperature=50.0, steps=600)
    assert set(hot.tolist()) == {0, 1, 2}
    assert torch.bincount(hot, minlength=5)[2] > 150  # near-uniform over the top 3 at this temperature


def test_a_top_k_row_draws_the_same_whatever_shares_its_batch():
    torch.manual_seed(3)
    logits = torch.randn(5, 3000)
    temp = torch.tensor([[1.0], [0.8], [1.2], [1.0], [1.0]])
    top_p = torch.tensor([[1.0], [0.9], [0.5], [1.0], [0.99]])
    top_k = [0, 40, NUCLEUS_CANDIDATES + 100, 7, 0]  # unlimited, candidates, full sort, candidates, full sort
    gens, alone_gens = seeded(5, 10), seeded(5, 10)
    for _ in range(40):
        together = choose_tokens(logits, temp, top_p, gens, top_k)
        for row in range(5):
            r = slice(row, row + 1)
            alone = choose_tokens(logits[r], temp[r], top_p[r], [alone_gens[row]], top_k[r])
            assert alone[0] == together[row]


def test_no_top_k_is_the_same_as_no_limit():
    torch.manual_seed(4)
    logits = torch.randn(4, 3000)
    temp, top_p = torch.ones(4, 1), torch.tensor([[1.0], [0.9], [0.999], [0.5]])
    first = choose_tokens(logits, temp, top_p, seeded(4), None)
    assert torch.equal(first, choose_tokens(logits, temp, top_p, seeded(4), [0, 0, 0, 0]))
    assert torch.equal(first, choose_tokens(logits, temp, top_p, seeded(4), [3000, 5000, 0, 0]))  # >= vocab: no limit


def test_stop_truncates_at_earliest_stop():
    stops = StopStrings(tokenizer=None, stops=["\n\n", "END"])
    assert stops.truncate("abc END x\n\n") == "abc "
    assert stops.truncate("no stop here") == "no stop here"
