"""models.int8: calibrated int8 ranges, their storage, and a detector, reader and box refiner that run on
them."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN

from models.checkpoint import save_checkpoint
from models.detector import DETECTOR_PRESETS, build_detector
from models.int8 import (
    INT8_META,
    INT8_STATS,
    Int8Error,
    Int8Meta,
    calibrate_crop_net,
    calibrate_detector,
    checkpoint_int8,
    copy_int8,
    has_int8,
    int8_parts,
    is_quantized,
    load_int8,
    quantize_crop_net,
    quantize_detector,
    save_int8,
)
from models.optimize import (
    load_prepared_detector,
    load_prepared_reader,
    load_prepared_refiner,
    prepare_for_inference,
)
from models.reader import DigitReader, save_reader
from models.refiner import BoxRefiner, RefineParams, crop_boxes, save_refiner
from models.reread import CropSpec, RereadParams, crop_digits
from service.imaging import to_model_input
from tests.helpers import randomise_batchnorm
from training.synth import render_sample

CPU = torch.device("cpu")


def _detector(seed: int = 0) -> FasterRCNN:
    torch.manual_seed(seed)
    model = build_detector(DETECTOR_PRESETS["fast"]).eval()
    randomise_batchnorm(model, seed)
    return prepare_for_inference(model, CPU)


def _images(seeds: range) -> list[torch.Tensor]:
    return [to_model_input(np.array(render_sample(seed).image)) for seed in seeds]


@pytest.fixture(scope="module")
def detector() -> FasterRCNN:
    return _detector()


@pytest.fixture(scope="module")
def stats(detector: FasterRCNN) -> dict[str, torch.Tensor]:
    return calibrate_detector(detector, _images(range(6)))


def _features(model: FasterRCNN, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return dict(model.backbone(model.transform([image])[0].tensors))


def test_calibration_gives_a_scale_and_zero_point_per_activation(stats: dict[str, torch.Tensor]) -> None:
    scales = {k: v for k, v in stats.items() if k.endswith(".scale")}
    zero_points = {k: v for k, v in stats.items() if k.endswith(".zero_point")}
    assert len(scales) == len(zero_points) == len(stats) // 2 > 20
    assert {k.split(".")[0] for k in stats} == {"backbone", "rpn_conv"}
    assert all(v.shape == (1,) and v.dtype == torch.float32 and v.item() > 0 for v in scales.values())
    # 7-bit activations (x86 on AVX2): zero points within [0, 127]
    assert all(0 <= v.item() <= 127 and v.dtype == torch.int64 for v in zero_points.values())


def test_calibration_leaves_the_model_as_it_was(detector: FasterRCNN) -> None:
    image = _images(range(7, 8))[0]
    before = _features(detector, image)
    calibrate_detector(detector, [image])
    after = _features(detector, image)
    assert not is_quantized(detector)
    for name in before:
        assert torch.equal(before[name], after[name])


def test_calibration_needs_an_image(detector: FasterRCNN) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        calibrate_detector(detector, [])


def test_quantized_backbone_computes_close_features(
    detector: FasterRCNN, stats: dict[str, torch.Tensor]
) -> None:
    quantized = quantize_detector(copy.deepcopy(detector), stats)
    assert is_quantized(quantized) and not is_quantized(detector)
    for part in (quantized.backbone, quantized.rpn.head.conv, quantized.roi_heads.box_head):
        assert is_quantized(part)
    # the layers that set the scores and box deltas stay float
    for part in (
        quantized.rpn.head.cls_logits,
        quantized.rpn.head.bbox_pred,
        quantized.roi_heads.box_predictor,
    ):
        assert not is_quantized(part)
    image = _images(range(20, 21))[0]  # not one of the calibration images
    want, got = _features(detector, image), _features(quantized, image)
    assert want.keys() == got.keys()
    for name in want:
        error = (got[name] - want[name]).norm() / want[name].norm()
        # int8 with these ranges: a few per cent; with the default ranges (scale 1, what loading
        # nothing would leave) every feature rounds to ~0 and the error is ~1
        assert error < 0.1, (name, error.item())


def test_quantized_detector_answers_in_the_same_format(
    detector: FasterRCNN, stats: dict[str, torch.Tensor]
) -> None:
    quantized = quantize_detector(copy.deepcopy(detector), stats)
    images = _images(range(20, 23))
    with torch.inference_mode():
        outputs = quantized(images)
    assert len(outputs) == 3
    for image, out in zip(images, outputs, strict=True):
        assert set(out) == {"boxes", "labels", "scores"}
        assert out["boxes"].dtype == torch.float32 and out["boxes"].shape[1:] == (4,)
        if len(out["boxes"]):
            assert (out["boxes"][:, 2] <= image.shape[2] + 1e-3).all()


def test_stats_that_do_not_fit_are_refused(detector: FasterRCNN, stats: dict[str, torch.Tensor]) -> None:
    missing = dict(list(stats.items())[1:])
    with pytest.raises(Int8Error, match="do not fit"):
        quantize_detector(copy.deepcopy(detector), missing)
    extra = {**stats, "backbone.activation_post_process_999.scale": torch.ones(1)}
    with pytest.raises(Int8Error, match="unexpected"):
        quantize_detector(copy.deepcopy(detector), extra)


def test_saved_stats_load_back_and_give_the_same_model(
    tmp_path: Path, detector: FasterRCNN, stats: dict[str, torch.Tensor]
) -> None:
    meta = save_int8(tmp_path, stats, detector_sha256="abc", calibration_images=6, calibration="synthetic")
    assert has_int8(tmp_path) and (tmp_path / INT8_STATS).stat().st_size < 20_000
    loaded, read = load_int8(tmp_path)
    assert read == meta and read.calibration_images == 6 and read.engine == "x86"
    assert loaded.keys() == stats.keys() and all(torch.equal(loaded[k], stats[k]) for k in stats)
    image = _images(range(30, 31))[0]
    a = _features(quantize_detector(copy.deepcopy(detector), stats), image)
    b = _features(quantize_detector(copy.deepcopy(detector), loaded), image)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_altered_stats_file_is_refused(tmp_path: Path, stats: dict[str, torch.Tensor]) -> None:
    save_int8(tmp_path, stats, detector_sha256="abc", calibration_images=6)
    raw = bytearray((tmp_path / INT8_STATS).read_bytes())
    raw[-3] ^= 0xFF
    (tmp_path / INT8_STATS).write_bytes(bytes(raw))
    with pytest.raises(Int8Error, match="sha256"):
        load_int8(tmp_path)
    (tmp_path / INT8_META).write_text("{}")
    with pytest.raises(Int8Error, match="cannot load"):
        load_int8(tmp_path)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_detector(DETECTOR_PRESETS["fast"]).eval()
    randomise_batchnorm(model)
    return save_checkpoint(tmp_path / "ck", model, DETECTOR_PRESETS["fast"])


def _calibrate_into(checkpoint: Path) -> None:
    model, meta, _ = load_prepared_detector(checkpoint, CPU, use_int8=False)
    stats = calibrate_detector(model, _images(range(4)))
    save_int8(checkpoint, stats, detector_sha256=meta.weights_sha256, calibration_images=4)


def test_a_checkpoint_with_ranges_loads_in_int8_on_the_cpu(checkpoint: Path) -> None:
    plain, _, none = load_prepared_detector(checkpoint, CPU)
    assert none is None and not is_quantized(plain)
    _calibrate_into(checkpoint)
    model, meta, int8 = load_prepared_detector(checkpoint, CPU)
    assert int8 is not None and int8.detector_sha256 == meta.weights_sha256 and is_quantized(model)
    float_again, _, off = load_prepared_detector(checkpoint, CPU, use_int8=False)
    assert off is None and not is_quantized(float_again)


def test_ranges_measured_on_other_weights_are_refused(checkpoint: Path) -> None:
    _calibrate_into(checkpoint)
    doc = json.loads((checkpoint / INT8_META).read_text())
    (checkpoint / INT8_META).write_text(json.dumps({**doc, "detector_sha256": "0" * 64}))
    with pytest.raises(Int8Error, match="other detector weights"):
        load_prepared_detector(checkpoint, CPU)
    model, _, int8 = load_prepared_detector(checkpoint, CPU, use_int8=False)  # not read when not used
    assert int8 is None and not is_quantized(model)
    with pytest.raises(Int8Error, match="other detector weights"):
        checkpoint_int8(checkpoint, "1" * 64)


def test_copy_int8_moves_the_ranges_to_new_weights(checkpoint: Path, tmp_path: Path) -> None:
    assert copy_int8(checkpoint, tmp_path / "none", "f" * 64) is None
    _calibrate_into(checkpoint)
    copied = copy_int8(checkpoint, tmp_path / "copy", "f" * 64)
    assert copied is not None and copied.detector_sha256 == "f" * 64 and copied.calibration_images == 4
    assert torch.equal(
        torch.cat(list(load_int8(tmp_path / "copy")[0].values())),
        torch.cat(list(load_int8(checkpoint)[0].values())),
    )


def test_is_quantized_tells_a_float_model_from_an_int8_one() -> None:
    assert not is_quantized(nn.Sequential(nn.Linear(2, 2), nn.Conv2d(2, 2, 1)))
    with warnings.catch_warnings():  # torch.ao's deprecation notices
        warnings.simplefilter("ignore")
        linear = torch.ao.nn.quantized.Linear(2, 2)
        conv_relu = torch.ao.nn.intrinsic.quantized.ConvReLU2d(2, 2, 1)
    assert is_quantized(nn.Sequential(nn.Linear(2, 2), linear))
    assert is_quantized(nn.Sequential(conv_relu))  # fused layers too


# --- the crop networks (reader, box refiner): model card experiment 42 ---


def _crop_nets(seed: int = 0) -> tuple[DigitReader, BoxRefiner]:
    torch.manual_seed(seed)
    reader, refiner = DigitReader(width=8).eval(), BoxRefiner(width=8, fit_head=True).eval()
    for net in (reader, refiner):
        randomise_batchnorm(net, seed)
    return prepare_for_inference(reader, CPU), prepare_for_inference(refiner, CPU)


def _sample_crops(seeds: range, params: RefineParams) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Reader and refiner crops of the digits of synthetic house numbers, a batch per image."""
    reads, refines = [], []
    for seed in seeds:
        sample = render_sample(seed)
        image, boxes = to_model_input(np.array(sample.image)), [box for _, box in sample.digits]
        reads.append(crop_digits(image, boxes, CropSpec()))
        refines.append(crop_boxes(image, boxes, params))
    return reads, refines


def test_crop_net_calibration_measures_every_activation_and_changes_nothing() -> None:
    reader, refiner = _crop_nets()
    reads, refines = _sample_crops(range(4), RefineParams(size=32))
    with torch.inference_mode():
        before = reader(reads[0])
    stats = calibrate_crop_net(reader, "reader", [torch.zeros(0, 3, 32, 32), *reads])  # empty batches pass
    with torch.inference_mode():
        assert torch.equal(reader(reads[0]), before) and not is_quantized(reader)
    assert {k.split(".")[0] for k in stats} == {"reader"} and len(stats) % 2 == 0 and len(stats) >= 10
    assert {k.split(".")[0] for k in calibrate_crop_net(refiner, "refiner", refines)} == {"refiner"}
    with pytest.raises(ValueError, match="at least one crop"):
        calibrate_crop_net(reader, "reader", [torch.zeros(0, 3, 32, 32)])
    with pytest.raises(ValueError, match="no crop network called 'detector'"):
        calibrate_crop_net(reader, "detector", reads)


def test_quantized_crop_nets_answer_close_to_float() -> None:
    reader, refiner = _crop_nets()
    params = RefineParams(size=32)
    reads, refines = _sample_crops(range(6), params)
    held_reads, held_refines = _sample_crops(range(40, 42), params)  # not calibrated on
    for net, name, calibrate_on, held in (
        (reader, "reader", reads, held_reads),
        (refiner, "refiner", refines, held_refines),
    ):
        quantized = quantize_crop_net(copy.deepcopy(net), name, calibrate_crop_net(net, name, calibrate_on))
        assert is_quantized(quantized.features) and not is_quantized(quantized.head)
        batch = torch.cat(held)
        with torch.inference_mode():
            want, got = net(batch), quantized(batch)
        assert got.shape == want.shape and got.dtype == torch.float32
        # a few per cent; with the default ranges (scale 1) every activation rounds to ~0, error ~1
        error = (got - want).norm() / want.norm()
        assert error < 0.1, (name, error.item())


def test_crop_net_ranges_that_do_not_fit_are_refused() -> None:
    reader, _ = _crop_nets()
    reads, _ = _sample_crops(range(2), RefineParams())
    stats = calibrate_crop_net(reader, "reader", reads)
    with pytest.raises(Int8Error, match="do not fit this reader"):
        quantize_crop_net(DigitReader(width=8).eval(), "reader", dict(list(stats.items())[2:]))
    with pytest.raises(Int8Error, match="do not fit this refiner"):
        quantize_crop_net(copy.deepcopy(reader), "refiner", stats)  # stored under another name


def _crop_net_checkpoint(folder: Path) -> tuple[str, str]:
    """Give the checkpoint `folder` a reader and a box refiner, and int8 ranges for them and its
    detector; returns the reader's and the refiner's weights sha256."""
    reader, refiner = DigitReader(width=8), BoxRefiner(width=8, fit_head=True)
    for net in (reader, refiner):
        randomise_batchnorm(net)
    params = RefineParams(size=32)
    read_meta = save_reader(folder, reader, CropSpec(), RereadParams())
    refine_meta = save_refiner(folder, refiner, params)
    loaded_reader, loaded_refiner = load_prepared_reader(folder, CPU), load_prepared_refiner(folder, CPU)
    assert loaded_reader is not None and loaded_refiner is not None
    reads, refines = _sample_crops(range(3), params)
    model, meta, _ = load_prepared_detector(folder, CPU, use_int8=False)
    stats = calibrate_detector(model, _images(range(2)))
    stats |= calibrate_crop_net(loaded_reader[0], "reader", reads)
    stats |= calibrate_crop_net(loaded_refiner[0], "refiner", refines)
    nets = {"reader": read_meta.sha256, "refiner": refine_meta.sha256}
    sha = meta.weights_sha256
    written = save_int8(folder, stats, detector_sha256=sha, calibration_images=2, crop_nets=nets)
    assert load_int8(folder)[1] == written and written.crop_nets == nets
    return read_meta.sha256, refine_meta.sha256


def test_a_checkpoint_with_crop_net_ranges_loads_them_in_int8(checkpoint: Path) -> None:
    _crop_net_checkpoint(checkpoint)
    reader, refiner = load_prepared_reader(checkpoint, CPU), load_prepared_refiner(checkpoint, CPU)
    assert reader is not None and refiner is not None
    assert is_quantized(reader[0]) and is_quantized(refiner[0])
    plain_reader = load_prepared_reader(checkpoint, CPU, use_int8=False)
    plain_refiner = load_prepared_refiner(checkpoint, CPU, use_int8=False)
    assert plain_reader is not None and not is_quantized(plain_reader[0])
    assert plain_refiner is not None and not is_quantized(plain_refiner[0])
    detector, _, _ = load_prepared_detector(checkpoint, CPU)
    parts = {"detector": detector, "refiner": refiner[0], "reader": None}
    assert int8_parts(parts) == ["detector", "refiner"]
    assert int8_parts({**parts, "detector": plain_reader[0]}) == ["refiner"]


def test_crop_net_ranges_measured_on_other_weights_leave_it_in_float(
    checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _crop_net_checkpoint(checkpoint)
    save_reader(checkpoint, DigitReader(width=8), CropSpec(), RereadParams())  # a new reader, same shape
    with caplog.at_level(logging.WARNING, logger="models.int8"):
        reader = load_prepared_reader(checkpoint, CPU)
        refiner = load_prepared_refiner(checkpoint, CPU)
    assert reader is not None and not is_quantized(reader[0])
    assert refiner is not None and is_quantized(refiner[0])  # its weights are those measured
    assert "ranges of the reader were measured on other weights" in caplog.text
    assert "refiner" not in caplog.text


def test_crop_net_ranges_travel_with_copy_int8_and_only_known_nets_are_written(
    checkpoint: Path, tmp_path: Path, stats: dict[str, torch.Tensor]
) -> None:
    reader_sha, refiner_sha = _crop_net_checkpoint(checkpoint)
    copied = copy_int8(checkpoint, tmp_path / "copy", "f" * 64)
    assert copied is not None and copied.crop_nets == {"reader": reader_sha, "refiner": refiner_sha}
    with pytest.raises(ValueError, match="no crop network called rescorer"):
        save_int8(tmp_path, stats, detector_sha256="a", calibration_images=1, crop_nets={"rescorer": "0"})
    doc = json.loads((checkpoint / INT8_META).read_text())
    del doc["crop_nets"]  # a part written before experiment 42
    assert Int8Meta.from_dict(doc).crop_nets == {}
