"""The training photos' order and their random draws, both fixed by the seed, the epoch and the photo:
a run stopped in the middle of an epoch goes on with the same order where it stopped, and each photo
gets the same augmentation whichever loader worker prepares it, and whether or not the run was
resumed (`EpochShuffle`, `EpochKeys`, `KeyedDraws`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

T = TypeVar("T")
Key = tuple[int, int]  # (epoch, index): which pass over the data, and which item


class EpochShuffle(Sampler[int]):
    """Indices 0..n-1 in an order that depends only on (`seed`, epoch), less the first `skip`.

    `set_epoch(epoch, skip)` before each pass, as for `DistributedSampler`: the order of an epoch is
    the same whether a run reaches it directly or after `--resume`, and a resumed epoch starts
    `skip` indices in (steps done x batch size: the batches it already trained on).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.epoch = self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if not 0 <= skip <= self.n:
            raise ValueError(f"cannot skip {skip} of {self.n} indices")
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        """The epoch's whole order, the skipped indices included."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.skip :])

    def __len__(self) -> int:
        return self.n - self.skip


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on (`seed`, `epoch`, `index`)."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def seeded_draws(seed: int) -> Iterator[None]:
    """Inside: Python's `random` and torch's CPU generator seeded from `seed` (what the training
    transforms draw from; none draws from NumPy's global generator, whose state alone takes ~130 us to
    save and restore); after: each as it was before, so that the caller's own draws (a detector's
    proposal sampling, say) do not depend on what was drawn inside. ~30 us in all."""
    saved = random.getstate(), torch.default_generator.get_state()
    random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        torch.default_generator.set_state(saved[1])


class EpochKeys(Sampler[Key]):
    """`sampler`'s indices as (epoch, index) keys for `KeyedDraws`; the epoch is the one last given to
    `set_epoch`, which passes it on to `sampler` (with `skip` where `sampler` is an `EpochShuffle`)."""

    def __init__(self, sampler: EpochShuffle | DistributedSampler[Any]) -> None:
        self.sampler = sampler

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if isinstance(self.sampler, EpochShuffle):
            self.sampler.set_epoch(epoch, skip)
        elif skip:
            raise ValueError(f"{type(self.sampler).__name__} cannot skip indices")
        else:
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Key]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class KeyedDraws(Dataset[T], Generic[T]):
    """`dataset`'s item `index`, for the key (epoch, index), drawn inside `seeded_draws(item_seed(seed,
    epoch, index))`: its random augmentation depends on the seed, the epoch and the item only, not
    on the loader worker that prepares it nor on what that worker prepared before. Use with an
    `EpochKeys` sampler."""

    def __init__(self, dataset: Dataset[T], seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Key) -> T:
        epoch, index = key
        with seeded_draws(item_seed(self.seed, epoch, index)):
            return self.dataset[index]


def shuffled_draws(dataset: Dataset[T], seed: int) -> tuple[KeyedDraws[T], EpochKeys]:
    """`dataset` for a training loader under `seed`: its items keyed for their draws, and the sampler
    of their keys in an `EpochShuffle` order (`set_epoch` it before each pass)."""
    keyed = KeyedDraws(dataset, seed)
    return keyed, EpochKeys(EpochShuffle(len(keyed), seed))
