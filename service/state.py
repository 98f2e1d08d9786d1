"""What the running service knows about itself: readiness, the predictor and the batcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models.reread import Findings
from service.batching import MicroBatcher
from service.config import Settings, resolve_checkpoint
from service.errors import NotReadyError
from service.predictor import Predictor, serving_version
from service.telemetry import Telemetry

log = logging.getLogger("service")
Status = Literal["loading", "ready", "failed", "draining"]


@dataclass
class ServiceState:
    settings: Settings
    telemetry: Telemetry = field(default_factory=Telemetry)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    status: Status = "loading"
    reason: str | None = "the model is loading"
    predictor: Predictor | None = None
    batcher: MicroBatcher[np.ndarray, Findings] | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    version: str = ""  # X-Model-Version, once loaded (`service.predictor.serving_version`)

    def require_ready(self) -> tuple[Predictor, MicroBatcher[np.ndarray, Findings]]:
        if self.status != "ready" or self.predictor is None or self.batcher is None:
            raise NotReadyError(f"the service is not ready: {self.reason}", headers={"Retry-After": "5"})
        return self.predictor, self.batcher

    def load(self) -> None:
        """Load, warm up and start serving on the model thread; any failure leaves the process live
        and not ready, with the reason."""
        s = self.settings
        path = resolve_checkpoint(s)
        loaded: dict[str, float] = {}

        def setup() -> Callable[[list[np.ndarray]], list[Findings]]:
            predictor = load_predictor(path, self.device, s)
            loaded["warm_ms"] = predictor.warm_up()
            self.predictor, self.version = predictor, serving_version(predictor, s.reduce_to_px)
            return predictor.detect

        try:
            batcher = MicroBatcher(
                setup,
                max_batch=s.batch_size,
                max_wait_s=s.batch_wait_ms / 1000,
                max_queue=s.queue_depth,
                on_batch=self._record_batch,
                on_depth=self.telemetry.queue_depth.set,
            )
            batcher.wait_started()
            batcher.seed_pace(loaded["warm_ms"] / 1000)  # before the first request: its Retry-After
            self.batcher = batcher
            if self.status == "loading":
                self.status, self.reason = "ready", None
            assert self.predictor is not None
            log.info(
                "%s, version %s; warm-up %.1f ms",
                describe_serving(self.predictor, path, self.device),
                self.version,
                loaded["warm_ms"],
            )
        except Exception as exc:  # reported through readiness with its own message
            self.predictor = None
            self.status, self.reason = "failed", f"cannot load the model from {path}: {exc}"
            log.error("%s", self.reason)
        finally:
            self.loaded.set()

    def drain(self) -> None:
        if self.status != "draining":
            log.info("draining: refusing new work, finishing what is in flight")
        self.status, self.reason = "draining", "the service is shutting down"

    def _record_batch(self, size: int, seconds: float) -> None:
        self.telemetry.batch_size.observe(size)
        self.telemetry.inference.observe(seconds)


def load_predictor(path: Path, device: torch.device, settings: Settings) -> Predictor:
    """The checkpoint at `path` on `device` as `Predictor.load` prepares it, with the operator's
    settings (each None: the checkpoint's own)."""
    s = settings
    return Predictor.load(
        path,
        device,
        score_threshold=s.score_threshold,
        iou_threshold=s.iou_threshold,
        center_distance_ratio=s.center_distance_ratio,
        height_ratio=s.height_ratio,
        read_columns=s.read_columns,
        zoom_below_px=s.zoom_below_px,
        search_tiles=s.search_tiles,
        side_look=s.side_look,
        search_located=s.search_located,
        search_below_p=s.search_below_p,
        search_tiles_max=s.search_tiles_max,
        search_near=s.search_near,
        grain_threshold=s.grain_threshold,
        sharpen_gate=s.sharpen_gate,
        levels_gate=s.levels_gate,
        balance_gate=s.balance_gate,
        widen_gate=s.widen_gate,
        squat_gate=s.squat_gate,
        use_reader=s.use_reader,
        use_refiner=s.use_refiner,
        use_rescorer=s.use_rescorer,
        use_int8=s.use_int8,
    )


def describe_serving(predictor: Predictor, path: Path, device: torch.device) -> str:
    """The startup line: which checkpoint serves on which device, the parts in int8, and the split
    the verifier behind p_correct was fitted on (where it holds for this pipeline)."""
    meta, verifier = predictor.meta, predictor.verifier
    line = f"serving {path} ({meta.detector.arch}, sha256 {meta.weights_sha256[:12]}...) on {device}"
    if predictor.int8_parts:
        line += f", in int8: {', '.join(predictor.int8_parts)}"
    if verifier:
        line += f", p_correct from the verifier fitted on {verifier[1].fitted_on.get('split', '?')}"
    return line
