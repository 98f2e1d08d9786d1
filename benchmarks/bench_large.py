"""What a phone-size photo costs the service, read whole and read reduced.

    python benchmarks/bench_large.py [--checkpoint DIR] [--images 100] [--factor 5] [--long-side 4032] \
        [--format JPEG] [--reduce-to 0 1536]

A phone photographs a house number at 4032 x 3024. This pastes each of the first `--images` validation
photos into a digit-free scene `--factor` times its size (`training.scenes`, as benchmarks/bench_scenes.py
does), scales the scene up so that its longer side is `--long-side` pixels, and encodes it as the phone
would (`--format`: JPEG, HEIF (an iPhone's HEIC) or AVIF at quality 90, or PNG; encoding a HEIF this size
takes seconds). Each upload is then read as the service reads it:
`service.imaging.decode_image` with each `--reduce-to` (the setting `DIGITSERVE_REDUCE_TO_PX`: a photo
at least twice that on its longer side is read reduced by a whole factor; 0 = whole), then
`Predictor.detect` and the number assembly on the model thread. It prints, per setting, how many numbers
are read right (as `training.evaluate` counts them), the decoding time (p50) and the whole time per photo
(p50, mean, max); then, against the first setting, how many of its boxes (in upload pixels) each other
finds too (IoU >= 0.5, same digit) and how many numbers only one of the two reads right.
Needs ../shared/data/svhn-hw2.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.boxes import box_iou  # noqa: E402
from models.host import cpu_info  # noqa: E402
from models.reread import Findings  # noqa: E402
from service.config import SHIPPED_CHECKPOINT  # noqa: E402
from service.imaging import decode_image  # noqa: E402
from service.predictor import Predictor  # noqa: E402
from training.data import load_coco_split  # noqa: E402
from training.scenes import place_in_scene  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "svhn-hw2"
MAX_PIXELS = 25_000_000


def phone_upload(photo: Image.Image, factor: int, long_side: int, fmt: str, rng: random.Random) -> bytes:
    """`photo` in a scene `factor` times its size, scaled up to `long_side`, encoded as `fmt`."""
    scene = place_in_scene(photo, factor, rng)[0]
    k = long_side / max(scene.size)
    big = scene.resize((round(scene.width * k), round(scene.height * k)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format=fmt, **({} if fmt == "PNG" else {"quality": 90}))
    return buffer.getvalue()


def shared_boxes(a: Findings, b: Findings) -> tuple[int, int]:
    """(boxes of `a` that `b` has too, at IoU >= 0.5 with the same digit; boxes of `a`)."""
    same = sum(
        any(d.digit == e.digit and box_iou(d.box_xyxy, e.box_xyxy) >= 0.5 for e in b.detections)
        for d in a.detections
    )
    return same, len(a.detections)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--factor", type=int, default=5)
    p.add_argument("--long-side", type=int, default=4032)
    p.add_argument("--format", choices=["JPEG", "PNG", "HEIF", "AVIF"], default="JPEG")
    p.add_argument("--reduce-to", type=int, nargs="+", default=[0, 1536])
    args = p.parse_args(argv)
    if not (DATA / "valid.json").is_file():
        sys.exit(f"needs the real validation split in {DATA}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    records = load_coco_split(DATA / "valid", DATA / "valid.json")[0][: args.images]
    predictor = Predictor.load(args.checkpoint, torch.device("cpu"))
    predictor.warm_up()
    print(f"{cpu_info().describe()}; {torch.get_num_threads()} threads; {args.checkpoint}")
    rng = random.Random(args.factor)
    uploads = [
        phone_upload(Image.open(r.path).convert("RGB"), args.factor, args.long_side, args.format, rng)
        for r in tqdm(records, desc=f"encoding as {args.format}", unit="photo", file=sys.stderr, leave=False)
    ]
    print(
        f"{len(records)} validation photos in scenes {args.factor} x their size, scaled to a longer side of "
        f"{args.long_side} px, {args.format} (median {statistics.median(map(len, uploads)) / 1e6:.2f} MB)"
    )
    print("reduce_to  last read at   read right  decode p50  p50 ms  mean ms   max ms")
    found: dict[int, list[Findings]] = {}
    read_right: dict[int, list[bool]] = {}
    for reduce_to in args.reduce_to:
        decode_ms, total_ms, found[reduce_to], read_right[reduce_to] = [], [], [], []
        for record, data in zip(records, uploads, strict=True):
            start = time.perf_counter()
            image = decode_image(data, MAX_PIXELS, reduce_to_px=reduce_to)
            decoded = time.perf_counter()
            findings = predictor.detect([image.pixels])[0].scaled(*image.scale)
            total_ms.append((time.perf_counter() - start) * 1000)
            decode_ms.append((decoded - start) * 1000)
            read_right[reduce_to].append(predictor.assemble(findings.sites).value == record.number)
            found[reduce_to].append(findings)
        right = sum(read_right[reduce_to])
        size = f"{image.pixels.shape[1]} x {image.pixels.shape[0]}"  # the last photo's
        p50, mean = statistics.median(total_ms), statistics.mean(total_ms)
        times = f"{p50:>6.1f}  {mean:>7.1f}  {max(total_ms):>7.1f}"
        print(
            f"{reduce_to:>9}  {size:<13} {right:>4} / {len(records):<4}"
            f"  {statistics.median(decode_ms):>10.1f}  {times}",
            flush=True,
        )
    first, *others = args.reduce_to
    for other in others:
        counts = [shared_boxes(a, b) for a, b in zip(found[first], found[other], strict=True)]
        same, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
        print(f"boxes read at reduce_to {first} that reduce_to {other} finds too: {same} of {total}")
        pairs = list(zip(read_right[first], read_right[other], strict=True))
        print(
            f"numbers read right at reduce_to {first} only: {sum(a and not b for a, b in pairs)}; "
            f"at {other} only: {sum(b and not a for a, b in pairs)}"
        )


if __name__ == "__main__":
    main()
