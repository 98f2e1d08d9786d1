import random

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from training.sampling import EpochKeys, EpochShuffle, KeyedDraws, item_seed, shuffled_draws


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


class Draws(Dataset[tuple[float, float]]):
    """Item i: one draw from each generator the training transforms use."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[float, float]:
        return random.random(), float(torch.rand(()))


def test_an_items_draws_depend_on_the_seed_the_epoch_and_the_item_only() -> None:
    drawn = KeyedDraws(Draws(), seed=5)
    first = [drawn[(1, i)] for i in range(6)]
    assert [drawn[(1, i)] for i in reversed(range(6))] == first[::-1]  # whatever came before
    assert len({d for item in first for d in item}) == 12  # and no two alike
    assert drawn[(2, 0)] != first[0] and KeyedDraws(Draws(), seed=6)[(1, 0)] != first[0]
    assert item_seed(5, 1, 0) != item_seed(5, 0, 1) and item_seed(5, 1, 0) == item_seed(5, 1, 0)


def test_keyed_draws_leave_the_callers_generators_as_they_were() -> None:
    torch.manual_seed(0), random.seed(0)
    expected = (random.random(), float(torch.rand(())))
    torch.manual_seed(0), random.seed(0)
    KeyedDraws(Draws(), seed=5)[(1, 3)]
    assert (random.random(), float(torch.rand(()))) == expected


def test_epoch_keys_pair_each_index_with_the_epoch_and_pass_the_skip_on() -> None:
    keys = EpochKeys(EpochShuffle(10, seed=0))
    keys.set_epoch(3, skip=4)
    assert list(keys) == [(3, i) for i in keys.sampler.order()[4:]] and len(keys) == 6
    assert keys.epoch == 3
    spread = EpochKeys(DistributedSampler(list(range(10)), num_replicas=2, rank=1, seed=0))
    spread.set_epoch(2)
    assert [epoch for epoch, _ in spread] == [2] * 5
    with pytest.raises(ValueError, match="DistributedSampler cannot skip"):
        spread.set_epoch(2, skip=2)


def test_shuffled_draws_pair_a_keyed_dataset_with_the_sampler_of_its_keys() -> None:
    keyed, order = shuffled_draws(Draws(), seed=5)
    order.set_epoch(2)
    shuffle = EpochShuffle(6, seed=5)
    shuffle.set_epoch(2)
    assert [keyed[key] for key in order] == [KeyedDraws(Draws(), seed=5)[(2, i)] for i in shuffle.order()]
    assert len(order) == len(keyed) == 6
