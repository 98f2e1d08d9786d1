"""Helpers shared by test modules."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from training.transforms import AugmentConfig


def augment_only(**changes: float) -> AugmentConfig:
    """Every augmentation off (no jitter, warp or erasing) except `changes`."""
    off = dict(brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0, erasing_p=0)
    return AugmentConfig(**{**off, **changes})


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, as a trained model has, so that
    folding them or zeroing them matters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


class StopAfter:
    """Stands in for `training.interrupt.StopRequest`: asks to stop once it has been asked `calls` times
    (once a step), as a SIGTERM arriving during that step would. With `late`, the signal arrives just
    after that ask: the ask says no, and the run sees `requested` at its next look (after the epoch,
    where that step was its last)."""

    def __init__(self, calls: int, late: bool = False) -> None:
        self.calls, self.late, self.requested, self.signum = calls, late, False, signal.SIGTERM

    def __call__(self) -> bool:
        self.calls -= 1
        asked = self.requested
        self.requested = self.requested or self.calls <= 0
        return asked if self.late else self.requested

    def __enter__(self) -> StopAfter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def sigterm_once_workers_run(cmd: Sequence[str], workers: int = 2, settle: float = 0.0) -> tuple[int, str]:
    """Start a training command in its own process group, wait until its stop handlers are in place
    and `workers` child processes (its loader workers) run, `settle` seconds more, then send SIGTERM
    to the whole group, as a scheduler ending a job does. Returns its exit code and stderr."""
    process = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert process.stderr is not None
    log = []
    for line in process.stderr:  # until the stop handlers are in place
        log.append(line)
        if "Ctrl-C or SIGTERM stops the run" in line:
            break
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 120
    while len(children.read_text().split()) < workers and time.monotonic() < deadline:
        time.sleep(0.02)  # so that the signal reaches the workers too
    time.sleep(settle)
    os.killpg(process.pid, signal.SIGTERM)
    rest = process.communicate(timeout=300)[1]
    return process.returncode, "".join(log) + rest
