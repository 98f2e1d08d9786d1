"""Pick the images of a COCO json by how an evaluation of a model on that json read them.

    python -m training.evaluate --checkpoint models/default --data ../shared/data/svhn-hw2 --split train \
        --out runs/e51/eval-train
    python -m training.pick --annotations ../shared/data/svhn-hw2/train.json \
        --errors runs/e51/eval-train/errors.csv --keep misread --out runs/e51/hard.json

`--keep misread` writes the images whose number was misread in one of `--kinds` (hard examples: list
the file several times in a config's `data.extra_train_json` to train on them more often); `--keep rest`
writes every other image (to drop labels a model keeps disagreeing with). The kinds are those of
`training.compare`; by default every kind but "extra digit", since a reading longer than its label is
mostly a label that leaves out a digit, not a misread. `errors.csv` must come from evaluating the same
json (`training.evaluate --annotations`): every row's image must be in it under the same file name.

Writes the COCO json (same categories and ids) and `<out>.report.json` with the counts.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training import runner
from training.compare import ERROR_KINDS, error_kind
from training.data import DataError
from training.exits import run_tool
from training.vet import filter_coco

DEFAULT_KINDS = tuple(k for k in ERROR_KINDS if k != "extra digit")


@dataclass(frozen=True)
class Misread:
    """One row of `training.evaluate`'s errors.csv: numbers as read (-1: no digit)."""

    image_id: int
    file_name: str
    truth: int
    pred: int

    @property
    def kind(self) -> str:
        return error_kind(self.truth, self.pred)


def read_errors(path: Path) -> list[Misread]:
    """The rows of an errors.csv (`image_id,file_name,truth,pred`). Raises DataError for another file."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != ["image_id", "file_name", "truth", "pred"]:
            raise DataError(f"{path}: not an errors.csv of training.evaluate (columns {reader.fieldnames})")
        return [
            Misread(int(row["image_id"]), row["file_name"], int(row["truth"]), int(row["pred"]))
            for row in reader
        ]


def check_pairing(doc: dict[str, Any], misreads: Sequence[Misread], source: str) -> None:
    """Raise DataError unless every misread image is in `doc` under the same file name."""
    names = {int(im["id"]): Path(str(im.get("file_name", ""))).name for im in doc["images"]}
    for m in misreads:
        if names.get(m.image_id) != m.file_name:
            found = names.get(m.image_id)
            where = f"names {found!r}" if found is not None else "has no such image"
            raise DataError(
                f"errors.csv lists image {m.image_id} ({m.file_name}) but {source} {where}: "
                "evaluate this annotation file itself (training.evaluate --annotations)"
            )


def selected_ids(misreads: Sequence[Misread], kinds: Collection[str]) -> set[int]:
    """Ids of the images misread in one of `kinds`."""
    return {m.image_id for m in misreads if m.kind in kinds}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, type=Path, help="the COCO json that was evaluated")
    p.add_argument("--errors", required=True, type=Path, help="errors.csv of training.evaluate on it")
    p.add_argument("--keep", required=True, choices=("misread", "rest"), help="which images to write")
    p.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated misread kinds that count, of {', '.join(ERROR_KINDS)} "
        "(default: all but extra digit)",
    )
    p.add_argument("--out", required=True, type=Path, help="where to write the COCO json")
    args = p.parse_args(argv)
    args.kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(args.kinds) - set(ERROR_KINDS))
    if unknown or not args.kinds:
        p.error(f"--kinds: unknown {unknown or 'none given'}; choose from {', '.join(ERROR_KINDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    doc = json.loads(args.annotations.read_text())
    misreads = read_errors(args.errors)
    check_pairing(doc, misreads, str(args.annotations))
    chosen = selected_ids(misreads, args.kinds)
    all_ids = {int(im["id"]) for im in doc["images"]}
    keep = chosen if args.keep == "misread" else all_ids - chosen
    report = {
        "annotations": str(args.annotations),
        "errors": str(args.errors),
        "kinds": list(args.kinds),
        "keep": args.keep,
        "images": len(all_ids),
        "misread": dict(Counter(m.kind for m in misreads)),
        "kept": len(keep),
    }
    runner.write_annotations(args.out, filter_coco(doc, keep), report)
    print(f"kept {len(keep)} of {len(all_ids)} images ({args.keep}); misread by kind: {report['misread']}")
    return report


if __name__ == "__main__":
    run_tool(main)
