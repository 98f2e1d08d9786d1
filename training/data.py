"""COCO digit data in the HW2 layout (`train/`, `valid/`, `test/`, `train.json`, `valid.json`); extra
training sets may also come in the COCO 2017 layout (`images/train2017/`,
`annotations/instances_train2017.json`).

Annotations are validated on load: a record that cannot be used raises `DataError` naming the file and
the record; a box that sticks out of its image is clamped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from models.boxes import BoxXYXY, box_center, clamp_xyxy, xywh_to_xyxy
from models.hw2 import image_ids_for
from models.inference import to_unit_float
from models.labels import DIGIT_NAMES, NUM_DIGITS, category_id_to_digit, digit_to_label

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

Target = dict[str, Any]
PairTransform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class DataError(ValueError):
    """A data set record that cannot be used as it is."""


@dataclass(frozen=True)
class DigitBox:
    """One ground-truth digit; `box_xyxy` in image pixels."""

    box_xyxy: BoxXYXY
    digit: int


@dataclass(frozen=True)
class ImageRecord:
    """One image and its ground truth (empty for unlabelled splits)."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: tuple[DigitBox, ...] = ()

    @property
    def number(self) -> int:
        """The whole number: digits sorted left to right by box centre; -1 without digits. Also where
        the boxes stand in a column (`models.assembly.is_column`), which the service reads top to
        bottom: HW2's labels gave a column's digits, in SVHN's reading order, to its boxes taken left
        to right, so that top to bottom its boxes read another number for 3 of the 6 legible columns
        of the training split (experiment 158), and left to right is the labels' own rule."""
        if not self.boxes:
            return -1
        ordered = sorted(self.boxes, key=lambda b: box_center(b.box_xyxy)[0])
        return int("".join(str(b.digit) for b in ordered))


@dataclass
class LoadReport:
    """Counts of what loading did to the records."""

    images: int = 0
    boxes: int = 0
    clamped: int = 0
    crowd_skipped: int = 0
    examples: list[str] = field(default_factory=list)


def category_digit_map(doc: dict[str, Any], source: str) -> dict[int, int]:
    """category_id -> digit. By category name ("0".."9") when the json has `categories`, else the HW2
    convention (category_id = digit + 1)."""
    categories = doc.get("categories")
    if not categories:
        return {category_id: category_id_to_digit(category_id) for category_id in range(1, NUM_DIGITS + 1)}
    mapping: dict[int, int] = {}
    for cat in categories:
        name = str(cat.get("name", "")).strip()
        if name not in DIGIT_NAMES:
            raise DataError(f"{source}: category {cat.get('id')} is named {name!r}, not a digit '0'..'9'")
        mapping[int(cat["id"])] = int(name)
    return mapping


# (image folder, annotation file) of a training split, relative to its data set's folder
TRAIN_LAYOUTS: dict[str, tuple[str, str]] = {
    "HW2": ("train", "train.json"),
    "COCO 2017": ("images/train2017", "annotations/instances_train2017.json"),
}


def train_split_files(root: str | Path) -> tuple[Path, Path]:
    """(image folder, annotation file) of the training split of the data set in `root`, in whichever
    layout of `TRAIN_LAYOUTS` it holds (HW2 first). Raises DataError naming both when it holds neither."""
    root = Path(root)
    for images, ann in TRAIN_LAYOUTS.values():
        if (root / images).is_dir() and (root / ann).is_file():
            return root / images, root / ann
    expected = " or ".join(f"{images}/ + {ann} ({name})" for name, (images, ann) in TRAIN_LAYOUTS.items())
    raise DataError(f"{root}: no training split found; expected {expected}")


def load_coco_split(images_dir: str | Path, ann_file: str | Path) -> tuple[list[ImageRecord], LoadReport]:
    """Read and validate one annotated split. Raises DataError on unusable records."""
    images_dir, ann_file = Path(images_dir), Path(ann_file)
    if not ann_file.is_file():
        raise DataError(f"annotation file {ann_file} does not exist")
    try:
        doc = json.loads(ann_file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_file}: not valid JSON ({exc})") from exc
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{ann_file}: missing the COCO '{key}' list")
    digits = category_digit_map(doc, str(ann_file))
    report = LoadReport()
    images = {int(im["id"]): _image_entry(im, images_dir, ann_file) for im in doc["images"]}
    boxes: dict[int, list[DigitBox]] = {image_id: [] for image_id in images}
    for ann in doc["annotations"]:
        box = _parse_annotation(ann, images, digits, ann_file, report)
        if box is not None:
            boxes[int(ann["image_id"])].append(box)
    records = [
        ImageRecord(image_id=i, path=p, width=w, height=h, boxes=tuple(boxes[i]))
        for i, (p, w, h) in sorted(images.items())
    ]
    report.images, report.boxes = len(records), sum(len(b) for b in boxes.values())
    if report.clamped:
        log.warning(
            "%s: clamped %d boxes to their image bounds (e.g. %s)",
            ann_file,
            report.clamped,
            "; ".join(report.examples[:3]),
        )
    return records, report


def _image_entry(im: dict[str, Any], images_dir: Path, ann_file: Path) -> tuple[Path, int, int]:
    name = str(im.get("file_name", ""))
    path = images_dir / name
    if not name or not path.is_file():
        raise DataError(f"{ann_file}: image record {im.get('id')} names {name!r}, missing from {images_dir}")
    if "width" in im and "height" in im:
        return path, int(im["width"]), int(im["height"])
    with Image.open(path) as img:
        return path, img.width, img.height


def _parse_annotation(
    ann: dict[str, Any],
    images: dict[int, tuple[Path, int, int]],
    digits: dict[int, int],
    ann_file: Path,
    report: LoadReport,
) -> DigitBox | None:
    where = f"{ann_file}: annotation {ann.get('id')}"
    image_id = int(ann.get("image_id", -1))
    if image_id not in images:
        raise DataError(f"{where} refers to image_id {image_id}, which has no image record")
    path, width, height = images[image_id]
    where += f" ({path.name})"
    if ann.get("iscrowd", 0):
        report.crowd_skipped += 1
        return None
    if int(ann.get("category_id", -1)) not in digits:
        raise DataError(f"{where} has unknown category_id {ann.get('category_id')}")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataError(f"{where} has a malformed bbox {bbox!r} (expected [x, y, w, h])")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise DataError(f"{where} has a zero-area box {list(bbox)}")
    raw = xywh_to_xyxy(bbox)
    box = clamp_xyxy(raw, width, height)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"{where} has a box {list(bbox)} outside the {width}x{height} image")
    if box != raw:
        report.clamped += 1
        report.examples.append(f"annotation {ann.get('id')} in {path.name}")
    return DigitBox(box_xyxy=box, digit=digits[int(ann["category_id"])])


def image_paths(images_dir: str | Path) -> list[Path]:
    """The image files (`IMAGE_SUFFIXES`) of a folder, sorted by name. Raises DataError for a folder
    that does not exist."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_records(
    data: Path, split: str, images: str | None, annotations: str | None
) -> tuple[list[ImageRecord], bool]:
    """(records, labelled): annotated records when the split has a json (HW2: `<split>.json`), else
    the bare images of its folder."""
    images_dir = Path(images) if images else data / split
    ann = Path(annotations) if annotations else data / f"{split}.json"
    if ann.is_file():
        return load_coco_split(images_dir, ann)[0], True
    log.info("no annotations at %s: writing predictions only", ann)
    return list_unlabelled_images(images_dir), False


def list_unlabelled_images(images_dir: str | Path) -> list[ImageRecord]:
    """Images of a split without json (the HW2 test split). image_id is the numeric file stem
    ("17.png" -> 17) when every stem is numeric, else the 1-based position in sorted order."""
    paths = image_paths(images_dir)
    if all(p.stem.isdigit() for p in paths):
        paths.sort(key=lambda p: int(p.stem))
    records = []
    for image_id, path in zip(image_ids_for(paths), paths, strict=True):
        with Image.open(path) as img:
            size = img.size
        records.append(ImageRecord(image_id, path, size[0], size[1]))
    return records


def data_fingerprint(files: Sequence[str | Path]) -> str:
    """sha256 over the given annotation files' bytes: identifies the labels a model was trained on."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(Path(f).name.encode())
        digest.update(Path(f).read_bytes())
    return digest.hexdigest()


def record_target(record: ImageRecord) -> Target:
    """Ground truth of one record as a detection target: boxes FloatTensor[N, 4] xyxy in image pixels,
    labels Int64Tensor[N] (digit + 1), image_id int."""
    boxes = torch.tensor([b.box_xyxy for b in record.boxes], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([digit_to_label(b.digit) for b in record.boxes], dtype=torch.int64)
    return {"boxes": boxes, "labels": labels, "image_id": record.image_id}


def read_rgb(path: Path) -> torch.Tensor:
    """Read an image file as RGB ByteTensor[3, H, W] (0-255), as stored: the compact form to keep many
    images in memory (`load_image` of the same file is this / 255)."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return F.pil_to_tensor(rgb)


def read_rgb_all(paths: Sequence[Path], desc: str, show_progress: bool = True) -> list[torch.Tensor]:
    """`read_rgb` of every path, in order, with a progress bar (HW2's 4,845 training images: ~0.2 GB)."""
    return [read_rgb(path) for path in tqdm(paths, desc=desc, leave=False, disable=not show_progress)]


def load_image(path: Path) -> torch.Tensor:
    """Read an image file as float RGB FloatTensor[3, H, W] in [0, 1]."""
    return to_unit_float(read_rgb(path))


class DigitDataset(Dataset[tuple[torch.Tensor, Target]]):
    """Yields (image FloatTensor[3, H, W] in [0, 1], target) with targets as in `record_target`."""

    def __init__(self, records: Sequence[ImageRecord], transforms: PairTransform | None = None) -> None:
        self.records = list(records)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[torch.Tensor, Target]:
        """Record `index`'s image and target as stored, before `transforms`."""
        record = self.records[index]
        image = load_image(record.path)
        if tuple(image.shape[1:]) != (record.height, record.width):
            raise DataError(
                f"{record.path}: image is {image.shape[2]}x{image.shape[1]} but its record says "
                f"{record.width}x{record.height}"
            )
        return image, record_target(record)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection batches are lists: images differ in size."""
    return [item[0] for item in batch], [item[1] for item in batch]
