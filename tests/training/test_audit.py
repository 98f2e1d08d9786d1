"""training.audit: audit rows, accuracy against the photos, and the command on a synthetic split."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.hw2 import write_pred_csv
from training import audit
from training.audit import AuditRow
from training.data import load_coco_split

HEADER = "image_id,labelled,read,seen,verdict,note\n"


def _write_audit(path: Path, lines: list[str]) -> Path:
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("labelled", "seen", "verdict", "message"),
    [
        (2, 242, "label_wrongly", "is not one of"),
        (2, None, "model", "empty exactly when"),
        (2, 3, "unclear", "empty exactly when"),
        (2, 3, "model", "!= label"),
        (25, 25, "label_wrong", "seen is the label"),
        (25, 52, "label_omits", "does not hold"),  # same length: not an omission
        (25, 123, "label_omits", "does not hold"),  # 2 and 5 not both in order
    ],
)
def test_inconsistent_rows_are_refused(labelled: int, seen: int | None, verdict: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AuditRow(image_id=7, labelled=labelled, seen=seen, verdict=verdict)


def test_consistent_rows() -> None:
    assert AuditRow(1, 2, 242, "label_omits").seen == 242
    assert AuditRow(2, 25, 125, "label_omits").verdict == "label_omits"
    assert AuditRow(3, 41, 12, "label_wrong").seen == 12
    assert AuditRow(4, 39, 39, "model").seen == 39
    assert AuditRow(5, 9, None, "unclear").seen is None


def test_read_audit(tmp_path: Path) -> None:
    path = _write_audit(
        tmp_path / "a.csv",
        [
            "124,2,242,242,label_omits,a photo of 242",
            "146,39,30,39,model,",
            '1157,9,3,,unclear,"blurred, 3 or 9"',
        ],
    )
    assert audit.read_audit(path) == [
        AuditRow(124, 2, 242, "label_omits"),
        AuditRow(146, 39, 39, "model"),
        AuditRow(1157, 9, None, "unclear"),
    ]


def test_read_audit_refuses_a_photo_twice_and_malformed_rows(tmp_path: Path) -> None:
    twice = _write_audit(tmp_path / "twice.csv", ["1,2,242,242,label_omits,", "1,2,2,2,model,"])
    with pytest.raises(ValueError, match=r"more than once: \[1\]"):
        audit.read_audit(twice)
    bad = _write_audit(tmp_path / "bad.csv", ["x,2,242,242,label_omits,"])
    with pytest.raises(ValueError, match=r"bad.csv, line 2: invalid literal"):
        audit.read_audit(bad)
    (tmp_path / "cols.csv").write_text("image_id,labelled\n1,2\n")
    with pytest.raises(ValueError, match="expected image_id,labelled"):
        audit.read_audit(tmp_path / "cols.csv")


def test_photo_truth_replaces_label_errors_only() -> None:
    truth = {1: 2, 2: 41, 3: 39, 4: 9, 5: 77}
    rows = [AuditRow(1, 2, 242, "label_omits"), AuditRow(2, 41, 12, "label_wrong")]
    rows += [AuditRow(3, 39, 39, "model"), AuditRow(4, 9, None, "unclear")]
    assert audit.photo_truth(truth, rows) == {1: 242, 2: 12, 3: 39, 4: 9, 5: 77}


def test_photo_truth_refuses_an_audit_of_other_labels() -> None:
    with pytest.raises(ValueError, match="not the split's"):
        audit.photo_truth({1: 3}, [AuditRow(1, 2, 242, "label_omits")])
    with pytest.raises(ValueError, match=r"not the split's \(None\)"):
        audit.photo_truth({1: 3}, [AuditRow(9, 2, 242, "label_omits")])


def test_audit_accuracy_counts_labels_photos_and_verdicts() -> None:
    truth = {1: 2, 2: 41, 3: 39, 4: 9, 5: 77, 6: 25}
    rows = [AuditRow(1, 2, 242, "label_omits"), AuditRow(2, 41, 12, "label_wrong")]
    rows += [
        AuditRow(3, 39, 39, "model"),
        AuditRow(4, 9, None, "unclear"),
        AuditRow(6, 25, 125, "label_omits"),
    ]
    # 1 read as the photo shows, 2 as the photo, 3 misread, 4 misread, 5 right, 6 read as its label
    pred = {1: 242, 2: 12, 3: 30, 4: 3, 5: 77, 6: 25}
    result = audit.audit_accuracy(truth, pred, rows)
    assert (result["images"], result["right_labels"], result["right_photos"]) == (6, 2, 3)
    assert result["accuracy_labels"] == pytest.approx(2 / 6)
    assert result["accuracy_photos"] == pytest.approx(3 / 6)
    assert result["verdicts"]["label_omits"] == {"photos": 2, "read_as_label": 1, "read_as_seen": 1}
    assert result["verdicts"]["label_wrong"] == {"photos": 1, "read_as_label": 0, "read_as_seen": 1}
    assert result["verdicts"]["model"] == {"photos": 1, "read_as_label": 0, "read_as_seen": 0}
    assert result["verdicts"]["unclear"] == {"photos": 1, "read_as_label": 0, "read_as_seen": 0}
    # an image missing from the predictions reads -1
    assert audit.audit_accuracy(truth, {5: 77}, rows)["right_labels"] == 1


def test_command_on_synthetic_split(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    truth = {r.image_id: r.number for r in records}
    first, second = sorted(truth)[:2]
    wrong_label = truth[first] + 1  # the audit says the photo shows another number...
    pred = dict(truth) | {first: wrong_label}  # ...which the model reads; the second is misread
    pred[second] = -1
    (tmp_path / "eval").mkdir()
    write_pred_csv(tmp_path / "eval" / "pred.csv", pred)
    rows = [
        f"{first},{truth[first]},{wrong_label},{wrong_label},label_wrong,",
        f"{second},{truth[second]},-1,,unclear,",
    ]
    path = _write_audit(tmp_path / "audit.csv", rows)
    result = audit.main([str(tmp_path / "eval"), "--data", str(synth_dir), "--audit", str(path)])
    n = len(truth)
    assert (result["right_labels"], result["right_photos"]) == (n - 2, n - 1)
    printed = capsys.readouterr().out
    assert f"against the photos  {n - 1} right" in printed and "label_wrong" in printed


def test_command_refuses_an_audit_of_other_labels(synth_dir: Path, tmp_path: Path) -> None:
    records, _ = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")
    truth = {r.image_id: r.number for r in records}
    (tmp_path / "eval").mkdir()
    write_pred_csv(tmp_path / "eval" / "pred.csv", truth)
    image = min(truth)
    path = _write_audit(tmp_path / "audit.csv", [f"{image},{truth[image] + 1},0,,unclear,"])
    with pytest.raises(SystemExit, match="not the split's"):
        audit.main([str(tmp_path / "eval"), "--data", str(synth_dir), "--audit", str(path)])
