import torch

from sao.engine.batching import left_pad, length_buckets


def test_length_buckets_sorted_longest_first_and_bounded():
    lengths = [3, 9, 1, 7, 5]
    buckets = length_buckets(lengths, 2)
    assert buckets == [[1, 3], [4, 0], [2]]
    assert sorted(i for b in buckets for i in b) == list(range(5))


def test_left_pad_aligns_ends_and_counts_positions_from_real_tokens():
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos[:, -1].tolist() == [2, 0]
    assert pos[0].tolist() == [0, 1, 2]
