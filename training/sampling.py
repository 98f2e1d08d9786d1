"""The training photos' order: a shuffle fixed by the seed and the epoch, so that a run stopped in the
middle of an epoch can go on with the same order where it stopped."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


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
