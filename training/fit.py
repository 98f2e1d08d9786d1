"""The epoch bookkeeping of the small trainers (reader, backbone pretraining, box refiner): a row per
epoch in `--out`/metrics.jsonl, the training state in `--out`/state/ after every epoch, `--resume`
from it, and Ctrl-C or SIGTERM ending the run after the step it is on.

Their epochs take a minute or two on a CPU, so a stopped run keeps its last whole epoch and drops
the part of the one it was in; `--resume`, with the same flags, trains that epoch again from its
start. The state holds the weights in float32, the optimizer, the schedule, the random states and
the training loader's generator; the photos' order and their random augmentations depend only on
the seed, the epoch and the photo (`training.sampling`), so that a resumed run ends with the weights
of a run never stopped, with or without loader workers.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from training.interrupt import RunStoppedError, StopRequest
from training.state import load_train_state, save_train_state, saved_progress

log = logging.getLogger(__name__)
T = TypeVar("T")

Drawing = Callable[[list[dict[str, float]]], object]  # the rows so far -> a picture of them

# Flags a resumed run may change: they change where and how fast it runs, not what it learns.
FREE_ON_RESUME = frozenset({"resume", "out", "no_progress", "device", "workers", "preload_images"})


def recorded_flags(args: Any) -> dict[str, str]:
    """The run's flags as text (argparse namespace -> {name: str(value)}), less `FREE_ON_RESUME`."""
    return {k: str(v) for k, v in sorted(vars(args).items()) if k not in FREE_ON_RESUME}


@dataclass
class FitState:
    """What a small trainer's `--resume` restores: the model being trained, its optimizer and
    schedule, and the training loader's generator."""

    out: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    flags: dict[str, str]  # `recorded_flags`: a resumed run's must be the same

    @property
    def folder(self) -> Path:
        return self.out / "state"

    def start(self, resume: bool) -> list[dict[str, float]]:
        """The rows of the epochs done: none for a new run, which saves its starting state (so that a
        run stopped in its first epoch resumes too); with `resume`, those of `out`/state/, from which
        everything is restored (`resume_from`)."""
        if resume:
            return self.resume_from()
        if self.folder.exists():
            log.warning("%s holds a run's state: this run starts afresh over it", self.out)
        self.record([])
        return []

    def resume_from(self) -> list[dict[str, float]]:
        """Restore everything from `out`/state/ and return the rows of the epochs it holds. Raises
        ValueError when there is no state there, or it was saved by a run with other `flags`."""
        flags = self.flags
        if not (self.folder / "state.json").is_file():
            raise ValueError(f"nothing to resume: {self.folder} holds no saved state (run without --resume)")
        saved = saved_progress(self.folder).get("flags", {})
        changed = sorted(k for k in set(saved) | set(flags) if saved.get(k) != flags.get(k))
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)} (now {flags.get(k)})" for k in changed)
            raise ValueError(f"{self.out} was trained with other flags: {was}; resume with the same ones")
        progress = load_train_state(
            self.folder, self.optimizer, self.scheduler, None, self.model, self.generator
        )
        history: list[dict[str, float]] = progress["history"]
        log.info("resuming %s after epoch %d", self.out, len(history))
        return history

    def end_epoch(
        self,
        history: list[dict[str, float]],
        row: dict[str, float],
        draw: Drawing,
    ) -> None:
        """Add a finished epoch's `row` to `history`, `record` them, `draw` them and log the row."""
        history.append(row)
        self.record(history)
        draw(history)
        log.info("epoch %d: %s", row["epoch"], {k: round(v, 4) for k, v in row.items()})

    def record(self, history: list[dict[str, float]]) -> None:
        """Write `history` (one row per finished epoch) to `out`/metrics.jsonl and save the state."""
        write_rows(self.out / "metrics.jsonl", history)
        progress = {"epoch": len(history), "history": history, "flags": self.flags}
        save_train_state(
            self.folder, self.optimizer, self.scheduler, None, progress, self.model, self.generator
        )


def epoch_batches(batches: Iterable[T], limit: int, stop: Callable[[], bool] | None = None) -> Iterator[T]:
    """The first `limit` of `batches`, for one pass. The batch past the limit is still fetched, as a
    pass over a loader always has: the loader draws its random jitter, and a resumed run must draw
    as one never stopped. `stop` is asked once each batch but the last is done with (when the next
    is asked for); when it says so the pass ends there."""
    for step, batch in enumerate(batches):
        if step >= limit:
            return
        yield batch
        if stop is not None and step + 1 < limit and stop():
            return


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line; the whole file, so that a run started afresh in a used folder leaves
    none of the old run's rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def stopped_in_epoch(out: Path, stop: StopRequest, epoch: int, steps: int, per_epoch: int) -> RunStoppedError:
    """The error that ends a run stopped at `steps` of `per_epoch` in `epoch` (its state keeps the
    epoch before)."""
    log.warning(
        "stopped in epoch %d after step %d of %d: %s/state holds epoch %d; --resume trains epoch %d again",
        epoch, steps, per_epoch, out, epoch - 1, epoch,
    )  # fmt: skip
    return RunStoppedError(out, stop.signum or signal.SIGTERM)


def stopped_after_epoch(out: Path, stop: StopRequest, epoch: int) -> RunStoppedError:
    """The error that ends a run asked to stop during `epoch`'s last step (its state holds `epoch`)."""
    log.warning("stopped after epoch %d: %s/state holds it; --resume goes on from there", epoch, out)
    return RunStoppedError(out, stop.signum or signal.SIGTERM)
