"""Whole-number accuracy against what the photos show, beside the accuracy against their labels.

    python -m training.audit out/eval --data ../shared/data/svhn-hw2 \
        --audit models/card/valid_misreads_audit.csv

Some validation labels leave out digits the photo shows, or hold other digits than it shows
(models/MODEL_CARD_DETAILS.md, "Stage 8's misreads, audited"; models/MODEL_CARD.md, "Known failure
modes"). An audit csv records what photos looked at by eye show:
`image_id,labelled,read,seen,verdict,note`, one row per photo, where `verdict` is

- `label_omits`: the photo shows more digits than the label holds; `seen` is the number it shows;
- `label_wrong`: the photo shows another number than the label; `seen` is that number;
- `model`: the photo shows its label; `seen` is the label, and a misreading is the model's;
- `unclear`: too blurred, cut or ambiguous to tell; `seen` is empty, and the label stands.

`read` is what the model audited read (for the record; not used here). Against the photos, a photo
whose verdict is `label_omits` or `label_wrong` counts as right when read as `seen`, every other photo
against its label. Only the photos in the audit were looked at (the misreads of one model, and the
photos a search for unlabelled digits found), so photos read as their wrong label elsewhere are not
found: the figure against the photos is an upper estimate.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.hw2 import read_pred_csv
from training.data import split_records
from training.exits import run_tool

VERDICTS = ("label_omits", "label_wrong", "model", "unclear")
LABEL_ERRORS = ("label_omits", "label_wrong")


@dataclass(frozen=True)
class AuditRow:
    """One photo looked at by eye: its label, what it shows (None: unclear) and the verdict."""

    image_id: int
    labelled: int
    seen: int | None
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"image {self.image_id}: verdict {self.verdict!r} is not one of {VERDICTS}")
        if (self.seen is None) != (self.verdict == "unclear"):
            raise ValueError(
                f"image {self.image_id}: `seen` must be empty exactly when the verdict is unclear"
            )
        if self.verdict == "model" and self.seen != self.labelled:
            raise ValueError(
                f"image {self.image_id}: verdict model, but seen {self.seen} != label {self.labelled}"
            )
        if self.verdict in LABEL_ERRORS and self.seen == self.labelled:
            raise ValueError(f"image {self.image_id}: verdict {self.verdict}, but seen is the label")
        seen, labelled = str(self.seen), str(self.labelled)
        if self.verdict == "label_omits" and not (
            len(labelled) < len(seen) and is_subsequence(labelled, seen)
        ):
            raise ValueError(
                f"image {self.image_id}: label_omits, but {self.seen} does not hold {self.labelled}"
            )


def is_subsequence(part: str, whole: str) -> bool:
    """Whether `part` is `whole` with none or some of its characters left out, the rest in order."""
    rest = iter(whole)
    return all(ch in rest for ch in part)


def read_audit(path: Path) -> list[AuditRow]:
    """The audit csv's rows (ValueError on a malformed or inconsistent row, or a photo listed twice)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    audit = []
    for line, r in enumerate(rows, start=2):
        try:
            audit.append(
                AuditRow(
                    image_id=int(r["image_id"]),
                    labelled=int(r["labelled"]),
                    seen=int(r["seen"]) if r["seen"].strip() else None,
                    verdict=r["verdict"].strip(),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{path}: expected image_id,labelled,read,seen,verdict,note rows ({exc!r})"
            ) from exc
        except ValueError as exc:
            raise ValueError(f"{path}, line {line}: {exc}") from exc
    repeated = [i for i, n in Counter(a.image_id for a in audit).items() if n > 1]
    if repeated:
        raise ValueError(f"{path}: photos listed more than once: {sorted(repeated)}")
    return audit


def photo_truth(truth: Mapping[int, int], audit: Sequence[AuditRow]) -> dict[int, int]:
    """`truth` (image_id -> labelled number) with each audited label error replaced by what the photo
    shows. ValueError when an audited photo is not in `truth` or its label differs."""
    out = dict(truth)
    for row in audit:
        if truth.get(row.image_id) != row.labelled:
            raise ValueError(
                f"image {row.image_id}: the audit's label {row.labelled} is not the split's"
                f" ({truth.get(row.image_id)}): an audit of another split or labels"
            )
        if row.verdict in LABEL_ERRORS and row.seen is not None:
            out[row.image_id] = row.seen
    return out


def audit_accuracy(
    truth: Mapping[int, int], pred: Mapping[int, int], audit: Sequence[AuditRow]
) -> dict[str, Any]:
    """Right against the labels and against the photos (`photo_truth`) over every image of `truth`
    (an image missing from `pred` reads -1), and the audited photos by verdict: how many there are,
    how many `pred` reads as the label and as the photo shows."""
    photos = photo_truth(truth, audit)
    n = len(truth)
    right_labels = sum(pred.get(i, -1) == number for i, number in truth.items())
    right_photos = sum(pred.get(i, -1) == number for i, number in photos.items())
    verdicts: dict[str, dict[str, int]] = {}
    for verdict in VERDICTS:
        rows = [a for a in audit if a.verdict == verdict]
        verdicts[verdict] = {
            "photos": len(rows),
            "read_as_label": sum(pred.get(a.image_id, -1) == a.labelled for a in rows),
            "read_as_seen": sum(a.seen is not None and pred.get(a.image_id, -1) == a.seen for a in rows),
        }
    return {
        "images": n,
        "right_labels": right_labels,
        "accuracy_labels": right_labels / n if n else 0.0,
        "right_photos": right_photos,
        "accuracy_photos": right_photos / n if n else 0.0,
        "verdicts": verdicts,
    }


def format_report(result: Mapping[str, Any]) -> str:
    """Human-readable lines for `audit_accuracy`'s result."""
    lines = [
        f"{result['images']} images",
        f"against the labels  {result['right_labels']} right ({result['accuracy_labels']:.4f})",
        f"against the photos  {result['right_photos']} right ({result['accuracy_photos']:.4f}),"
        " an upper estimate: only the audited photos were looked at",
        "audited photos      verdict       photos  read as label  read as seen",
    ]
    for verdict, counts in result["verdicts"].items():
        lines.append(
            f"                    {verdict:<12}  {counts['photos']:>6}  {counts['read_as_label']:>13}"
            f"  {counts['read_as_seen']:>12}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evaluation", type=Path, help="a training.evaluate output folder (holds pred.csv)")
    p.add_argument("--data", required=True, type=Path, help="data set root in the HW2 layout")
    p.add_argument("--split", default="valid")
    p.add_argument(
        "--audit", required=True, type=Path, help="audit csv (image_id,labelled,read,seen,verdict,note)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    records, labelled = split_records(args.data, args.split, None, None)
    if not labelled:
        raise SystemExit(f"split {args.split!r} of {args.data} has no annotations: nothing to audit against")
    truth = {r.image_id: r.number for r in records}
    try:
        pred = read_pred_csv(args.evaluation / "pred.csv")
        result = audit_accuracy(truth, pred, read_audit(args.audit))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    print(format_report(result))
    return result


if __name__ == "__main__":
    run_tool(main)
