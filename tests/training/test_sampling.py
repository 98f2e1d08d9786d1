import pytest
import torch

from training.sampling import EpochShuffle


def test_the_order_depends_on_the_seed_and_the_epoch_only() -> None:
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    a.set_epoch(2)
    first = list(a)
    torch.rand(100)  # the global generator plays no part
    b.set_epoch(2)
    assert list(b) == first and sorted(first) == list(range(50)) and first != list(range(50))
    b.set_epoch(3)
    other_seed = EpochShuffle(50, seed=4)
    other_seed.set_epoch(2)
    assert list(b) != first and list(other_seed) != first


def test_a_resumed_epoch_leaves_out_the_batches_it_covered() -> None:
    sampler = EpochShuffle(10, seed=0)
    sampler.set_epoch(1)
    whole = list(sampler)
    sampler.set_epoch(1, skip=4)
    assert list(sampler) == whole[4:] and len(sampler) == 6 and sampler.order() == whole
    with pytest.raises(ValueError, match="cannot skip 11 of 10"):
        sampler.set_epoch(1, skip=11)
