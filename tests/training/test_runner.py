"""The shared way the tools run a checkpoint over a split: arguments, loading, batched prediction."""

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from models.balance import BalanceParams
from models.focus import TUNED_GATE, FocusParams
from models.grain import GrainParams
from models.levels import LevelsParams
from models.photo import PhotoParams, prepare_photo
from models.srgb import to_linear, to_srgb
from models.zoom import ZoomParams
from training.data import ImageRecord, load_coco_split
from training.degrade import SODIUM
from training.runner import (
    ZOOM_ARGS,
    add_param_args,
    add_runner_args,
    add_zoom_arguments,
    load_prepared,
    params_from_args,
    predict_records,
    prepared_records,
    write_annotations,
    zoom_from,
)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_runner_args(p)
    return p.parse_args(list(argv))


def test_runner_arguments_default_to_the_cpu_box() -> None:
    args = _args()
    assert (args.device, args.batch_size, args.workers) == ("auto", 16, 2)
    args = _args("--device", "cpu", "--batch-size", "3", "--workers", "0")
    assert (args.device, args.batch_size, args.workers) == ("cpu", 3, 0)


def _zoom_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_zoom_arguments(p, "the checkpoint's")
    return p.parse_args(list(argv))


def test_zoom_options_left_out_keep_the_checkpoints_settings_and_given_replace_them() -> None:
    shipped = ZoomParams(
        below_px=50.0, search_tiles=3, side_look=0.5, search_located=True, search_below_p=0.85
    )
    none = _zoom_args()
    assert sorted(vars(none)) == sorted(ZOOM_ARGS) and zoom_from(none, shipped) == shipped
    given = _zoom_args(
        *("--zoom-below-px", "0", "--search-tiles", "2", "--side-look", "1", "--fuse-first", "3"),
        *("--search-located", "off", "--search-below-p", "0.5", "--search-tiles-max", "4"),
        *("--search-near", "0.1"),
    )
    assert zoom_from(given, shipped) == replace(
        shipped,
        below_px=0.0,
        search_tiles=2,
        side_look=1.0,
        fuse_first=3.0,
        search_located=False,
        search_below_p=0.5,
        search_tiles_max=4,
        search_near=0.1,
    )


@pytest.mark.parametrize(
    "bad", [["--search-located", "yes"], ["--search-below-p", "1.5"], ["--search-near", "-0.1"]]
)
def test_zoom_options_out_of_their_range_are_refused_by_the_parser(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        _zoom_args(*bad)


@dataclass(frozen=True)
class _Params:
    match_score: float = 0.3
    extra_iou: float = 0.5


def test_a_dataclass_of_thresholds_round_trips_through_flags() -> None:
    p = argparse.ArgumentParser()
    add_param_args(p, _Params())
    assert params_from_args(_Params, p.parse_args([])) == _Params()
    assert params_from_args(_Params, p.parse_args(["--match-score", "0.7"])) == _Params(match_score=0.7)
    with pytest.raises(SystemExit):
        p.parse_args(["--match_score", "0.7"])


def test_annotations_and_their_report_are_written_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "x.json"
    write_annotations(out, {"images": [], "annotations": []}, {"kept": 0})
    assert json.loads(out.read_text()) == {"images": [], "annotations": []}
    assert json.loads((tmp_path / "runs" / "x.report.json").read_text()) == {"kept": 0}


def test_annotations_whose_write_fails_halfway_keep_their_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "vetted.json"
    write_annotations(out, {"images": [], "annotations": []}, {"kept": 0})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_then_full_disk(path: Path, text: str, *args: object, **kwargs: object) -> int:
        with path.open("w") as handle:
            handle.write(text[:5])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        write_annotations(out, {"images": [{"id": 1}], "annotations": []}, {"kept": 1})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_prediction_covers_every_record_in_original_pixels(trained_run: Path, synth_dir: Path) -> None:
    model, meta, device = load_prepared(trained_run / "best", "cpu")
    assert device == torch.device("cpu") and not model.training
    assert meta.weights_sha256
    records = load_coco_split(synth_dir / "valid", synth_dir / "valid.json")[0][:5]
    args = _args("--batch-size", "2", "--workers", "0")
    found = predict_records(model, records, device, args, "test")
    assert sorted(found) == sorted(r.image_id for r in records)
    assert any(found.values())  # the tiny model finds digits on its own kind of images
    by_id = {r.image_id: r for r in records}
    for image_id, detections in found.items():
        width, height = by_id[image_id].width, by_id[image_id].height
        for d in detections:
            x1, y1, x2, y2 = d.box_xyxy
            assert 0 <= x1 < x2 <= width + 1e-3 and 0 <= y1 < y2 <= height + 1e-3
    assert predict_records(model, records, device, args, "again") == found
    zoomed = predict_records(model, records, device, args, "zoom", ZoomParams(below_px=1e6))
    assert sorted(zoomed) == sorted(found)


def test_photos_a_step_changes_are_read_from_copies_with_the_service_s_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grainy = rng.integers(0, 255, (30, 60, 3), dtype=np.uint8)
    clean = np.full((30, 60, 3), 128, dtype=np.uint8)
    soft = np.full((30, 60, 3), 200, dtype=np.uint8)
    soft[8:22, 20:40] = 40
    dusk = (soft // 8).astype(np.uint8)  # sharp, but its contrast squeezed into 20 grey levels
    orange = to_srgb(to_linear(soft) * np.array(SODIUM))  # sharp, under a street lamp
    soft = np.array(Image.fromarray(soft).filter(ImageFilter.GaussianBlur(3)))
    records = []
    for image_id, pixels in ((1, grainy), (2, clean), (3, soft), (4, dusk), (5, orange)):
        Image.fromarray(pixels).save(tmp_path / f"{image_id}.png")
        records.append(ImageRecord(image_id, tmp_path / f"{image_id}.png", 60, 30))
    folder = tmp_path / "prepared"
    folder.mkdir()
    steps_on = PhotoParams(GrainParams(), FocusParams(gate=TUNED_GATE), LevelsParams(), BalanceParams())
    photos, steps = prepared_records(records, steps_on, folder)
    assert steps == {1: ("grain",), 3: ("focus",), 4: ("levels",), 5: ("balance",)}
    assert [p.image_id for p in photos] == [1, 2, 3, 4, 5]
    assert photos[1] == records[1] and [photos[i].path for i in (0, 2, 3, 4)] == [
        folder / f"{i}.png" for i in (1, 3, 4, 5)
    ]
    assert replace(photos[0], path=records[0].path) == records[0]
    for photo, pixels in ((photos[0], grainy), (photos[2], soft), (photos[3], dusk), (photos[4], orange)):
        read_back = np.asarray(Image.open(photo.path).convert("RGB"))
        assert np.array_equal(read_back, prepare_photo(pixels, steps_on)[0])
        assert not np.array_equal(read_back, pixels)
    steps_off = PhotoParams(
        GrainParams(threshold=0.0), FocusParams(gate=0.0), LevelsParams(gate=0.0), BalanceParams(gate=0.0)
    )
    assert prepared_records(records, steps_off, folder) == (records, {})
