"""The Predictor with and without the checkpoint's reader, box refiner and rescorer: what `detect` gives back,
and the routes that read numbers from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.assembly import Detection
from models.checkpoint import read_checkpoint_meta
from models.grain import grain_sigma, smooth_grain
from models.int8 import is_quantized
from models.reread import Findings
from models.rescorer import detection_features
from models.verifier import FEATURE_NAMES, NumberVerifier, VerifierMeta
from models.widen import TYPICAL_ASPECT
from service.imaging import MAX_ASPECT_RATIO
from service.pipeline import to_schema
from service.predictor import Predictor
from tests.service.conftest import StartClient, noise_png
from tests.service.test_app import files
from training.synth import render_sample


def _noise(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (56, 126, 3), dtype=np.uint8)


def test_without_a_reader_the_sites_are_the_detections(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"))
    assert predictor.reader is None
    found = predictor.detect([_noise(0)])[0]
    assert found.sites == found.detections and found.detections


def test_a_grainy_photo_is_read_smoothed_and_a_clean_one_as_it_is(tiny_checkpoint: Path) -> None:
    smoothing = Predictor.load(tiny_checkpoint, torch.device("cpu"))
    # no step at all: the smoothed noise below has a narrow spread, which the stretch would widen
    plain = Predictor.load(
        tiny_checkpoint, torch.device("cpu"), grain_threshold=0.0, levels_gate=0.0, balance_gate=0.0
    )
    photo = _noise(1)  # uniform noise: grain ~50 grey levels
    assert grain_sigma(photo) > smoothing.grain.threshold and not plain.grain.on
    smoothed = smooth_grain(photo, smoothing.grain)
    assert not np.array_equal(smoothed, photo)
    assert smoothing.detect([photo])[0] == plain.detect([smoothed])[0]
    assert smoothing.detect([photo])[0] != plain.detect([photo])[0]
    clean = np.full((56, 126, 3), 128, dtype=np.uint8)
    assert smoothing.detect([clean])[0] == plain.detect([clean])[0]


def test_thresholds_come_from_the_checkpoint_unless_overridden(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"))
    assert predictor.assembly == read_checkpoint_meta(tiny_checkpoint).assembly
    assert predictor.assembly.height_ratio == 0.0
    ruled = Predictor.load(tiny_checkpoint, torch.device("cpu"), height_ratio=1.6, score_threshold=0.5)
    assert (ruled.assembly.height_ratio, ruled.assembly.score_threshold) == (1.6, 0.5)
    assert predictor.assembly.read_columns is True
    assert (
        Predictor.load(tiny_checkpoint, torch.device("cpu"), read_columns=False).assembly.read_columns
        is False
    )


def _fixed_model(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """The detector's output format: a 1 (0.45) and a 7 (0.35) on one place, a 4 (0.9) right of it."""
    boxes = torch.tensor([[10.0, 10, 30, 50], [11, 10, 31, 50], [40, 10, 60, 50]])
    out = {"boxes": boxes, "labels": torch.tensor([2, 8, 5]), "scores": torch.tensor([0.45, 0.35, 0.9])}
    return [out for _ in images]


def _leans_to_seven(crops: torch.Tensor) -> torch.Tensor:
    """A reader that gives 7 a probability of 0.69 on every crop."""
    logits = torch.zeros(len(crops), 10)
    logits[:, 7] = 3.0
    return logits


def _fix(predictor: Predictor) -> Predictor:
    predictor.model = _fixed_model  # type: ignore[assignment]
    if predictor.reader is not None:
        predictor.reader = (_leans_to_seven, predictor.reader[1])  # type: ignore[assignment]
    return predictor


def test_the_reader_reads_one_digit_per_place(tiny_checkpoint_with_reader: Path) -> None:
    predictor = _fix(Predictor.load(tiny_checkpoint_with_reader, torch.device("cpu")))
    found = predictor.detect([_noise(0)])[0]
    assert len(found.detections) == 3
    assert [(s.digit, round(s.score, 4)) for s in found.sites] == [(4, 0.9), (7, 0.8)]
    assert (
        predictor.assemble(found.sites).text == "74"
    )  # the split digit survives, read as the reader sees it
    plain = _fix(Predictor.load(tiny_checkpoint_with_reader, torch.device("cpu"), use_reader=False))
    assert plain.reader is None
    assert plain.assemble(plain.detect([_noise(0)])[0].sites).text == "4"


def test_recognize_reads_the_sites_that_assemble_takes(
    start_client: StartClient, tiny_checkpoint_with_reader: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_reader)
    assert client.get("/v1/model").json()["reader"]["crop"] == {"size": 24, "context": 1.3}
    _fix(client.app.state.service.predictor)  # type: ignore[attr-defined]
    image = noise_png(seed=3)
    detected = client.post("/v1/detect", files=files(image)).json()["results"][0]
    assert (len(detected["detections"]), len(detected["sites"])) == (3, 2)
    recognized = client.post("/v1/recognize", files=files(image)).json()["results"][0]
    assembled = client.post("/v1/assemble", json={"detections": detected["sites"]}).json()
    assert recognized["text"] == assembled["text"] == "74"
    assert [d["bbox"] for d in recognized["digits"]] == [d["bbox"] for d in assembled["digits"]]


def test_use_reader_setting_turns_it_off(
    start_client: StartClient, tiny_checkpoint_with_reader: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_reader, use_reader=False)
    assert client.get("/v1/model").json()["reader"] is None
    result = client.post("/v1/detect", files=files(noise_png(seed=3))).json()["results"][0]
    assert result["sites"] == result["detections"]


def _widens_left(crops: torch.Tensor) -> torch.Tensor:
    """A refiner that moves every box's left edge left by 0.2 of its width."""
    deltas = torch.zeros(len(crops), 4)
    deltas[:, 0] = -0.2
    return deltas


def test_the_refiner_moves_the_boxes_before_the_reader_reads_them(tiny_checkpoint_with_refiner: Path) -> None:
    predictor = _fix(Predictor.load(tiny_checkpoint_with_refiner, torch.device("cpu")))
    assert predictor.refiner is not None and predictor.refiner[1].params.step == 0.5
    predictor.refiner = (_widens_left, predictor.refiner[1])  # type: ignore[assignment]
    found = predictor.detect([_noise(0)])[0]
    assert [d.box_xyxy for d in found.detections] == [
        pytest.approx((8.0, 10.0, 30.0, 50.0)),
        pytest.approx((9.0, 10.0, 31.0, 50.0)),
        pytest.approx((38.0, 10.0, 60.0, 50.0)),
    ]
    assert [d.digit for d in found.detections] == [1, 7, 4]
    assert [s.box_xyxy for s in found.sites] == [
        pytest.approx((38.0, 10.0, 60.0, 50.0)),
        pytest.approx((8.0, 10.0, 30.0, 50.0)),
    ]
    assert predictor.assemble(found.sites).text == "74"
    plain = _fix(Predictor.load(tiny_checkpoint_with_refiner, torch.device("cpu"), use_refiner=False))
    assert plain.refiner is None
    assert plain.detect([_noise(0)])[0].detections[0].box_xyxy == (10.0, 10.0, 30.0, 50.0)


def test_a_fit_head_judges_every_detection_and_the_api_shows_it(tiny_checkpoint_with_refiner: Path) -> None:
    predictor = _fix(Predictor.load(tiny_checkpoint_with_refiner, torch.device("cpu")))
    found = predictor.detect([_noise(0)])[0]
    fits = [d.fit for d in found.detections]
    assert len(fits) == 3 and all(f is not None and 0.0 < f < 1.0 for f in fits)
    assert [d.score for d in found.detections] == pytest.approx([0.45, 0.35, 0.9])  # scores kept
    shown = to_schema(found.detections[0])
    assert shown.fit == pytest.approx(fits[0], abs=1e-5) and shown.score == pytest.approx(0.45)
    assert all(s.fit is None for s in found.sites)  # sites are read, not ranked
    assert to_schema(found.sites[0]).fit is None


def test_use_refiner_setting_turns_it_off(
    start_client: StartClient, tiny_checkpoint_with_refiner: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_refiner)
    assert client.get("/v1/model").json()["refiner"]["params"] == {
        "size": 24,
        "context": 1.6,
        "step": 0.5,
        "min_score": 0.0,
        "box_channel": True,
    }
    off = start_client(checkpoint=tiny_checkpoint_with_refiner, use_refiner=False)
    assert off.get("/v1/model").json()["refiner"] is None


def test_a_rescorer_judges_every_refined_detection_and_the_api_shows_it(
    tiny_checkpoint_with_rescorer: Path,
) -> None:
    predictor = _fix(Predictor.load(tiny_checkpoint_with_rescorer, torch.device("cpu")))
    assert predictor.rescorer is not None and predictor.rescorer[1].members == 2
    found = predictor.detect([_noise(0)])[0]
    assert [d.score for d in found.detections] == pytest.approx([0.45, 0.35, 0.9])  # scores kept
    readings = _leans_to_seven(torch.zeros(3, 3, 24, 24)).softmax(1)  # the same for every crop
    plain = [replace(d, quality=None) for d in found.detections]
    expected = predictor.rescorer[0](detection_features(plain, 126, 56, readings))
    assert [d.quality for d in found.detections] == pytest.approx(expected.tolist())
    unranked = _fix(Predictor.load(tiny_checkpoint_with_rescorer, torch.device("cpu"), use_rescorer=False))
    assert unranked.detect([_noise(0)])[0].sites == found.sites  # the sites reuse the boxes' readings
    assert to_schema(found.detections[0]).quality == pytest.approx(found.detections[0].quality, abs=1e-5)
    assert all(s.quality is None for s in found.sites) and to_schema(found.sites[0]).quality is None
    assert (
        Predictor.load(tiny_checkpoint_with_rescorer, torch.device("cpu"), use_rescorer=False).rescorer
        is None
    )
    assert (
        Predictor.load(tiny_checkpoint_with_rescorer, torch.device("cpu"), use_refiner=False).rescorer is None
    )


def test_use_rescorer_setting_turns_it_off(
    start_client: StartClient, tiny_checkpoint_with_rescorer: Path
) -> None:
    client = start_client(checkpoint=tiny_checkpoint_with_rescorer)
    assert client.get("/v1/model").json()["rescorer"]["members"] == 2
    detections = client.post("/v1/detect", files=files(noise_png(seed=3))).json()["results"][0]["detections"]
    assert detections and all(0.0 < d["quality"] < 1.0 for d in detections)
    off = start_client(checkpoint=tiny_checkpoint_with_rescorer, use_rescorer=False)
    assert off.get("/v1/model").json()["rescorer"] is None
    result = off.post("/v1/detect", files=files(noise_png(seed=3))).json()["results"][0]
    assert len(result["detections"]) == len(detections) and all(
        d["quality"] is None for d in result["detections"]
    )


def test_every_part_takes_strips_at_the_aspect_ratio_limit(tiny_checkpoint_with_rescorer: Path) -> None:
    """The upload limit (service.imaging.MAX_ASPECT_RATIO) lets through only images the model can
    take: past max_size:1 the detector would scale the shorter side under one pixel and fail."""
    predictor = Predictor.load(tiny_checkpoint_with_rescorer, torch.device("cpu"))
    assert predictor.meta.detector.max_size > MAX_ASPECT_RATIO
    side, long_side = 8, int(MAX_ASPECT_RATIO * 8)
    wide = np.full((side, long_side, 3), 200, np.uint8)
    wide[:, ::7] = 20  # stripes: something to propose boxes on
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    found = predictor.detect([wide, tall])
    assert len(found) == 2
    for image, findings in zip((wide, tall), found, strict=True):
        height, width = image.shape[:2]
        assert all(0 <= d.box_xyxy[0] <= d.box_xyxy[2] <= width for d in findings.detections)
        assert all(0 <= d.box_xyxy[1] <= d.box_xyxy[3] <= height for d in findings.detections)


def test_int8_ranges_run_the_detector_in_int8_and_the_api_shows_it(
    start_client: StartClient, tiny_checkpoint_with_int8: Path
) -> None:
    predictor = Predictor.load(tiny_checkpoint_with_int8, torch.device("cpu"))
    assert predictor.int8 is not None and predictor.int8.calibration_images == 3
    assert is_quantized(predictor.model)
    found = predictor.detect([_noise(0), _noise(1)])
    assert len(found) == 2
    plain = Predictor.load(tiny_checkpoint_with_int8, torch.device("cpu"), use_int8=False)
    assert plain.int8 is None and not is_quantized(plain.model)
    client = start_client(checkpoint=tiny_checkpoint_with_int8)
    info = client.get("/v1/model").json()
    assert info["int8"]["calibration_images"] == 3 and info["int8_parts"] == ["detector"]
    assert client.post("/v1/detect", files=files(noise_png(seed=3))).status_code == 200
    off = start_client(checkpoint=tiny_checkpoint_with_int8, use_int8=False)
    assert off.get("/v1/model").json()["int8"] is None and off.get("/v1/model").json()["int8_parts"] == []


def test_an_images_answer_does_not_depend_on_its_batch(tiny_checkpoint_with_int8: Path) -> None:
    """Under load the service batches requests: in int8 too (whose box head scales its input over all
    it is given), each image gets exactly the detections it gets when sent alone."""
    predictor = Predictor.load(tiny_checkpoint_with_int8, torch.device("cpu"))
    assert is_quantized(predictor.model)
    images = [np.array(render_sample(seed).image) for seed in range(4)]
    assert len({image.shape for image in images}) > 1  # sizes differ: a batch would be padded
    together = predictor.detect(images)
    alone = [predictor.detect([image])[0] for image in images]
    assert sum(len(f.detections) for f in alone) > 0 and together == alone


class _Spy:
    """`_fixed_model` with the real detector's transform and NMS setting (which models.zoom reads),
    recording the size of every image it is called on."""

    def __init__(self, real: object) -> None:
        self.transform, self.roi_heads = real.transform, real.roi_heads  # type: ignore[attr-defined]
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.sizes += [(int(x.shape[-2]), int(x.shape[-1])) for x in images]
        return _fixed_model(images)


def _sure(p: float) -> tuple[NumberVerifier, VerifierMeta]:
    """A verifier whose p_correct is `p` for every reading."""
    return NumberVerifier((0.0,) * 5, (1.0,) * 5, (0.0,) * 5, math.log(p / (1 - p))), VerifierMeta({})


def _spied(checkpoint: Path, **zoom: float | bool) -> tuple[Predictor, _Spy]:
    predictor = Predictor.load(checkpoint, torch.device("cpu"), zoom_below_px=50, search_tiles=3, **zoom)
    spy = _Spy(predictor.model)
    predictor.model = spy  # type: ignore[assignment]
    return predictor, spy


@pytest.mark.parametrize(("p", "searched"), [(0.3, True), (0.95, False), (None, True)])
def test_a_gated_predictor_searches_only_large_photos_read_doubtfully(
    tiny_checkpoint: Path, p: float | None, searched: bool
) -> None:
    """Below `search_below_p` (0.8) the photo is read again with the 3 x 3 search, from the same first
    pass, and reads as when every photo is searched; at or above it, not, and reads as without the
    search; with no verifier for the gate (the tiny checkpoint has none), always."""
    predictor, spy = _spied(tiny_checkpoint, search_located=True, search_below_p=0.8)
    if p is not None:
        predictor.gate = _sure(p)
    assert predictor.zoom.gated and (predictor.gate is None) == (p is None)
    large = np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)
    found = predictor.detect([large, _noise(1)])
    assert spy.sizes.count((200, 300)) == (9 if searched else 0)  # the tiles of the large photo
    assert spy.sizes.count((400, 600)) == 1 and spy.sizes.count((56, 126)) == 1  # each first pass once
    alone, _ = _spied(tiny_checkpoint, search_located=searched)
    assert found[0] == alone.detect([large])[0] and found[1] == alone.detect([_noise(1)])[0]


def _digit(x: float, width: float, digit: int = 5) -> Detection:
    """A site 40 px high at x, `width` px wide, scoring 0.9."""
    return Detection(box_xyxy=(x, 8.0, x + width, 48.0), digit=digit, score=0.9)


class _Widths:
    """A stand-in for `Predictor._detect` that reads a 100 px wide photo as one 5 `first` of its usual
    width (its squeeze) and any wider photo as `wide(width)` gives, recording the widths it is given."""

    def __init__(self, wide: Callable[[int], list[Detection]], first: float = 0.5) -> None:
        self.wide, self.first, self.widths = wide, first, []  # type: list[int]

    def __call__(self, inputs: list[torch.Tensor]) -> list[Findings]:
        out = []
        for x in inputs:
            width = int(x.shape[-1])
            self.widths.append(width)
            found = [_digit(40, 40 * TYPICAL_ASPECT[5] * self.first)] if width == 100 else self.wide(width)
            out.append(Findings(found, found))
        return out


def _count_verifier() -> tuple[NumberVerifier, VerifierMeta]:
    """A verifier whose p_correct grows with the number's digit count (sigmoid of it)."""
    weights = tuple(1.0 if name == "digits" else 0.0 for name in FEATURE_NAMES)
    return NumberVerifier((0.0,) * 5, (1.0,) * 5, weights, 0.0), VerifierMeta({})


def test_narrow_digits_are_read_again_widened_and_the_boxes_drawn_back(tiny_checkpoint: Path) -> None:
    """A photo 100 px wide whose digit is half as wide as usual is read again 200 px wide; that reading
    (two digits of a usual width) is kept, its boxes drawn back into the photo's 100 px."""
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"), grain_threshold=0.0, levels_gate=0.0)
    usual = 40 * TYPICAL_ASPECT[5]
    spy = _Widths(lambda width: [_digit(40, usual), _digit(60, usual, 7)])
    predictor._detect = spy  # type: ignore[method-assign]
    photo = np.full((56, 100, 3), 128, dtype=np.uint8)
    found = predictor.detect([photo])[0]
    assert spy.widths == [100, 200]
    boxes = [coordinate for d in found.sites for coordinate in d.box_xyxy]
    assert boxes == pytest.approx([20.0, 8.0, 20.0 + usual / 2, 48.0, 30.0, 8.0, 30.0 + usual / 2, 48.0])
    assert predictor.assemble(found.sites).value == 57


def test_a_widened_reading_still_narrow_is_widened_again_from_the_photo(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"), grain_threshold=0.0, levels_gate=0.0)
    # at 200 px the digit is still 0.6 of its usual width there: 0.3 of it in the photo, so 1 / 0.3
    spy = _Widths(lambda width: [_digit(40, 40 * TYPICAL_ASPECT[5] * (0.6 if width == 200 else 1.0))])
    predictor._detect = spy  # type: ignore[method-assign]
    predictor.detect([np.full((56, 100, 3), 128, dtype=np.uint8)])
    assert spy.widths == [100, 200, 300]  # 1 / 0.3 = 3.33, capped at 3 x


def test_squat_digits_are_read_again_narrowed(tiny_checkpoint: Path) -> None:
    """A photo whose digit is 1.5 x as wide as usual for its height (seen from below) is read again
    67 px wide, and that reading kept, its boxes drawn back."""
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"), grain_threshold=0.0, levels_gate=0.0)
    usual = 40 * TYPICAL_ASPECT[5]
    spy = _Widths(lambda width: [_digit(10, usual), _digit(35, usual, 2)], first=1.5)
    predictor._detect = spy  # type: ignore[method-assign]
    found = predictor.detect([np.full((56, 100, 3), 128, dtype=np.uint8)])[0]
    assert spy.widths == [100, 67]
    assert (
        found.sites[0].box_xyxy[0] == pytest.approx(10 * 1.5) and predictor.assemble(found.sites).value == 52
    )


def test_the_reading_the_verifier_holds_likelier_right_is_kept(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, torch.device("cpu"), grain_threshold=0.0, levels_gate=0.0)
    predictor.verifier = _count_verifier()
    usual = 40 * TYPICAL_ASPECT[5]
    for widened, kept in (
        ([_digit(40, usual), _digit(60, usual, 7)], 57),
        ([], 5),
        ([_digit(40, usual, 3)], 5),
    ):
        predictor._detect = _Widths(lambda width, w=widened: w)  # type: ignore[method-assign]
        # two digits beat one; nothing read or one digit (as likely as the first reading) do not
        assert (
            predictor.assemble(predictor.detect([np.full((56, 100, 3), 128, np.uint8)])[0].sites).value
            == kept
        )


def test_digits_of_a_usual_width_or_the_gate_off_read_once(tiny_checkpoint: Path) -> None:
    cpu = torch.device("cpu")
    usual = Predictor.load(tiny_checkpoint, cpu, grain_threshold=0.0, levels_gate=0.0)
    off = Predictor.load(
        tiny_checkpoint, cpu, grain_threshold=0.0, levels_gate=0.0, widen_gate=0, squat_gate=0
    )
    for predictor, squeeze in ((usual, 0.9), (usual, 1.2), (off, 0.25), (off, 2.0)):
        spy = _Widths(lambda _width: [], first=squeeze)
        predictor._detect = spy  # type: ignore[method-assign]
        predictor.detect([np.full((56, 100, 3), 128, dtype=np.uint8)])
        assert spy.widths == [100]


def test_the_version_names_the_model_and_the_settings_that_answer(
    tiny_checkpoint: Path, tiny_checkpoint_with_reader: Path
) -> None:
    cpu = torch.device("cpu")
    version = Predictor.load(tiny_checkpoint, cpu).version
    assert len(version) == 12 and int(version, 16) >= 0
    assert Predictor.load(tiny_checkpoint, cpu).version == version  # loaded again: the same
    others = [
        Predictor.load(tiny_checkpoint, cpu, score_threshold=0.5),
        Predictor.load(tiny_checkpoint, cpu, zoom_below_px=10.0),
        Predictor.load(tiny_checkpoint, cpu, grain_threshold=0.0),
        Predictor.load(tiny_checkpoint, cpu, levels_gate=0.0),
        Predictor.load(tiny_checkpoint, cpu, balance_gate=0.0),
        Predictor.load(tiny_checkpoint, cpu, widen_gate=0.0),
        Predictor.load(tiny_checkpoint, cpu, squat_gate=0.0),
        Predictor.load(tiny_checkpoint_with_reader, cpu),  # the same detector with a reader
    ]
    versions = [p.version for p in others]
    assert version not in versions and len(set(versions)) == len(versions)
    # What answers, not where it lies: the same detector without the reader it comes with.
    assert Predictor.load(tiny_checkpoint_with_reader, cpu, use_reader=False).version == version


def test_every_reading_carries_the_version_v1_model_gives(start_client: StartClient) -> None:
    client = start_client()
    version = client.get("/v1/model").json()["version"]
    detected = client.post("/v1/detect", files=files(noise_png(seed=3)))
    recognized = client.post("/v1/recognize", files=files(noise_png(seed=3)))
    assert detected.headers["X-Model-Version"] == recognized.headers["X-Model-Version"] == version
    sites = detected.json()["results"][0]["sites"]
    assembled = client.post("/v1/assemble", json={"detections": sites})
    assert assembled.status_code == 200 and assembled.headers["X-Model-Version"] == version
    for other in (start_client(score_threshold=0.3), start_client(reduce_to_px=500)):
        reading = other.post("/v1/recognize", files=files(noise_png(seed=3)))
        assert reading.headers["X-Model-Version"] == other.get("/v1/model").json()["version"] != version
