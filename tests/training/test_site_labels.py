"""Labelling a detector's sites against the labelled boxes: digit, no digit, or left out."""

from pathlib import Path

from models.assembly import Detection
from models.reader import NOT_A_DIGIT
from training.data import DigitBox, ImageRecord
from training.site_labels import SiteLabelParams, label_sites, labelled_sites


def _record(image_id: int = 1) -> ImageRecord:
    boxes = (DigitBox((10, 10, 20, 30), 4), DigitBox((22, 10, 32, 30), 2))
    return ImageRecord(image_id, Path(f"{image_id}.png"), 100, 60, boxes)


def test_sites_take_the_digit_they_cover_or_none() -> None:
    dets = [
        Detection((10, 11, 20, 31), 9, 0.5),  # on the "4", read as 9: labelled 4 (the label wins)
        Detection((10, 11, 20, 31), 4, 0.3),  # the same site: no second crop
        Detection((60, 35, 70, 55), 1, 0.8),  # below the number, on nothing: no digit
        Detection((14, 10, 24, 30), 3, 0.9),  # half off the "4" (IoU 0.43): left out
        Detection((80, 0, 90, 8), 7, 0.05),  # too faint to be shown to the reader: left out
    ]
    sites = label_sites(_record(), dets, SiteLabelParams())
    assert [(s.box_xyxy, s.label) for s in sites] == [((60, 35, 70, 55), NOT_A_DIGIT), ((10, 11, 20, 31), 4)]


def test_a_confident_digit_the_label_leaves_out_is_not_taught_as_no_digit() -> None:
    beside = Detection((34, 10, 44, 30), 7, 0.9)  # a third digit in the row, at the digits' height
    assert label_sites(_record(), [beside], SiteLabelParams()) == []
    unsure = Detection((34, 10, 44, 30), 7, 0.4)  # under the row-mate score: taught as no digit
    assert [s.label for s in label_sites(_record(), [unsure], SiteLabelParams())] == [NOT_A_DIGIT]


def test_labelled_sites_of_many_records_keep_their_image_paths() -> None:
    found = {
        1: [Detection((10, 11, 20, 31), 4, 0.7)],
        2: [Detection((60, 35, 70, 55), 0, 0.8)],
    }
    items = labelled_sites([_record(1), _record(2), _record(3)], found, SiteLabelParams())
    assert [(path.name, s.label) for path, s in items] == [("1.png", 4), ("2.png", NOT_A_DIGIT)]
