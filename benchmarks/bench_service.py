"""Latency and throughput through HTTP against the bare model loop, on the same images.

    python benchmarks/bench_service.py [--checkpoint DIR] [--requests 200] [--concurrency 1 8] \
        [--batch-size 1 8] [--upload field body json] [--route detect recognize confirm]

Starts the real service (uvicorn, loopback only), sends one-image /v1/detect requests at each
concurrency, and prints p50/p99 latency and images/s beside the bare `Predictor.detect` loop, with the
ratio. An HTTP row also gives the median of the service's own `timing.total_ms`: the gap to its p50 is
what HTTP, the upload and the client cost. `--upload body` sends each image as the request body instead
of a multipart `image` field, `--upload json` in base64 in a JSON body (a row for each way given; the
base64 is encoded before timing starts, as a client holding it would send it). `--route recognize` and
`--route confirm` (`?number=` each image's own label where the images are real, alternatives on) time
those routes instead of /v1/detect (a row for each). The bare loop runs six
times more, without the second look at small numbers (models/zoom.py), without the checkpoint's reader
(models/reread.py), without its box refiner (models/refiner.py), without its rescorer
(models/rescorer.py), in float32 where the checkpoint has int8 ranges (the detector, and the refiner and
reader where it has theirs; models/int8.py) and without `models.optimize.prepare_for_inference`, to show
what each costs or buys. Uses real SVHN validation images when ../shared/data is present, else synthetic
ones; the shipped checkpoint when there is one, else a randomly initialised fast detector (same compute,
meaningless boxes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from models.detector import DETECTOR_PRESETS, build_detector  # noqa: E402
from models.host import cpu_info  # noqa: E402
from models.inference import resolve_device  # noqa: E402
from service.config import Settings, resolve_checkpoint  # noqa: E402
from service.imaging import decode_image  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training import synth  # noqa: E402
from training.data import load_coco_split  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "svhn-hw2" / "valid"


def load_images(count: int) -> tuple[list[bytes], str]:
    if REAL.is_dir():
        paths = sorted(REAL.glob("*.png"), key=lambda p: int(p.stem))[:count]
        return [p.read_bytes() for p in paths], "real SVHN validation images"
    images = []
    for seed in range(count):
        buffer = io.BytesIO()
        synth.render_sample(seed).image.save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images, "synthetic images"


def pick_checkpoint(requested: str | None) -> tuple[Path, str]:
    if requested:
        return Path(requested), requested
    path = resolve_checkpoint(Settings())
    if (path / "checkpoint.json").is_file():
        return path, str(path)
    config = DETECTOR_PRESETS["fast"]
    folder = save_checkpoint(Path(tempfile.mkdtemp()) / "random", build_detector(config).eval(), config)
    return folder, "random fast detector (no trained checkpoint found)"


def summarise(latencies_ms: list[float], seconds: float, images: int) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "images_per_s": images / seconds,
    }


def bare_loops(predictors: list[Predictor], images: list[bytes], requests: int) -> list[dict[str, float]]:
    """`requests` one-image `Predictor.detect` calls for each predictor, the predictors taking turns on
    every image so that a machine that speeds up or slows down affects all alike."""
    tensors = [decode_image(b, 25_000_000).pixels for b in images]
    for predictor in predictors:
        for t in tensors[:3]:
            predictor.detect([t])
    latencies: list[list[float]] = [[] for _ in predictors]
    for i in range(requests):
        for predictor, times in zip(predictors, latencies, strict=True):
            t0 = time.perf_counter()
            predictor.detect([tensors[i % len(tensors)]])
            times.append((time.perf_counter() - t0) * 1000)
    return [summarise(times, sum(times) / 1000, requests) for times in latencies]


ROUTES = {"detect": "/v1/detect", "recognize": "/v1/recognize", "confirm": "/v1/confirm"}


def load_labels(count: int) -> list[int]:
    """The labels of `load_images`' real images, in their order (1 for each synthetic one: what
    /v1/confirm is asked costs the same whatever it is)."""
    if not REAL.is_dir():
        return [1] * count
    numbers = {r.path.name: r.number for r in load_coco_split(REAL, REAL.parent / "valid.json")[0]}
    return [numbers[p.name] for p in sorted(REAL.glob("*.png"), key=lambda p: int(p.stem))[:count]]


async def http_load(
    url: str,
    images: list[bytes],
    requests: int,
    concurrency: int,
    upload: str = "field",
    route: str = "detect",
    labels: list[int] | None = None,
) -> dict[str, float]:
    """Client-side latency summary, plus `server_p50`: the median of the service's own `timing.total_ms`
    (request start to result, decode and queue included), so that what HTTP itself costs is the gap.
    `upload`: "field" (multipart, an `image` field), "body" (the PNG as the request body) or "json"
    (`{"image": "<base64>"}`); `route`: a key of ROUTES, /v1/confirm asked about each image's label
    in `labels` (1 without)."""
    latencies: list[float] = []
    server_ms: list[float] = []
    failures = 0
    counter = iter(range(requests))
    encoded = (
        [json.dumps({"image": base64.b64encode(i).decode()}).encode() for i in images]
        if upload == "json"
        else []
    )
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            nonlocal failures
            for i in counter:
                t0 = time.perf_counter()
                image = images[i % len(images)]
                target = url + ROUTES[route]
                if route == "confirm":
                    target += f"?number={labels[i % len(labels)] if labels else 1}"
                if upload == "body":
                    headers = {"content-type": "image/png"}
                    response = await client.post(target, content=image, headers=headers)
                elif upload == "json":
                    headers = {"content-type": "application/json"}
                    body = encoded[i % len(images)]
                    response = await client.post(target, content=body, headers=headers)
                else:
                    files = [("image", ("x.png", image, "image/png"))]
                    response = await client.post(target, files=files)
                latencies.append((time.perf_counter() - t0) * 1000)
                failures += response.status_code != 200
                if response.status_code == 200:
                    server_ms.append(response.json()["results"][0]["timing"]["total_ms"])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    result = summarise(latencies, seconds, requests)
    result["failures"] = failures
    result["server_p50"] = statistics.median(server_ms) if server_ms else float("nan")
    return result


def start_server(checkpoint: Path, port: int, batch_size: int, device: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DIGITSERVE_CHECKPOINT": str(checkpoint),
        "DIGITSERVE_DEVICE": device,
        "DIGITSERVE_BATCH_SIZE": str(batch_size),
        "DIGITSERVE_QUEUE_DEPTH": "1000",
        "DIGITSERVE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not become ready")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    served = int(Settings.model_fields["batch_size"].default)
    p.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[served],
        help=f"the service's BATCH_SIZE for the HTTP rows; default: its own default ({served})",
    )
    p.add_argument(
        "--upload",
        nargs="+",
        choices=["field", "body", "json"],
        default=["field"],
        help="send each image as a multipart `image` field, as the request body, in base64 in a JSON "
        "body, or each way in turn",
    )
    p.add_argument(
        "--route",
        nargs="+",
        choices=sorted(ROUTES),
        default=["detect"],
        help="the route timed through HTTP (a row for each); confirm asks about each image's label",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--port", type=int, default=8765)
    return p.parse_args()


def bare_variants(checkpoint: Path, device: torch.device) -> list[tuple[str, Predictor]]:
    """The predictor as served (first: "bare model loop") and, labelled as printed, the variants
    without one of its steps each."""
    full = Predictor.load(checkpoint, device)
    model, meta = load_checkpoint(checkpoint, device)
    plain = Predictor(
        model,
        meta,
        device,
        meta.assembly,
        checkpoint,
        meta.zoom,
        full.reader,
        full.refiner,
        full.rescorer,
        gate=full.gate,  # the same search of large photos as `full`
    )  # not prepared (and so float32)

    def off(part: str) -> str:
        return f"bare, {part} off" + ("" if getattr(full, part) else " (it has none)")

    int8_parts = f" ({len(full.int8_parts)} parts)" if full.int8_parts else " (not in use)"
    return [
        ("bare model loop", full),
        ("bare, zoom off", Predictor.load(checkpoint, device, zoom_below_px=0)),
        (off("reader"), Predictor.load(checkpoint, device, use_reader=False)),
        (off("refiner"), Predictor.load(checkpoint, device, use_refiner=False)),
        (off("rescorer"), Predictor.load(checkpoint, device, use_rescorer=False)),
        ("bare, int8 off" + int8_parts, Predictor.load(checkpoint, device, use_int8=False)),
        ("bare, not prepared", plain),
    ]


def format_row(label: str, r: dict[str, float], bare: dict[str, float]) -> str:
    return (
        f"{label:34} {r['p50']:8.1f} {r['p99']:8.1f} {r['images_per_s']:9.1f} "
        f"{r['images_per_s'] / bare['images_per_s']:8.2f}"
    )


def print_http_rows(
    args: argparse.Namespace, checkpoint: Path, images: list[bytes], bare: dict[str, float]
) -> None:
    """A row for each service BATCH_SIZE x concurrency x way of uploading x route, each batch size in
    a server of its own."""
    labels = load_labels(len(images))
    url = f"http://127.0.0.1:{args.port}"
    for batch_size in args.batch_size:
        server = start_server(checkpoint, args.port, batch_size, args.device)
        try:
            for concurrency, upload, route in itertools.product(args.concurrency, args.upload, args.route):
                r = asyncio.run(http_load(url, images, args.requests, concurrency, upload, route, labels))
                label = (
                    f"HTTP c={concurrency} batch={batch_size}"
                    + ("" if upload == "field" else f" {upload}")
                    + ("" if route == "detect" else f" {route}")
                )
                print(
                    format_row(label, r, bare)
                    + f"  (in the server: p50 {r['server_p50']:.1f} ms)"
                    + (f"  ({int(r['failures'])} failed)" if r["failures"] else "")
                )
        finally:
            server.terminate()
            server.wait(60)


def main() -> None:
    args = parse_args()
    images, what = load_images(50)
    checkpoint, described = pick_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    variants = bare_variants(checkpoint, device)
    results = bare_loops([predictor for _, predictor in variants], images, args.requests)
    bare = results[0]
    print(
        f"checkpoint: {described}\nimages: {what}; device {device}; torch threads {torch.get_num_threads()}"
    )
    print(f"host: {cpu_info().describe()}")
    print(f"{'path':34} {'p50 ms':>8} {'p99 ms':>8} {'images/s':>9} {'vs bare':>8}")
    for (label, _), r in zip(variants, results, strict=True):
        print(format_row(label, r, bare))
    if device.type == "cuda":
        print(f"peak GPU memory (bare loop): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print_http_rows(args, checkpoint, images, bare)


if __name__ == "__main__":
    main()
