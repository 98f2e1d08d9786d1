"""Prometheus metrics, one registry per app (so several apps in one process do not collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Telemetry:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("digitserve_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "digitserve_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode = Histogram(
            "digitserve_decode_seconds",
            "upload decoding time per image, by format: a phone's HEIC costs several times a JPEG",
            ["format"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("digitserve_queue_depth", "images waiting for the model", registry=r)
        self.batch_size = Histogram(
            "digitserve_batch_size",
            "images per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.inference = Histogram(
            "digitserve_inference_seconds", "model time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.p_correct = Histogram(
            "digitserve_p_correct",
            "the verifier's p_correct of each number /v1/recognize read (models/verifier.py): a share "
            "sliding towards low values says the photos differ from those it was fitted on",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
            registry=r,
        )
        self.confirmed = Counter(
            "digitserve_confirmed",
            "/v1/confirm's answers per image, by how the number it shows was found (read, alternative), "
            "or none",
            ["how"],
            registry=r,
        )
        self.rejected = Counter(
            "digitserve_rejected", "requests refused before inference", ["reason"], registry=r
        )
