"""Train the reader: the small digit classifier that gives a second opinion on each digit the
detector finds (`models.reread`, `models.reader`).

    python -m training.reader --config configs/fast96-warm8.yaml --out runs/reader
    python -m training.export --checkpoint runs/<run>/last --out models/default --reader runs/reader

It learns from crops cut around every labelled box of the config's training data (jittered in
position, scale and colour) and is scored on the validation boxes after each epoch. With
`--site-detections` (a detector's `pred.json` on the training split, from `training.evaluate --split
train --no-reader`) it also learns from the sites that detector finds there, as it will be shown
them: those on a labelled digit as that digit, those on none as an 11th class, "no digit"
(`training.site_labels`). The last epoch's weights are written to `--out` as a reader folder
(`reader.safetensors`, `reader.json`), with the mixing settings given here; no epoch is picked by its
validation score.

With `--teacher` (another reader folder, a wider one say, trained the same way) it learns from that
reader's softened opinion of each training crop as well as from the labels (`training.crops.
distillation_loss`):

    python -m training.reader --config C --out runs/teacher --width 96 --epochs 60 --dtype float16
    python -m training.reader --config C --out runs/student --epochs 60 --teacher runs/teacher
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from models.atomic import staged_folder
from models.boxes import BoxXYXY
from models.hw2 import read_pred_json
from models.inference import resolve_device
from models.reader import NOT_A_DIGIT, DigitReader, ReaderMeta, load_reader, save_reader
from models.reread import CropSpec, RereadParams
from training.crops import (
    Distillation,
    add_crop_training_args,
    add_degradation_args,
    crop_params,
    crop_sets,
    fit_on_crops,
    load_crop_config,
)
from training.data import ImageRecord
from training.exits import run_tool
from training.site_labels import SiteLabelParams, labelled_sites
from training.train import seed_everything

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_crop_training_args(p, epochs=20, lr=0.05)
    add_degradation_args(p)
    p.add_argument("--width", type=int, default=32, help="channels of the first stage (x2 per stage)")
    p.add_argument(
        "--site-detections",
        type=Path,
        help="a detector's pred.json on the training split (training.evaluate --split train --no-reader): "
        "its sites are added as training crops, and those on no labelled digit teach an 11th class, no digit",
    )
    defaults = RereadParams()
    p.add_argument("--detector-weight", type=float, default=defaults.detector_weight)
    p.add_argument("--site-iou", type=float, default=defaults.site_iou)
    p.add_argument("--min-presence", type=float, default=defaults.min_presence)
    p.add_argument(
        "--presence-weight",
        type=float,
        default=defaults.presence_weight,
        help="with --site-detections: a site's score is presence^w x P(a digit)^(1 - w)",
    )
    p.add_argument("--teacher", type=Path, help="a reader folder whose soft labels it learns from too")
    p.add_argument(
        "--kd-weight", type=float, default=Distillation.weight, help="with --teacher: soft labels' share"
    )
    p.add_argument(
        "--kd-temperature", type=float, default=Distillation.temperature, help="with --teacher: softening"
    )
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="weights' storage")
    p.set_defaults(warmup_steps=200, size=32)  # the shipped reader: 32 px crops (model card, experiment 15)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> ReaderMeta:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reread = RereadParams(args.detector_weight, args.site_iou, args.min_presence, args.presence_weight)
    extra = None
    if args.site_detections:
        detections = read_pred_json(args.site_detections)

        def extra(records: Sequence[ImageRecord]) -> list[tuple[Path, BoxXYXY, int]]:
            sites = labelled_sites(records, detections, SiteLabelParams())
            log.info("%d sites: %d no digit", len(sites), sum(s.label == NOT_A_DIGIT for _, s in sites))
            return [(path, s.box_xyxy, s.label) for path, s in sites]

    config = load_crop_config(args)
    train_set, valid_set, fingerprint = crop_sets(
        config, crop_params(args), extra, args.preload_images, progress=not args.no_progress
    )
    crop = CropSpec(size=args.size, context=train_set.params.context)
    not_digit = args.site_detections is not None
    teacher = load_teacher(args, crop, not_digit)
    distill = teacher[0] if teacher else None
    seed_everything(args.seed)  # the initial weights too: the same flags give the same reader
    reader = DigitReader(args.width, not_digit=not_digit)
    history = fit_on_crops(reader, train_set, valid_set, args, lambda _history: None, distill)
    metrics = {
        "last_epoch": history[-1] if history else {},
        "data_fingerprint": fingerprint,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if teacher is not None:
        metrics["teacher_sha256"] = teacher[1]
    with staged_folder(args.out) as staging:  # the weights and their json, both or neither
        meta = save_reader(staging, reader.cpu(), crop, reread, metrics=metrics, dtype=args.dtype)
    log.info("reader written to %s (validation crop accuracy %.4f)", args.out, history[-1]["val_accuracy"])
    return meta


def load_teacher(
    args: argparse.Namespace, crop: CropSpec, not_digit: bool
) -> tuple[Distillation, str] | None:
    """`args.teacher`'s reader, to learn from, and its weights' sha256 (None without one). Raises
    ValueError when it reads other crops (size, context) or other classes than the reader being trained."""
    if args.teacher is None:
        return None
    teacher, meta = load_reader(args.teacher, resolve_device(args.device))
    if meta.crop != crop or meta.not_digit != not_digit:
        raise ValueError(
            f"teacher {args.teacher} reads {meta.crop} crops{' with no digit' if meta.not_digit else ''}, "
            f"the reader being trained {crop}{' with no digit' if not_digit else ''}: they must match"
        )
    log.info("distilling from %s (width %d), weight %s, temperature %s", args.teacher, meta.width,
             args.kd_weight, args.kd_temperature)  # fmt: skip
    return Distillation(teacher, args.kd_weight, args.kd_temperature), meta.sha256


if __name__ == "__main__":
    run_tool(main)
