"""training.evaluate through the pipeline the service runs: large photos whose search is limited to
doubtful readings (`ZoomParams.search_below_p`), and grainy and blurred photos (`models.photo`), read
as `Predictor.detect` reads them; and how the evaluator prints what /v1/confirm passes."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from models.balance import BalanceParams, balance_colour, channel_means, colour_cast
from models.boxes import xywh_to_xyxy
from models.levels import luma_spread
from models.verifier import reading_p_correct
from models.zoom import detect_alone, locates, search_tiles
from service.config import SHIPPED_CHECKPOINT
from service.imaging import to_model_input
from service.predictor import Predictor
from training import evaluate
from training.degrade import haze, sodium
from training.scenes import place_in_scene
from training.viewpoint import seen_from, view_box


def scenes_split(synth: Path, out: Path, factor: int = 6) -> Path:
    """The synthetic valid photos pasted into digit-free scenes `factor` x their size (large enough
    for the 3 x 3 search), as split "scenes" of a data set at `out`, their boxes moved along."""
    doc = json.loads((synth / "valid.json").read_text())
    (out / "scenes").mkdir(parents=True)
    rng, annotations = random.Random(0), []
    for image in doc["images"]:
        photo = Image.open(synth / "valid" / image["file_name"]).convert("RGB")
        scene, (x, y) = place_in_scene(photo, factor, rng)
        scene.save(out / "scenes" / image["file_name"])
        image.update(width=scene.width, height=scene.height)
        annotations += [
            {**a, "bbox": [a["bbox"][0] + x, a["bbox"][1] + y, *a["bbox"][2:]]}
            for a in doc["annotations"]
            if a["image_id"] == image["id"]
        ]
    (out / "scenes.json").write_text(json.dumps({**doc, "annotations": annotations}))
    return out


def test_a_limited_search_reads_large_photos_as_the_service_does(synth_dir: Path, tmp_path: Path) -> None:
    data = scenes_split(synth_dir, tmp_path / "data")
    images = json.loads((data / "scenes.json").read_text())["images"]
    cpu = torch.device("cpu")
    # the gate judges the first reading: without the search, and without the readings made again
    # widened or narrowed (experiment 159), which come after it
    first = Predictor.load(SHIPPED_CHECKPOINT, cpu, search_located=False, widen_gate=0, squat_gate=0)
    gate = Predictor.load(SHIPPED_CHECKPOINT, cpu, search_located=True, search_below_p=0.8).gate
    assert gate is not None
    min_size, max_size = int(first.model.transform.min_size[-1]), int(first.model.transform.max_size)
    # the first reading's p_correct of each scene the limit applies to: located, and large enough for the
    # tiles (a scene of a small synthetic photo may not be)
    limited: dict[int, float | None] = {}
    for image in images:
        pixels = np.array(Image.open(data / "scenes" / image["file_name"]).convert("RGB"))
        once = first.detect([pixels])[0]
        with torch.inference_mode():
            located = locates(detect_alone(first.model, to_model_input(pixels)), first.zoom)
        zoom = first.zoom
        if located and search_tiles(
            image["height"], image["width"], zoom.search_tiles, min_size, max_size, zoom.min_gain
        ):
            p = reading_p_correct(gate[0], first.assemble(once.sites), once.sites, once.detections)
            limited[image["id"]] = p
    known = sorted({p for p in limited.values() if p is not None})
    assert len(known) >= 2, "the scenes give too few readings to set a limit between"
    # a limit between the two middle readings' p_correct, so that it decides both ways whatever fonts
    # the machine draws the synthetic photos with
    limit = (known[len(known) // 2 - 1] + known[len(known) // 2]) / 2
    doubtful = sorted(i for i, p in limited.items() if p is None or p < limit)
    assert 0 < len(doubtful) < len(limited)

    common = ["--checkpoint", str(SHIPPED_CHECKPOINT), "--data", str(data), "--split", "scenes"]
    gated = [*common, "--workers", "0", "--search-located", "on", "--search-below-p", repr(limit)]
    evaluate.main([*gated, "--out", str(tmp_path / "eval")])
    info = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    with (tmp_path / "eval" / "pred.csv").open() as f:
        read = {int(row["image_id"]): int(row["pred_label"]) for row in csv.DictReader(f)}
    assert info["zoom"]["search_below_p"] == limit and sorted(info["searched_again"]) == doubtful
    service = Predictor.load(SHIPPED_CHECKPOINT, cpu, search_located=True, search_below_p=limit)
    assert service.zoom.gated and service.gate is not None
    for image in images:
        pixels = np.array(Image.open(data / "scenes" / image["file_name"]).convert("RGB"))
        assert read[image["id"]] == service.assemble(service.detect([pixels])[0].sites).value


def test_photos_seen_from_the_side_are_read_widened_as_the_service_reads_them(
    synth_dir: Path, tmp_path: Path
) -> None:
    """The 40 synthetic training photos seen 60 degrees from the side (`training.viewpoint.seen_from`): the
    evaluator reads again widened the photos whose digits come out narrow, keeps the readings the
    service keeps, and so reads every photo as the service does (experiment 159)."""
    doc = json.loads((synth_dir / "train.json").read_text())
    side = tmp_path / "data" / "side"
    side.mkdir(parents=True)
    for image in doc["images"]:
        yaw = 60 if image["id"] % 2 == 0 else -60  # as `training.degrade.oblique` turns them
        photo = Image.open(synth_dir / "train" / image["file_name"]).convert("RGB")
        for a in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
            x1, y1, x2, y2 = view_box(xywh_to_xyxy(a["bbox"]), photo.size, yaw)
            a["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        seen = seen_from(photo, yaw)
        seen.save(side / image["file_name"])
        image["width"], image["height"] = seen.size
    (tmp_path / "data" / "side.json").write_text(json.dumps(doc))
    common = ["--checkpoint", str(SHIPPED_CHECKPOINT), "--data", str(tmp_path / "data"), "--split", "side"]
    evaluate.main([*common, "--workers", "0", "--out", str(tmp_path / "eval")])
    info = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    widened = dict(info["widened"])
    assert (
        widened and all(1.0 < factor <= 3.0 for factor in widened.values()) and info["widen"]["gate"] == 0.85
    )
    with (tmp_path / "eval" / "pred.csv").open() as f:
        read = {int(row["image_id"]): int(row["pred_label"]) for row in csv.DictReader(f)}
    cpu = torch.device("cpu")
    service, unwidened = (
        Predictor.load(SHIPPED_CHECKPOINT, cpu),
        Predictor.load(SHIPPED_CHECKPOINT, cpu, widen_gate=0),
    )
    differ = 0
    for image in doc["images"]:
        pixels = np.array(Image.open(side / image["file_name"]).convert("RGB"))
        assert read[image["id"]] == service.assemble(service.detect([pixels])[0].sites).value
        differ += read[image["id"]] != unwidened.assemble(unwidened.detect([pixels])[0].sites).value
    assert 0 < differ <= len(widened)  # widening changed readings, and only those of photos widened


def test_tinted_hazy_grainy_and_blurred_photos_are_read_prepared_as_the_service_reads_them(
    synth_dir: Path, tmp_path: Path
) -> None:
    # the 40 synthetic training photos: on the 8 valid ones alone the steps may change no reading
    doc = json.loads((synth_dir / "train.json").read_text())
    poor = tmp_path / "data" / "poor"
    poor.mkdir(parents=True)
    rng, made_grainy, made_blurred, made_hazy, made_orange = np.random.default_rng(0), [], [], [], []
    for i, image in enumerate(doc["images"]):
        photo = Image.open(synth_dir / "train" / image["file_name"]).convert("RGB")
        if i % 4 == 1:  # a quarter blurred by 2.5 px
            photo = photo.filter(ImageFilter.GaussianBlur(2.5))
            made_blurred.append(image["id"])
        if i % 4 == 3:  # the last quarter behind a veil of 85 %: a spread of 15 % of its own
            photo = haze(photo, 0.85)
            made_hazy.append(image["id"])
        if i % 8 == 7:  # half of those under a street lamp too
            photo = sodium(photo, 1.0)
            made_orange.append(image["id"])
        pixels = np.array(photo)
        if i % 4 in (0, 2):  # half with grain of 30 grey levels per channel
            pixels = np.clip(np.rint(pixels + rng.normal(0, 30, pixels.shape)), 0, 255).astype(np.uint8)
            made_grainy.append(image["id"])
        Image.fromarray(pixels).save(poor / image["file_name"])
    (tmp_path / "data" / "poor.json").write_text(json.dumps(doc))
    common = ["--checkpoint", str(SHIPPED_CHECKPOINT), "--data", str(tmp_path / "data"), "--split", "poor"]
    evaluate.main([*common, "--workers", "0", "--sharpen-gate", "0.6", "--out", str(tmp_path / "eval")])
    info = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    # a photo the stretch leaves grainy is smoothed too: the hazy ones may be
    smoothed = set(info["grain_smoothed"])
    assert (
        set(made_grainy) <= smoothed <= set(made_grainy) | set(made_hazy)
        and info["grain"]["threshold"] == 7.0
    )
    assert sorted(info["sharpened"]) == sorted(made_blurred) and info["focus"]["gate"] == 0.6
    # every photo under a street lamp is balanced, and so is any other as tinted
    saved = {
        image["id"]: np.array(Image.open(poor / image["file_name"]).convert("RGB")) for image in doc["images"]
    }
    tinted = sorted(i for i, pixels in saved.items() if colour_cast(channel_means(pixels)) > 3.0)
    balanced = sorted(info["colour_balanced"])
    assert set(made_orange) <= set(balanced) and balanced == tinted and info["balance"]["gate"] == 3.0
    # every hazy photo is stretched, and so is any other as narrow (a blurred synthetic photo may be),
    # as the balance leaves it
    narrow = [
        i
        for i, pixels in saved.items()
        if np.subtract(*luma_spread(balance_colour(pixels, BalanceParams()))[::-1]) < 64
    ]
    stretched = sorted(info["levels_stretched"])
    assert set(made_hazy) <= set(stretched) and stretched == sorted(narrow) and info["levels"]["gate"] == 64.0
    with (tmp_path / "eval" / "pred.csv").open() as f:
        read = {int(row["image_id"]): int(row["pred_label"]) for row in csv.DictReader(f)}
    service = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"), sharpen_gate=0.6)
    plain = Predictor.load(
        SHIPPED_CHECKPOINT,
        torch.device("cpu"),
        grain_threshold=0.0,
        sharpen_gate=0.0,
        levels_gate=0.0,
        balance_gate=0.0,
    )
    differ = 0
    for image in doc["images"]:
        pixels = np.array(Image.open(tmp_path / "data" / "poor" / image["file_name"]).convert("RGB"))
        assert read[image["id"]] == service.assemble(service.detect([pixels])[0].sites).value
        differ += read[image["id"]] != plain.assemble(plain.detect([pixels])[0].sites).value
    assert differ > 0  # the steps changed readings, so the match above tells the two ways apart


def test_format_confirmation_prints_a_row_per_min_score_with_the_default_starred() -> None:
    report = {
        "pairs": {"label": 10, "neighbour": 40},
        "rows": [
            {"min_score": None, "label": 0.8, "neighbour": 0.0},
            {"min_score": 0.2, "label": 0.9, "neighbour": 0.025},
            {"min_score": 0.1, "label": 0.95, "neighbour": 0.05},
        ],
        "street": [
            {"min_score": None, "right": 8, "wrong": 0, "none": 2},
            {"min_score": 0.2, "right": 9, "wrong": 1, "none": 0},
            {"min_score": 0.1, "right": 9, "wrong": 1, "none": 0},
        ],
    }
    lines = evaluate.format_confirmation(report, 0.2).splitlines()
    assert lines[1].split() == ["min_score", "label", "neighbour"]
    assert [line.split() for line in lines[2:5]] == [
        ["read", "only", "0.8000", "0.0000"],
        ["0.2", "*", "0.9000", "0.0250"],
        ["0.1", "0.9500", "0.0500"],
    ]
    assert [line.split() for line in lines[7:]] == [
        ["read", "only", "8", "0", "2"],
        ["0.2", "*", "9", "1", "0"],
        ["0.1", "9", "1", "0"],
    ]
