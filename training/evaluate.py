"""Evaluate a checkpoint on a split in the HW2 layout.

    python -m training.evaluate --checkpoint runs/x/best --data ../shared/data/svhn-hw2 \
        --split valid --out out/eval

Writes Task 1 `pred.json` (COCO detections) and Task 2 `pred.csv` (`image_id,pred_label`); with ground
truth also `metrics.json` (map, map50, map75, accuracy, and `digits`: what became of each ground-truth
digit, and `confidence`: how often numbers of each confidence are read right), the threshold/IoU
sweep, `errors.csv`, a confusion matrix and `confidence.png`; where the checkpoint has a number
verifier fitted on the pipeline evaluated (models/verifier.py), `p_correct` in `metrics.json` and
`p_correct.png` say the same of its estimates (flagged `in_sample` on the split it was fitted on);
`bootstrap` in `metrics.json`: how far mAP and accuracy could move on other photos like these
(intervals over resamples of the images, `--bootstrap`, training/bootstrap.py); `alternatives`: how
often the labelled number is the one read or among its first k alternatives (models/alternatives.py),
drawn in `alternatives.png`; `confirm`: how often /v1/confirm passes the labelled number, and
numbers of other kinds (neighbours, another photo's, one edit away), at each `min_score`
(models/confirm.py), drawn in `confirm.png`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.assembly import AssemblyParams, assemble_number
from models.checkpoint import resolve_checkpoint_dir, sha256_file
from models.confirm import MIN_SCORE as CONFIRM_MIN_SCORE
from models.hw2 import Detections, detections_to_coco, write_pred_csv, write_pred_json
from models.verifier import (
    FEATURE_NAMES,
    NumberVerifier,
    VerifierMeta,
    current_verifier,
    number_features,
)
from training.bootstrap import SAMPLES, add_bootstrap_argument, bootstrap_metrics, match_table, read_right
from training.data import ImageRecord
from training.exits import run_tool
from training.metrics import (
    alternatives_coverage,
    coco_map,
    confidence_report,
    confirmation_rates,
    confusion_matrix,
    digit_outcomes,
    ground_truth_coco,
    number_accuracy,
    number_confidences,
    predicted_numbers,
)
from training.pipeline import PipelineRun, run_pipeline
from training.plots import plot_alternatives, plot_confidence, plot_confirm, plot_confusion_matrix
from training.runner import add_runner_args, add_zoom_arguments

log = logging.getLogger(__name__)
SWEEP_SCORES = (0.5, 0.6, 0.7)
SWEEP_IOUS = (0.0, 0.3, 0.5)


def score_detections(
    records: Sequence[ImageRecord],
    detections: Detections,
    params: AssemblyParams,
    sites: Detections | None = None,
) -> dict[str, float]:
    """mAP on all detections, whole-number accuracy with `params` on `sites` (the digit sites the
    reader re-read, `models.reread`; the detections themselves when there is no reader)."""
    metrics = coco_map(ground_truth_coco(records), detections_to_coco(detections))
    numbers = predicted_numbers(detections if sites is None else sites, [r.image_id for r in records], params)
    metrics["accuracy"] = number_accuracy(records, numbers)
    return metrics


def sweep_assembly(
    records: Sequence[ImageRecord], detections: Detections, base: AssemblyParams
) -> list[dict[str, float]]:
    """Whole-number accuracy for each score threshold x IoU de-dup (0 = off) of the seed's experiments."""
    rows = []
    ids = [r.image_id for r in records]
    for score in SWEEP_SCORES:
        for iou in SWEEP_IOUS:
            params = replace(base, score_threshold=score, iou_threshold=iou)
            rows.append(
                {
                    "score_threshold": score,
                    "iou_threshold": iou,
                    "accuracy": number_accuracy(records, predicted_numbers(detections, ids, params)),
                }
            )
    return rows


def format_sweep(rows: Sequence[dict[str, float]]) -> str:
    """The sweep as a text table: one row per score threshold, one column per IoU threshold."""
    header = "score \\ IoU " + "".join(f"{'off' if i == 0 else i:>8}" for i in SWEEP_IOUS)
    lines = [header]
    for score in SWEEP_SCORES:
        cells = [r["accuracy"] for r in rows if r["score_threshold"] == score]
        lines.append(f"{score:>11} " + "".join(f"{c:8.4f}" for c in cells))
    return "\n".join(lines)


def format_coverage(coverage: Sequence[dict[str, float]]) -> str:
    """`confidence_report`'s coverage rows on one line: "50 % -> 0.9012 (>= 0.97), ..."."""
    return ", ".join(
        f"{row['coverage']:.0%} -> {row['accuracy']:.4f} (>= {row['min_confidence']:.2f})" for row in coverage
    )


def format_confirmation(report: dict[str, Any], default: float | None) -> str:
    """`confirmation_rates`' report as text tables, one row per min_score (the `default` starred):
    the share of each kind of number asked about that passes (the label's first), and which of its
    street's numbers each photo is said to show."""
    kinds = list(report["pairs"])
    lines = [
        "/v1/confirm: share of the numbers asked about that pass, by min_score",
        f"{'min_score':>10} " + "".join(f"{k:>15}" for k in kinds),
    ]
    names = [
        "read only"
        if row["min_score"] is None
        else f"{row['min_score']:g}" + (" *" if row["min_score"] == default else "")
        for row in report["rows"]
    ]
    for name, row in zip(names, report["rows"], strict=True):
        lines.append(f"{name:>10} " + "".join(f"{row[k]:15.4f}" for k in kinds))
    lines.append("asked which of its street's numbers (label, +-2, +-4) a photo shows: photos answered with")
    lines.append(f"{'min_score':>10} {'the label':>10} {'another':>10} {'none':>10}")
    for name, row in zip(names, report["street"], strict=True):
        lines.append(f"{name:>10} {row['right']:>10} {row['wrong']:>10} {row['none']:>10}")
    return "\n".join(lines)


def write_predictions(
    out: Path,
    records: Sequence[ImageRecord],
    detections: Detections,
    params: AssemblyParams,
    sites: Detections | None = None,
) -> None:
    """pred.json (all detections, COCO) and pred.csv (numbers assembled from `sites`, by default the
    detections; -1 when none)."""
    out.mkdir(parents=True, exist_ok=True)
    write_pred_json(out / "pred.json", detections)
    numbers = predicted_numbers(detections if sites is None else sites, [r.image_id for r in records], params)
    write_pred_csv(out / "pred.csv", numbers)


def write_report(
    out: Path,
    records: Sequence[ImageRecord],
    detections: Detections,
    params: AssemblyParams,
    extra: dict[str, Any] | None = None,
    sites: Detections | None = None,
    bootstrap: int = SAMPLES,
) -> dict[str, Any]:
    """metrics.json, sweep.json, errors.csv (every misread image), confusion_matrix.png and
    confidence.png for a labelled split; returns the metrics. mAP is scored on `detections`; numbers,
    digit outcomes, the confusion matrix and the numbers' confidence on `sites` (by default the
    detections). With `bootstrap` > 0, metrics["bootstrap"] holds the intervals of mAP and accuracy
    over that many resamples of the images (`training.bootstrap`)."""
    read = detections if sites is None else sites
    confidence = confidence_report(*number_confidences(records, read, params))
    metrics: dict[str, Any] = {
        **score_detections(records, detections, params, read),
        "images": len(records),
        "boxes": sum(len(r.boxes) for r in records),
        "digits": digit_outcomes(records, read, params.score_threshold),
        "confidence": confidence,
        "alternatives": alternatives_coverage(records, read, detections, params),
        "confirm": confirmation_rates(records, read, detections, params),
        **(extra or {}),
    }
    if bootstrap > 0:
        metrics["bootstrap"] = split_intervals(records, detections, read, params, bootstrap)
    sweep = sweep_assembly(records, read, params)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "sweep.json").write_text(json.dumps(sweep, indent=2) + "\n")
    write_errors(out / "errors.csv", records, predicted_numbers(read, [r.image_id for r in records], params))
    matrix = confusion_matrix(records, read, params)
    plot_confusion_matrix(
        matrix,
        out / "confusion_matrix.png",
        f"digits at score >= {params.score_threshold}, IoU de-dup {params.iou_threshold}",
    )
    plot_confidence(confidence, out / "confidence.png")
    plot_alternatives(metrics["alternatives"], len(records), out / "alternatives.png")
    plot_confirm(metrics["confirm"], out / "confirm.png", CONFIRM_MIN_SCORE)
    print(f"mAP {metrics['map']:.4f}  mAP50 {metrics['map50']:.4f}  accuracy {metrics['accuracy']:.4f}")
    digits = metrics["digits"]
    print(
        f"ground-truth digits ({metrics['boxes']}), before de-dup, at score >= {params.score_threshold}: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in digits.items())
    )
    if bootstrap > 0:
        print(format_intervals(metrics["bootstrap"], len(records)))
    print(
        "the labelled number read or among the first k alternatives: "
        + ", ".join(f"k={row['k']} {row['share']:.4f}" for row in metrics["alternatives"])
    )
    print(format_confirmation(metrics["confirm"], CONFIRM_MIN_SCORE))
    print("whole-number accuracy by score threshold and IoU de-dup:\n" + format_sweep(sweep))
    print(
        f"answering only the most confident numbers: AUC {confidence['auc']:.3f}, "
        + format_coverage(confidence["coverage"])
    )
    return metrics


def split_intervals(
    records: Sequence[ImageRecord],
    detections: Detections,
    read: Detections,
    params: AssemblyParams,
    samples: int,
) -> dict[str, Any]:
    """`training.bootstrap.bootstrap_metrics` of mAP on `detections` and accuracy on `read`."""
    table = match_table(ground_truth_coco(records), detections_to_coco(detections))
    numbers = predicted_numbers(read, [r.image_id for r in records], params)
    right = read_right(table, {r.image_id: r.number for r in records}, numbers)
    return bootstrap_metrics(table, right, samples)


def format_intervals(intervals: dict[str, Any], n_images: int) -> str:
    """One line: each metric's interval and standard error over the bootstrap resamples."""
    spans = ", ".join(
        f"{name} {span['low']:.4f}-{span['high']:.4f} (se {span['standard_error']:.4f})"
        for name, span in ((n, intervals[n]) for n in ("map", "map50", "accuracy"))
    )
    return (
        f"{intervals['confidence']:.0%} bootstrap intervals over {intervals['samples']} resamples of the "
        f"{n_images} images: {spans}"
    )


def write_errors(path: Path, records: Sequence[ImageRecord], numbers: dict[int, int]) -> int:
    """`image_id,file_name,truth,pred` for every image whose number was misread; returns the count."""
    wrong = [r for r in records if numbers.get(r.image_id, -1) != r.number]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "file_name", "truth", "pred"])
        for r in wrong:
            writer.writerow([r.image_id, r.path.name, r.number, numbers.get(r.image_id, -1)])
    return len(wrong)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = build_parser(__doc__)
    add_bootstrap_argument(p, "mAP and accuracy")
    return p.parse_args(argv)


def build_parser(description: str | None) -> argparse.ArgumentParser:
    """The evaluator's options: which checkpoint, split and output folder, and the pipeline's
    settings (`run_pipeline`); `training.verifier` adds its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (or its checkpoint.json)")
    p.add_argument("--data", required=True, type=Path, help="data set root in the HW2 layout")
    p.add_argument("--split", default="valid", help="split folder name: valid, test, train ...")
    p.add_argument("--images", help="image folder (overrides DATA/SPLIT)")
    p.add_argument("--annotations", help="COCO json (overrides DATA/SPLIT.json)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--score-threshold", type=float, help="default: the checkpoint's")
    p.add_argument("--iou-threshold", type=float, help="default: the checkpoint's (0 = off)")
    p.add_argument(
        "--left-to-right",
        action="store_true",
        help="read every number left to right, also digits stacked in a column (models/assembly.py; "
        "default: a column top to bottom)",
    )
    add_zoom_arguments(p, "the checkpoint's")
    p.add_argument(
        "--grain-threshold",
        type=float,
        help="blur a photo whose luma grain is at least this many grey levels before reading it, as the "
        "service does (models/grain.py); default: models.grain's, 0 = off",
    )
    p.add_argument(
        "--sharpen-gate",
        type=float,
        help="sharpen a photo (not smoothed for grain) whose blur measure is at least this before reading "
        "it, as the service does with DIGITSERVE_SHARPEN_GATE (models/focus.py; 0.6 in experiment 138); "
        "default: off (0)",
    )
    p.add_argument(
        "--levels-gate",
        type=float,
        help="stretch the levels of a photo whose luma spread is under this many grey levels before reading "
        "it, as the service does (models/levels.py); default: models.levels', 0 = off",
    )
    p.add_argument(
        "--balance-gate",
        type=float,
        help="balance the colour of a photo whose largest channel mean is over this many times its smallest "
        "before reading it, as the service does (models/balance.py); default: models.balance', 0 = off",
    )
    p.add_argument(
        "--widen-gate",
        type=float,
        help="read a photo again widened where its digits come out narrower than this share of their usual "
        "width, as from the side of the street, as the service does (models/widen.py, experiment 159); "
        "default: models.widen's, 0 = off",
    )
    p.add_argument(
        "--squat-gate",
        type=float,
        help="read a photo again narrowed where its digits come out wider than this many times their usual "
        "width, as from below, as the service does (models/widen.py, experiment 159); default: "
        "models.widen's, 0 = off",
    )
    p.add_argument(
        "--no-reader", action="store_true", help="read numbers from the detector alone, as without a reader"
    )
    p.add_argument(
        "--no-refiner", action="store_true", help="keep the detector's boxes, as without a box refiner"
    )
    p.add_argument(
        "--no-rescorer",
        action="store_true",
        help="rank Task 1 boxes by score x fit, as without a rescorer (it also needs the refiner and reader)",
    )
    p.add_argument(
        "--no-int8",
        action="store_true",
        help="run the detector, reader and box refiner in floating point on the CPU too, as without an int8 "
        "part (models/int8.py)",
    )
    add_runner_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = run_pipeline(args)
    write_predictions(args.out, run.records, run.detections, run.params, run.sites)
    verifier = current_verifier(resolve_checkpoint_dir(args.checkpoint), run.identity)
    info = {**run.info, "verifier": verifier[1].fitted_on if verifier else None}
    (args.out / "evaluation.json").write_text(json.dumps(info, indent=2) + "\n")
    if not run.labelled:
        print(f"wrote predictions for {len(run.records)} images to {args.out}")
        return {}
    extra = {"p_correct": p_correct_report(run, verifier, annotations_sha256(args))} if verifier else {}
    metrics = write_report(
        args.out, run.records, run.detections, run.params, extra, sites=run.sites, bootstrap=args.bootstrap
    )
    if verifier:
        plot_confidence(metrics["p_correct"], args.out / "p_correct.png", "p_correct")
        in_sample = (
            " (in-sample: the verifier was fitted on this split)" if metrics["p_correct"]["in_sample"] else ""
        )
        print(
            f"answering by the verifier's p_correct{in_sample}: AUC {metrics['p_correct']['auc']:.3f}, "
            + format_coverage(metrics["p_correct"]["coverage"])
        )
    return metrics


def annotations_sha256(args: argparse.Namespace) -> str | None:
    """sha256 of the split's annotation file (None when it has none)."""
    path = Path(args.annotations) if args.annotations else args.data / f"{args.split}.json"
    return sha256_file(path) if path.is_file() else None


def verifier_inputs(run: PipelineRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every record of a labelled run: float64[N, 5] verifier features (`models.verifier
    .number_features`; zeros where the number is empty), bool[N] whether a number was read, and
    bool[N] whether it is the labelled one."""
    rows, read, right = [], [], []
    for record in run.records:
        number = assemble_number(run.read.get(record.image_id, ()), run.params)
        features = number_features(
            number, run.read.get(record.image_id, ()), run.detections.get(record.image_id, ())
        )
        rows.append(np.zeros(len(FEATURE_NAMES)) if features is None else features)
        read.append(features is not None)
        right.append(number.value == record.number)
    return (
        np.array(rows).reshape(-1, len(FEATURE_NAMES)),
        np.array(read, dtype=bool),
        np.array(right, dtype=bool),
    )


def p_correct_report(
    run: PipelineRun, verifier: tuple[NumberVerifier, VerifierMeta], annotations: str | None
) -> dict[str, Any]:
    """`confidence_report` of the verifier's p_correct (0 where no number was read) on a labelled run,
    and whether the verifier was fitted on these very annotations (`in_sample`, by their sha256)."""
    features, read, right = verifier_inputs(run)
    p = np.where(read, verifier[0].p_correct(features), 0.0) if len(read) else np.zeros(0)
    in_sample = annotations is not None and verifier[1].fitted_on.get("annotations_sha256") == annotations
    return {**confidence_report(p, right), "in_sample": in_sample}


if __name__ == "__main__":
    run_tool(main)
