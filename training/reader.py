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
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from models.boxes import BoxXYXY
from models.hw2 import read_pred_json
from models.reader import NOT_A_DIGIT, DigitReader, ReaderMeta, save_reader
from models.reread import CropSpec, RereadParams
from training.crops import add_crop_training_args, crop_sets, fit_on_crops, load_crop_config
from training.data import ImageRecord
from training.site_labels import SiteLabelParams, labelled_sites
from training.train import seed_everything

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_crop_training_args(p, epochs=20, lr=0.05)
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

    train_set, valid_set, fingerprint = crop_sets(load_crop_config(args), args.size, extra)
    seed_everything(args.seed)  # the initial weights too: the same flags give the same reader
    reader = DigitReader(args.width, not_digit=args.site_detections is not None)
    history = fit_on_crops(reader, train_set, valid_set, args, lambda _history: None)
    crop = CropSpec(size=args.size, context=train_set.params.context)
    metrics = {
        "last_epoch": history[-1] if history else {},
        "data_fingerprint": fingerprint,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    meta = save_reader(args.out, reader.cpu(), crop, reread, metrics=metrics)
    log.info("reader written to %s (validation crop accuracy %.4f)", args.out, history[-1]["val_accuracy"])
    return meta


if __name__ == "__main__":
    main()
