import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import real_data
from training.data import (
    DataError,
    DigitDataset,
    collate,
    list_unlabelled_images,
    load_coco_split,
    load_image,
    read_rgb,
    split_records,
    train_split_files,
)


def make_set(tmp_path: Path, annotations: list[dict], categories: list[dict] | None = None) -> Path:
    (tmp_path / "train").mkdir()
    Image.new("RGB", (100, 50), "white").save(tmp_path / "train" / "1.png")
    doc: dict = {
        "images": [{"id": 1, "file_name": "1.png", "width": 100, "height": 50}],
        "annotations": [{"id": i + 1, "image_id": 1, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
    }
    if categories is not None:
        doc["categories"] = categories
    (tmp_path / "train.json").write_text(json.dumps(doc))
    return tmp_path


def load(root: Path):  # type: ignore[no-untyped-def]
    return load_coco_split(root / "train", root / "train.json")


def test_hw2_convention_without_categories(tmp_path: Path) -> None:
    records, report = load(make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 10}]))
    assert records[0].boxes[0].digit == 9 and records[0].boxes[0].box_xyxy == (10, 5, 20, 25)
    assert report.boxes == 1


def test_categories_mapped_by_name_ids_0_to_9(tmp_path: Path) -> None:
    cats = [{"id": d, "name": str(d)} for d in range(10)]
    records, _ = load(make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 0}], cats))
    assert records[0].boxes[0].digit == 0


def test_non_digit_category_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a digit"):
        load(make_set(tmp_path, [], [{"id": 1, "name": "cat"}]))


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"bbox": [10, 5, 0, 20], "category_id": 1}, "zero-area box"),
        ({"bbox": [150, 5, 10, 20], "category_id": 1}, "outside"),
        ({"bbox": [10, 5, 10, 20], "category_id": 42}, "unknown category_id 42"),
        ({"bbox": [10, 5, 10], "category_id": 1}, "malformed bbox"),
    ],
)
def test_bad_record_error_names_file_and_record(tmp_path: Path, annotation: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load(make_set(tmp_path, [annotation]))
    assert "annotation 1" in str(info.value) and "1.png" in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "does not exist"),
        ("not_json", "not valid JSON"),
        ("no_images", "missing the COCO 'images' list"),
        ("no_annotations", "missing the COCO 'annotations' list"),
    ],
)
def test_an_unusable_annotation_file_is_named(tmp_path: Path, damage: str, message: str) -> None:
    root = make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 1}])
    ann_file = root / "train.json"
    doc = json.loads(ann_file.read_text())
    if damage == "missing":
        ann_file.unlink()
    elif damage == "not_json":
        ann_file.write_text(ann_file.read_text()[:-5])
    else:
        ann_file.write_text(json.dumps({k: v for k, v in doc.items() if k != damage.removeprefix("no_")}))
    with pytest.raises(DataError, match=message) as info:
        load(root)
    assert "train.json" in str(info.value)


def test_an_annotation_of_an_image_with_no_record_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"annotation 1 refers to image_id 7, which has no image record"):
        load(make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 1, "image_id": 7}]))


def test_crowd_boxes_are_skipped_and_counted(tmp_path: Path) -> None:
    crowd = {"bbox": [40, 5, 30, 20], "category_id": 1, "iscrowd": 1}
    root = make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 2}, crowd])
    records, report = load(root)
    assert [b.digit for b in records[0].boxes] == [1] and report.boxes == 1 and report.crowd_skipped == 1


def test_an_image_record_without_its_size_takes_the_files(tmp_path: Path) -> None:
    root = make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 1}])
    doc = json.loads((root / "train.json").read_text())
    doc["images"] = [{"id": 1, "file_name": "1.png"}]
    (root / "train.json").write_text(json.dumps(doc))
    records, _ = load(root)
    assert (records[0].width, records[0].height) == (100, 50)


def test_an_image_that_is_not_the_size_its_record_says_is_named_when_read(tmp_path: Path) -> None:
    root = make_set(tmp_path, [{"bbox": [10, 5, 10, 20], "category_id": 1}])
    records, _ = load(root)
    Image.new("RGB", (80, 50), "white").save(root / "train" / "1.png")  # replaced after loading
    with pytest.raises(DataError, match=r"1\.png: image is 80x50 but its record says"):
        DigitDataset(records)[0]


def test_missing_image_names_record(tmp_path: Path) -> None:
    root = make_set(tmp_path, [])
    (root / "train" / "1.png").unlink()
    with pytest.raises(DataError, match=r"image record 1 names '1.png'"):
        load(root)


def test_box_partly_outside_is_clamped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_set(
        tmp_path, [{"bbox": [90, 40, 20, 20], "category_id": 2}, {"bbox": [-3, 0, 10, 10], "category_id": 3}]
    )
    with caplog.at_level(logging.WARNING):
        records, report = load(root)
    assert report.clamped == 2
    assert records[0].boxes[0].box_xyxy == (90, 40, 100, 50)
    assert "clamped 2 boxes" in caplog.text


def test_number_reads_boxes_left_to_right(tmp_path: Path) -> None:
    root = make_set(
        tmp_path, [{"bbox": [50, 5, 10, 20], "category_id": 3}, {"bbox": [10, 5, 10, 20], "category_id": 8}]
    )
    assert load(root)[0][0].number == 72


def test_a_labelled_column_keeps_the_labels_rule_left_to_right(tmp_path: Path) -> None:
    """HW2 gave a column's digits to its boxes taken left to right (experiment 158): its number is
    read by that rule, not top to bottom as the service reads a column."""
    # a box labelled 4 over one labelled 1, the 1's a little left of the 4's centre
    root = make_set(
        tmp_path, [{"bbox": [20, 30, 12, 20], "category_id": 2}, {"bbox": [20, 5, 14, 20], "category_id": 5}]
    )
    assert load(root)[0][0].number == 14


def test_dataset_yields_unnormalised_image_and_target(synth_dir: Path) -> None:
    records, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    image, target = DigitDataset(records)[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert target["boxes"].shape == (len(records[0].boxes), 4)
    assert target["labels"].min() >= 1 and target["image_id"] == records[0].image_id
    images, targets = collate([DigitDataset(records)[i] for i in range(3)])
    assert len(images) == len(targets) == 3


def test_train_split_files_finds_the_hw2_or_the_coco_2017_layout(tmp_path: Path) -> None:
    (tmp_path / "hw2").mkdir()
    hw2 = make_set(tmp_path / "hw2", [])
    assert train_split_files(hw2) == (hw2 / "train", hw2 / "train.json")
    coco = tmp_path / "coco"
    (coco / "images" / "train2017").mkdir(parents=True)
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_train2017.json").write_text("{}")
    assert train_split_files(coco) == (
        coco / "images" / "train2017",
        coco / "annotations" / "instances_train2017.json",
    )
    (coco / "train").mkdir()  # an image folder without its annotation file is not a split
    assert train_split_files(coco)[0] == coco / "images" / "train2017"


@pytest.mark.parametrize("made", ["nothing", "images only", "annotations only"])
def test_train_split_files_names_both_layouts_when_neither_is_there(tmp_path: Path, made: str) -> None:
    if made == "images only":
        (tmp_path / "images" / "train2017").mkdir(parents=True)
    if made == "annotations only":
        (tmp_path / "train.json").write_text("{}")
    with pytest.raises(DataError, match=r"train\.json \(HW2\) or .*instances_train2017\.json \(COCO 2017\)"):
        train_split_files(tmp_path)


def test_unlabelled_split_ids_from_numeric_names(synth_dir: Path) -> None:
    records = list_unlabelled_images(synth_dir / "test")
    assert [r.image_id for r in records] == sorted(int(p.stem) for p in (synth_dir / "test").iterdir())
    assert all(not r.boxes for r in records)


def test_split_records_are_labelled_where_the_split_has_its_json(synth_dir: Path) -> None:
    records, labelled = split_records(synth_dir, "valid", None, None)
    assert labelled and {r.image_id for r in records} == {
        i["id"] for i in json.loads((synth_dir / "valid.json").read_text())["images"]
    }
    assert all(r.boxes for r in records)
    bare, labelled = split_records(synth_dir, "test", None, None)
    assert not labelled and len(bare) == 4 and all(not r.boxes for r in bare)


def test_split_records_take_the_folder_and_json_given_over_the_layouts(synth_dir: Path) -> None:
    records, labelled = split_records(
        synth_dir / "nowhere", "test", str(synth_dir / "valid"), str(synth_dir / "valid.json")
    )
    assert labelled and sorted(r.image_id for r in records) == sorted(
        r.image_id for r in split_records(synth_dir, "valid", None, None)[0]
    )


@pytest.mark.realdata
def test_real_svhn_and_orand_load() -> None:
    svhn = real_data("svhn-hw2")
    records, report = load_coco_split(svhn / "valid", svhn / "valid.json")
    assert len(records) == 807 and report.clamped == 0
    orand = real_data("orand-car-a")
    records, _ = load_coco_split(
        orand / "images" / "val2017", orand / "annotations" / "instances_val2017.json"
    )
    digits = {b.digit for r in records for b in r.boxes}
    assert 0 in digits and digits <= set(range(10))
    train, _ = load_coco_split(*train_split_files(orand))  # as `data.extra_train_roots` reads it
    assert len(train) == 1080 and sum(len(r.boxes) for r in train) == 4898


def test_read_rgb_keeps_the_stored_bytes_that_load_image_scales(tmp_path: Path) -> None:
    pixels = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(tmp_path / "a.png")
    stored = read_rgb(tmp_path / "a.png")
    assert stored.dtype == torch.uint8 and torch.equal(stored, pixels.permute(2, 0, 1))
    assert torch.allclose(load_image(tmp_path / "a.png"), stored.float() / 255, rtol=0, atol=1e-7)
    (tmp_path / "b.png").write_text("not an image")
    with pytest.raises(DataError, match=r"b\.png"):
        read_rgb(tmp_path / "b.png")
