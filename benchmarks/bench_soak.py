"""The service's memory over many requests: does its resident memory level off, or keep growing?

    python benchmarks/bench_soak.py [--checkpoint DIR] [--requests 3000] [--every 250] [--concurrency 2]

Starts the real service (uvicorn, loopback only; `bench_service.start_server`) and sends it a mix of
requests in a seeded order, as a day of traffic would: validation photos at their own sizes (every
photo a different shape for the detector), the same photos enlarged to a phone's 12 megapixels as
JPEG (read reduced, and searched in tiles where doubtful) and to 3 megapixels as HEIC, requests of
three images, damaged and non-image uploads (the error paths), each to /v1/recognize or /v1/detect,
as a multipart field or as the request body. Every `--every` requests it reads the server process's
resident memory (VmRSS, /proc) and prints it with the requests answered by status. At the end it fits
a line to the second half of the samples: a leak is a steady growth per 1000 requests there, while
allocator and kernel caches level off after the first shapes. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pillow_heif
from PIL import Image
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_service import load_images, pick_checkpoint, start_server  # noqa: E402

from models.host import cpu_info  # noqa: E402

pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Payload:
    """One upload: `kind` names it in the printed mix."""

    kind: str
    data: bytes
    mime: str


def enlarged(png: bytes, longer_px: int, fmt: str, quality: int = 90) -> bytes:
    """The photo scaled up so that its longer side is `longer_px`, saved as `fmt` (JPEG or HEIF)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = longer_px / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=quality)
    return buffer.getvalue()


def payload_pool(photos: list[bytes]) -> dict[str, list[Payload]]:
    """The uploads the mix draws from, by kind."""
    return {
        "photo": [Payload("photo", p, "image/png") for p in photos],
        "phone JPEG": [Payload("phone JPEG", enlarged(p, 4032, "JPEG"), "image/jpeg") for p in photos[:4]],
        "HEIC": [Payload("HEIC", enlarged(p, 2048, "HEIF"), "image/heic") for p in photos[4:7]],
        "damaged": [Payload("damaged", p[: len(p) // 2], "image/png") for p in photos[7:10]],
        "not an image": [Payload("not an image", b"%PDF-1.4 not a photo", "application/pdf")],
    }


# How often each kind of request comes, per 100.
MIX = {"photo": 76, "three photos": 10, "phone JPEG": 3, "HEIC": 4, "damaged": 5, "not an image": 2}


def plan(pool: dict[str, list[Payload]], requests: int, seed: int) -> list[tuple[str, list[Payload], bool]]:
    """`requests` (route, uploads, as the body) in a seeded order; the body only for one upload."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX.items(), strict=True)
    out = []
    for _ in range(requests):
        kind = rng.choices(kinds, weights)[0]
        uploads = rng.sample(pool["photo"], 3) if kind == "three photos" else [rng.choice(pool[kind])]
        route = rng.choice(["/v1/recognize", "/v1/detect"])
        out.append((route, uploads, len(uploads) == 1 and rng.random() < 0.5))
    return out


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: its resident memory now, and at its peak."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def send(client: httpx.AsyncClient, url: str, route: str, uploads: list[Payload], as_body: bool) -> int:
    if as_body:
        headers = {"content-type": uploads[0].mime}
        response = await client.post(url + route, content=uploads[0].data, headers=headers)
    else:
        files = [("image", (f"{i}", u.data, u.mime)) for i, u in enumerate(uploads)]
        response = await client.post(url + route, files=files)
    return response.status_code


async def soak(
    url: str, pid: int, work: list[tuple[str, list[Payload], bool]], every: int, concurrency: int
) -> list[tuple[int, float, float, float, collections.Counter[int]]]:
    """Send `work` with `concurrency` in flight; every `every` answers, a sample (answered, seconds,
    RSS MiB, peak MiB, statuses so far)."""
    samples = [(0, 0.0, *rss_mib(pid), collections.Counter[int]())]
    statuses: collections.Counter[int] = collections.Counter()
    queue = iter(work)
    start = time.perf_counter()
    bar = tqdm(total=len(work), unit="req", file=sys.stderr)
    async with httpx.AsyncClient(timeout=120) as client:

        async def worker() -> None:
            for route, uploads, as_body in queue:
                statuses[await send(client, url, route, uploads, as_body)] += 1
                bar.update()
                answered = sum(statuses.values())
                if answered % every == 0:
                    seconds = time.perf_counter() - start
                    samples.append((answered, seconds, *rss_mib(pid), statuses.copy()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    bar.close()
    return samples


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares growth in MiB per 1000 requests of (requests, MiB) points."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--every", type=int, default=250, help="read the server's memory every N answers")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--port", type=int, default=8766)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    photos, what = load_images(50)
    checkpoint, described = pick_checkpoint(args.checkpoint)
    pool = payload_pool(photos)
    work = plan(pool, args.requests, args.seed)
    print(f"checkpoint: {described}\nimages: {what}; host: {cpu_info().describe()}")
    mix = collections.Counter("three photos" if len(u) == 3 else u[0].kind for _, u, _ in work)
    print("mix: " + ", ".join(f"{kind} {n}" for kind, n in mix.most_common()))
    print(f"concurrency {args.concurrency}; {sum(b for *_, b in work)} of {len(work)} sent as the body")
    server = start_server(checkpoint, args.port, 8, args.device)
    try:
        print(f"after startup (model loaded and warmed up): RSS {rss_mib(server.pid)[0]:.0f} MiB")
        samples = asyncio.run(
            soak(f"http://127.0.0.1:{args.port}", server.pid, work, args.every, args.concurrency)
        )
    finally:
        server.terminate()
        server.wait(60)
    print(f"{'answered':>8} {'seconds':>8} {'RSS MiB':>8} {'peak MiB':>8}  statuses")
    for answered, seconds, rss, peak, statuses in samples:
        codes = " ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        print(f"{answered:8d} {seconds:8.1f} {rss:8.0f} {peak:8.0f}  {codes}")
    half = [(a, rss) for a, _, rss, _, _ in samples if a >= samples[-1][0] / 2]
    print(
        f"RSS growth over the second half ({half[0][0]}-{half[-1][0]} answers): "
        f"{slope_per_1000(half):+.1f} MiB per 1000 requests; "
        f"first to last sample {samples[-1][2] - samples[0][2]:+.0f} MiB"
    )


if __name__ == "__main__":
    main()
