"""Packing a data set's images as JPEG copies in one zip: names kept, sizes kept, loadable as before."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from training import pack
from training.data import load_coco_split
from training.pack import image_names, jpeg_bytes, resolve_annotation


def test_image_names_is_the_sorted_union() -> None:
    docs = [
        {"images": [{"file_name": "b.png"}, {"file_name": "a.png"}]},
        {"images": [{"file_name": "b.png"}]},
    ]
    assert image_names(docs) == ["a.png", "b.png"]


def test_jpeg_bytes_keeps_the_size_and_is_a_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGBA", (37, 11), (200, 10, 10, 255)).save(path)
    data = jpeg_bytes(path)
    assert data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (37, 11) and image.mode == "RGB"


def test_annotations_resolve_under_the_root_first_and_refuse_escapes(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text("{}")
    assert resolve_annotation(tmp_path, "train.json") == (tmp_path / "train.json", "train.json")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        resolve_annotation(tmp_path, "nowhere.json")
    with pytest.raises(ValueError, match="without"):
        resolve_annotation(tmp_path, "../train.json")
    assert resolve_annotation(tmp_path, str(tmp_path / "train.json")) == (
        tmp_path / "train.json",
        "train.json",
    )


def test_pack_round_trip_loads_like_the_original(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads((synth_dir / "train.json").read_text())
    extra = {**doc, "images": doc["images"][:3], "annotations": []}
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    Path("runs/extra.json").write_text(json.dumps(extra))
    out = pack.main(
        [
            "--data",
            str(synth_dir),
            "--out",
            "svhn.zip",
            "--no-progress",
            "--split",
            "train",
            "train.json",
            "--split",
            "valid",
            "valid.json",
            "--split",
            "train",
            "runs/extra.json",
        ]
    )  # train twice: packed once, its images the union
    assert not Path("svhn.zip.part").exists()
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
    assert {"train.json", "valid.json", "runs/extra.json"} <= names
    assert len(archive.namelist()) == len(names)  # no member twice
    assert len([n for n in names if n.startswith("train/")]) == len(doc["images"])
    root = tmp_path / "unpacked"
    original, _ = load_coco_split(synth_dir / "train", synth_dir / "train.json")
    copied, _ = load_coco_split(root / "train", root / "train.json")
    assert [(r.image_id, r.width, r.height, r.boxes) for r in copied] == [
        (r.image_id, r.width, r.height, r.boxes) for r in original
    ]
    with Image.open(copied[0].path) as image:
        assert image.format == "JPEG" and image.size == (copied[0].width, copied[0].height)


def test_missing_images_are_named_before_anything_is_written(synth_dir: Path, tmp_path: Path) -> None:
    doc = json.loads((synth_dir / "valid.json").read_text())
    doc["images"].append({**doc["images"][0], "id": 99999, "file_name": "gone.png"})
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    out = tmp_path / "x.zip"
    with pytest.raises(SystemExit, match=r"gone\.png"):
        pack.main(
            ["--data", str(synth_dir), "--out", str(out), "--split", "valid", str(tmp_path / "bad.json")]
        )
    assert not out.exists()
