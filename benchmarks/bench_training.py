"""Training throughput (images/s), peak memory and inference latency (ms/image) per detector config.

    python benchmarks/bench_training.py [--configs seed fast configs/fast96.yaml] [--train-steps 6]
        [--infer-images 40]
    python benchmarks/bench_training.py --checkpoint models/default [--infer-images 200]
    python benchmarks/bench_training.py --configs configs/fast96.yaml --cpu-bf16   # experiment 117

`--configs` takes training presets (seed, fast) and config files; their detector is measured.
`--checkpoint` times a checkpoint's detector instead, as it is served (its own settings, test-time
proposals included, and its own int8 ranges when it has them), without training it.

Uses the real validation images in ../shared/data/svhn-hw2 when present, else synthetic ones. Each
config runs in its own process so its peak resident memory is its own. Inference is timed as the
service runs it (after `models.optimize.prepare_for_inference`), without that step, and, on the CPU,
prepared and in int8 (models/int8.py; ranges measured on the last 16 images, which are not timed).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.checkpoint import load_checkpoint  # noqa: E402
from models.detector import build_detector  # noqa: E402
from models.host import cpu_info  # noqa: E402
from models.int8 import calibrate_detector, int8_supported, quantize_detector  # noqa: E402
from models.optimize import load_prepared_detector, prepare_for_inference  # noqa: E402
from training import synth  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import DigitDataset, ImageRecord, collate, load_coco_split  # noqa: E402
from training.engine import train_one_epoch  # noqa: E402
from training.transforms import TrainTransforms  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "svhn-hw2"


def data_root() -> tuple[Path, str]:
    if (REAL / "valid.json").is_file():
        return REAL, "real SVHN validation images"
    out = Path(tempfile.mkdtemp()) / "synth"
    synth.main(["--out", str(out), "--count", "200", "--valid-fraction", "0.5", "--workers", "2"])
    return out, "synthetic images"


def measure(
    config_name: str, root: Path, train_steps: int, infer_images: int, batch: int, cpu_bf16: bool = False
) -> dict[str, float]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    records, _ = load_coco_split(root / "valid", root / "valid.json")
    torch.manual_seed(0)
    model = build_detector(load_config(config_name).detector).to(device)
    loader = DataLoader(
        DigitDataset(records, TrainTransforms()),
        batch_size=batch,
        shuffle=True,
        collate_fn=collate,
        num_workers=0,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    train = functools.partial(
        train_one_epoch, model, optimizer, loader, device, show_progress=False, cpu_bf16=cpu_bf16
    )
    train(epoch=0, max_steps=1)  # warm-up
    stats = train(epoch=1, max_steps=train_steps)
    model.eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6  # before BatchNorm is folded away
    prepared = prepare_for_inference(copy.deepcopy(model), device)
    timed = [prepared, model]
    if device.type == "cpu" and int8_supported():
        calibration = [image for image, _ in DigitDataset(records[-16:])]
        ranges = calibrate_detector(prepared, calibration)
        timed.append(quantize_detector(copy.deepcopy(prepared), ranges))
    latencies, plain, *int8 = infer_latencies_ms(timed, records[:-16], infer_images, device)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "train_images_per_s": stats["images_per_s"],
        "peak_memory_mib": peak,
        "infer_p50_ms": statistics.median(latencies),
        "infer_p90_ms": statistics.quantiles(latencies, n=10)[-1] if len(latencies) > 2 else latencies[-1],
        "infer_plain_p50_ms": statistics.median(plain),
        "infer_int8_p50_ms": statistics.median(int8[0]) if int8 else float("nan"),
        "params_m": params_m,
        "device": str(device),
    }


def infer_latencies_ms(
    models: list[torch.nn.Module], records: list[ImageRecord], count: int, device: torch.device
) -> list[list[float]]:
    """One-image forward latencies (ms) of each model over the first `count` records, the models
    taking turns on every image (so that a machine that speeds up or slows down affects all alike);
    the 3 warm-up images are dropped."""
    latencies: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for image, _ in (DigitDataset(records)[i] for i in range(min(count, len(records)))):
            image = image.to(device)
            for model, times in zip(models, latencies, strict=True):
                start = time.perf_counter()
                model([image])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - start) * 1000)
    return [times[3:] or times for times in latencies]


def measure_checkpoint(checkpoint: Path, root: Path, infer_images: int) -> dict[str, float]:
    """Forward latencies of a checkpoint's detector as served (`load_prepared_detector`, int8 on the
    CPU when it has the ranges), unprepared, and prepared in float32, taking turns on each image."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    records, _ = load_coco_split(root / "valid", root / "valid.json")
    served, _, int8 = load_prepared_detector(checkpoint, device)
    prepared, _, _ = load_prepared_detector(checkpoint, device, use_int8=False)
    plain, _ = load_checkpoint(checkpoint, device)
    times = infer_latencies_ms([served, plain.eval(), prepared], records, infer_images, device)
    return {
        "served_p50_ms": statistics.median(times[0]),
        "served_p90_ms": statistics.quantiles(times[0], n=10)[-1] if len(times[0]) > 2 else times[0][-1],
        "plain_p50_ms": statistics.median(times[1]),
        "float_p50_ms": statistics.median(times[2]),
        "int8": float(int8 is not None),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["fast", "seed"])
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--infer-images", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--checkpoint", type=Path, help="time this checkpoint's detector as served instead")
    p.add_argument(
        "--cpu-bf16", action="store_true", help="train in bfloat16 autocast on the CPU (`cpu_bf16`)"
    )
    p.add_argument("--one", help=argparse.SUPPRESS)  # measure one config in this process: the JSON line
    p.add_argument("--root", help=argparse.SUPPRESS)
    return p.parse_args()


def report_checkpoint(args: argparse.Namespace) -> None:
    """The checkpoint's detector as served, in float32 prepared and unprepared: forward latencies."""
    root, what = data_root()
    r = measure_checkpoint(args.checkpoint, root, args.infer_images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {what}, {args.checkpoint}")
    print(f"host: {cpu_info().describe()}")
    served = "int8" if r["int8"] else "float"
    print(
        f"as served ({served}): forward p50 {r['served_p50_ms']:.1f} ms, "
        f"p90 {r['served_p90_ms']:.1f} ms; prepared float32 p50 {r['float_p50_ms']:.1f} ms; "
        f"unprepared p50 {r['plain_p50_ms']:.1f} ms"
    )


def measure_apart(name: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` of the config `name` in a process of its own (each config's peak memory its own)."""
    cmd = [
        sys.executable,
        __file__,
        *("--one", name, "--root", str(root), "--train-steps", str(args.train_steps)),
        *("--infer-images", str(args.infer_images), "--batch-size", str(args.batch_size)),
        *(["--cpu-bf16"] if args.cpu_bf16 else []),
    ]
    result: dict[str, Any] = json.loads(
        subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    )
    return result


def report_configs(args: argparse.Namespace) -> None:
    """A row for each config: size, training images/s and peak memory, and forward latencies."""
    root, what = data_root()
    training = "bfloat16 autocast on the CPU" if args.cpu_bf16 else "float32 on the CPU"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, {what}, "
        f"training {training}"
    )
    print(f"host: {cpu_info().describe()}")
    print(
        f"{'config':14} {'params':>8} {'train img/s':>12} {'peak MiB':>9} {'infer p50 ms':>13} {'p90 ms':>8}"
        f" {'unprepared p50':>15} {'int8 p50':>9}"
    )
    for name in args.configs:
        r = measure_apart(name, root, args)
        print(
            f"{Path(name).stem:14} {r['params_m']:7.1f}M {r['train_images_per_s']:12.1f} "
            f"{r['peak_memory_mib']:9.0f} "
            f"{r['infer_p50_ms']:13.1f} {r['infer_p90_ms']:8.1f} {r['infer_plain_p50_ms']:15.1f}"
            f" {r['infer_int8_p50_ms']:9.1f}  ({r['device']})"
        )


def main() -> None:
    args = parse_args()
    if args.checkpoint:
        report_checkpoint(args)
    elif args.one:
        result = measure(
            args.one, Path(args.root), args.train_steps, args.infer_images, args.batch_size, args.cpu_bf16
        )
        print(json.dumps(result))
    else:
        report_configs(args)


if __name__ == "__main__":
    main()
