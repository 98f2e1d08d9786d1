"""Compare two evaluations of the same labelled split image by image, and say whether the gap is noise.

    python -m training.compare out/eval-old out/eval-new --data ../shared/data/svhn-hw2 --split valid

Each folder is a `training.evaluate` output holding `pred.csv` (`image_id,pred_label`, -1 for no digit).
With a few hundred images, two accuracies a couple of points apart can be chance; the images both models
see are paired, so the sharper test counts only the images exactly one of them reads right (McNemar:
under "no difference" each such image is a fair coin). Also sorts each model's misreads by kind. Where
both folders hold `pred.json`, it also gives B - A of mAP and accuracy with an interval from resampling
the images, the same draws for both (`--bootstrap`, training/bootstrap.py).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.hw2 import read_pred_csv
from training.bootstrap import add_bootstrap_argument, match_table, paired_bootstrap, read_right, weighted_map
from training.data import ImageRecord, split_records
from training.exits import run_tool
from training.metrics import ground_truth_coco

ERROR_KINDS = ("no digit", "missed digit", "extra digit", "same length")


@dataclass(frozen=True)
class PairedCounts:
    """How two readers fare on the same images: right/wrong for A crossed with right/wrong for B."""

    both_right: int
    only_a: int
    only_b: int
    both_wrong: int

    @property
    def total(self) -> int:
        return self.both_right + self.only_a + self.only_b + self.both_wrong


def paired_counts(truth: Mapping[int, int], a: Mapping[int, int], b: Mapping[int, int]) -> PairedCounts:
    """Cross right/wrong of predictions `a` and `b` over every image in `truth` (a missing image reads -1)."""
    cells: Counter[tuple[bool, bool]] = Counter(
        (a.get(i, -1) == number, b.get(i, -1) == number) for i, number in truth.items()
    )
    return PairedCounts(
        both_right=cells[True, True],
        only_a=cells[True, False],
        only_b=cells[False, True],
        both_wrong=cells[False, False],
    )


def mcnemar(only_a: int, only_b: int) -> tuple[float, float]:
    """(z, p): McNemar's statistic as a signed z-score, (only_a - only_b) / sqrt(only_a + only_b), and the
    exact two-sided binomial p-value of a split at least this uneven under a fair coin. (0.0, 1.0) when
    no image separates the two."""
    n = only_a + only_b
    if n == 0:
        return 0.0, 1.0
    z = (only_a - only_b) / math.sqrt(n)
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2.0**n
    return z, min(1.0, 2.0 * tail)


def error_kind(truth: int, pred: int) -> str:
    """Why a misread number is wrong: "no digit" (pred -1), "missed digit" / "extra digit" (fewer / more
    digits than the truth; any number where the image has none is extra), or "same length" (a digit read
    wrong). Lengths are of the decimal numbers."""
    if pred == -1:
        return "no digit"
    if truth == -1:
        return "extra digit"
    shorter = len(str(pred)) - len(str(truth))
    return "missed digit" if shorter < 0 else "extra digit" if shorter > 0 else "same length"


def error_kinds(truth: Mapping[int, int], pred: Mapping[int, int]) -> dict[str, int]:
    """Counts of each kind in ERROR_KINDS over the misread images (every kind present, zeros included)."""
    counts = Counter(error_kind(t, pred.get(i, -1)) for i, t in truth.items() if pred.get(i, -1) != t)
    return {kind: counts[kind] for kind in ERROR_KINDS}


def compare(truth: Mapping[int, int], a: Mapping[int, int], b: Mapping[int, int]) -> dict[str, Any]:
    """The whole comparison as plain data: accuracies, paired counts, McNemar z and p, error kinds."""
    counts = paired_counts(truth, a, b)
    z, p = mcnemar(counts.only_a, counts.only_b)
    n = max(counts.total, 1)
    return {
        "images": counts.total,
        "accuracy_a": (counts.both_right + counts.only_a) / n,
        "accuracy_b": (counts.both_right + counts.only_b) / n,
        "paired": asdict(counts),
        "mcnemar_z": z,
        "p_value": p,
        "errors_a": error_kinds(truth, a),
        "errors_b": error_kinds(truth, b),
    }


def paired_intervals(
    records: Sequence[ImageRecord],
    a: Mapping[int, int],
    b: Mapping[int, int],
    detections_a: list[dict[str, Any]],
    detections_b: list[dict[str, Any]],
    samples: int,
) -> dict[str, Any]:
    """mAP of A's and B's detections (pred.json rows) and `paired_bootstrap`'s intervals of B - A for mAP
    and accuracy (numbers `a`, `b`), over the same resamples of `records`."""
    gt = ground_truth_coco(records)
    table_a, table_b = match_table(gt, detections_a), match_table(gt, detections_b)
    truth = {r.image_id: r.number for r in records}
    right_a, right_b = read_right(table_a, truth, a), read_right(table_b, truth, b)
    ones = np.ones(len(table_a.image_ids))
    return {
        "map_a": weighted_map(table_a, ones)["map"],
        "map_b": weighted_map(table_b, ones)["map"],
        "b_minus_a": paired_bootstrap(table_a, table_b, right_a, right_b, samples),
    }


def format_intervals(intervals: Mapping[str, Any]) -> list[str]:
    """`paired_intervals` as report lines."""
    diff = intervals["b_minus_a"]
    share = f"{diff['confidence']:.0%}"
    return [f"mAP       A {intervals['map_a']:.4f}  B {intervals['map_b']:.4f}"] + [
        f"B - A {name:<8} {diff[name]['estimate']:+.4f}, {share} paired bootstrap interval "
        f"{diff[name]['low']:+.4f} to {diff[name]['high']:+.4f} ({diff['samples']} resamples)"
        for name in ("map", "accuracy")
    ]


def format_report(result: Mapping[str, Any], name_a: str, name_b: str) -> str:
    """Human-readable lines for `compare`'s result."""
    paired = result["paired"]
    lines = [
        f"{result['images']} images",
        f"accuracy  A {result['accuracy_a']:.4f}  B {result['accuracy_b']:.4f}",
        f"  (A = {name_a}, B = {name_b})",
        f"both right {paired['both_right']}, only A right {paired['only_a']}, "
        f"only B right {paired['only_b']}, both wrong {paired['both_wrong']}",
        f"McNemar z {result['mcnemar_z']:+.2f}, exact two-sided p {result['p_value']:.4f}"
        + ("  (within noise at p >= 0.05)" if result["p_value"] >= 0.05 else ""),
        "misreads by kind:    " + "  ".join(f"{k:>12}" for k in ERROR_KINDS),
        "  A                  " + "  ".join(f"{result['errors_a'][k]:>12}" for k in ERROR_KINDS),
        "  B                  " + "  ".join(f"{result['errors_b'][k]:>12}" for k in ERROR_KINDS),
    ]
    if "bootstrap" in result:
        lines += format_intervals(result["bootstrap"])
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="first training.evaluate output folder (holds pred.csv)")
    p.add_argument("b", type=Path, help="second training.evaluate output folder")
    p.add_argument("--data", required=True, type=Path, help="data set root in the HW2 layout")
    p.add_argument("--split", default="valid")
    p.add_argument("--images", help="image folder (overrides DATA/SPLIT)")
    p.add_argument("--annotations", help="COCO json (overrides DATA/SPLIT.json)")
    p.add_argument("--json", type=Path, help="also write the result here as JSON")
    add_bootstrap_argument(p, "B - A, where both folders hold pred.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    records, labelled = split_records(args.data, args.split, args.images, args.annotations)
    if not labelled:
        raise SystemExit(f"split {args.split!r} of {args.data} has no annotations: nothing to compare with")
    truth = {r.image_id: r.number for r in records}
    try:
        a, b = read_pred_csv(args.a / "pred.csv"), read_pred_csv(args.b / "pred.csv")
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    for folder, pred in ((args.a, a), (args.b, b)):
        if pred.keys() != truth.keys():
            covered, others = len(pred.keys() & truth.keys()), len(pred.keys() - truth.keys())
            raise SystemExit(
                f"{folder}/pred.csv covers {covered} of the split's {len(truth)} images and {others}"
                " others: evaluate both on the same split"
            )
    result = compare(truth, a, b)
    detections = [folder / "pred.json" for folder in (args.a, args.b)]
    if args.bootstrap > 0 and all(path.is_file() for path in detections):
        rows_a, rows_b = (json.loads(path.read_text()) for path in detections)
        result["bootstrap"] = paired_intervals(records, a, b, rows_a, rows_b, args.bootstrap)
    print(format_report(result, str(args.a), str(args.b)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    run_tool(main)
