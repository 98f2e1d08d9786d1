"""The checkpoint shipped in models/default: it verifies, loads, and reads real house numbers."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.assembly import assemble_number
from models.checkpoint import read_checkpoint_meta
from models.confirm import confirm_number
from models.hw2 import detections_to_coco
from models.int8 import checkpoint_int8, is_quantized
from models.reader import load_reader
from models.refiner import load_refiner
from models.rescorer import load_rescorer
from service.config import SHIPPED_CHECKPOINT, Settings
from service.imaging import decode_image
from service.predictor import Predictor, serving_version
from service.state import load_predictor
from tests.conftest import real_data
from training.audit import is_subsequence, photo_truth, read_audit
from training.columns import stack_digits
from training.data import load_coco_split
from training.degrade import oblique
from training.metrics import auc, coco_map, ground_truth_coco
from training.scenes import place_in_scene, place_in_strip
from training.synth import find_fonts, render_sample


def test_shipped_checkpoint_verifies_and_fits_the_size_budget() -> None:
    meta = read_checkpoint_meta(SHIPPED_CHECKPOINT)
    assert meta.weights_dtype == "float16"
    assert meta.zoom.enabled  # the second look at small numbers is part of the shipped model
    assert meta.assembly.height_ratio == 1.6  # and the assembly's height rule (experiment 21)
    _reader, reader_meta = load_reader(SHIPPED_CHECKPOINT)  # and so is the reader, verified here
    assert reader_meta.dtype == "float16" and reader_meta.reread.detector_weight == 0.5  # experiment 22
    _refiner, refiner_meta = load_refiner(SHIPPED_CHECKPOINT)  # and the box refiner
    assert (
        refiner_meta.dtype == "float16"
        and refiner_meta.params.step == 0.75
        and refiner_meta.params.box_channel
        and refiner_meta.fit_head
    )
    _rescorer, rescorer_meta = load_rescorer(SHIPPED_CHECKPOINT)  # and the rescorer (experiment 25)
    assert (rescorer_meta.members, rescorer_meta.hidden) == (5, 16)
    assert meta.detector.rpn_post_nms_top_n_test == 30  # test-time proposals (experiment 39)
    int8 = checkpoint_int8(SHIPPED_CHECKPOINT, meta.weights_sha256)  # int8 ranges for these weights
    assert int8 is not None and int8[1].calibration_images == 64 and "/train" in int8[1].calibration
    # and for the refiner's and reader's weights (experiment 42)
    assert int8[1].crop_nets == {"refiner": refiner_meta.sha256, "reader": reader_meta.sha256}
    assert sum(f.stat().st_size for f in SHIPPED_CHECKPOINT.glob("*.safetensors")) <= 30_000_000


def test_the_model_card_names_the_versions_the_shipped_model_answers_with() -> None:
    """The card's X-Model-Version for the CPU (int8) and floating point, as a server with the default
    settings works them out: a new model, part or default changes them, and the card must follow."""
    card = (SHIPPED_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
    named = re.search(r"`X-Model-Version: ([0-9a-f]{12})` on the CPU \(int8\)\s+and `([0-9a-f]{12})`", card)
    assert named, "models/MODEL_CARD.md names no X-Model-Version"
    for use_int8, version in zip((True, False), named.groups(), strict=True):
        settings = Settings(checkpoint=SHIPPED_CHECKPOINT, device="cpu", use_int8=use_int8)
        predictor = load_predictor(SHIPPED_CHECKPOINT, torch.device("cpu"), settings)
        answers = serving_version(predictor, settings.reduce_to_px)
        assert answers == version, (
            f"the card names {version}, the model answers with {answers} (int8 {use_int8})"
        )


def test_shipped_model_reads_real_house_numbers() -> None:
    """Through the service's own Predictor: detector (int8), second look, box refiner and reader."""
    root = real_data("svhn-hw2")
    records = load_coco_split(root / "valid", root / "valid.json")[0][:60]
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    assert predictor.reader is not None and predictor.refiner is not None
    assert predictor.int8 is not None and is_quantized(predictor.model)
    assert predictor.int8_parts == ["detector", "refiner", "reader"]
    correct = 0
    for record in records:
        with Image.open(record.path) as image:
            found = predictor.detect([np.array(image.convert("RGB"))])[0]
        correct += predictor.assemble(found.sites).value == record.number
    assert correct / len(records) >= 0.6  # 0.864 on the whole split (models/MODEL_CARD.md)


def test_a_real_number_misread_by_one_digit_is_confirmed_by_its_rival() -> None:
    """Validation photo 10917, labelled 179: the shipped model reads 129, its detector also scoring a
    7 at ~0.72 on the 2's box (experiment 152). Asked whether the photo shows 179, it says yes, by
    that swap; 178 it does not show, and 179 is not the number read."""
    root = real_data("svhn-hw2")
    record = next(r for r in load_coco_split(root / "valid", root / "valid.json")[0] if r.image_id == 10917)
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    with Image.open(record.path) as image:
        found = predictor.detect([np.array(image.convert("RGB"))])[0]
    read = predictor.assemble(found.sites)
    assert (record.number, read.text) == (179, "129")
    confirmed = confirm_number(179, read, found.sites, found.detections)
    assert (confirmed.how, confirmed.edit) == ("alternative", "swap")
    assert confirmed.score is not None and 0.6 < confirmed.score < 0.85
    assert confirmed.number is not None and [d.digit for d in confirmed.number.digits] == [1, 7, 9]
    assert not confirm_number(179, read, found.sites, found.detections, min_score=None).shown
    assert not confirm_number(178, read, found.sites, found.detections, min_score=0.0).shown


def test_the_height_rule_drops_a_small_mark_beside_a_real_number() -> None:
    """Validation image 1461, labelled 78: a mark under half the digits' height left of them. Some
    models read it as a confident 1 (experiment 21 with 100 proposals; stage 8 at 0.73), others score
    it under the threshold (the shipped models from experiment 39 to stage 7); either way it is made
    confident here, and the height rule must drop it while the number without the rule would read it
    in front of 78: 178, or 1978 with stage 9, which also scores a second small mark between them as
    a 9 at 0.65 (models/EXPERIMENTS.md, experiments 21 and 103)."""
    root = real_data("svhn-hw2")
    record = next(r for r in load_coco_split(root / "valid", root / "valid.json")[0] if r.image_id == 1461)
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    with Image.open(record.path) as image:
        sites = predictor.detect([np.array(image.convert("RGB"))])[0].sites
    assert record.number == 78 and predictor.assemble(sites).value == 78
    confident_sites = [s for s in sites if s.score >= predictor.assembly.score_threshold]
    tall = max(s.box_xyxy[3] - s.box_xyxy[1] for s in confident_sites)
    left = min(s.box_xyxy[0] for s in confident_sites if s.box_xyxy[3] - s.box_xyxy[1] >= 0.6 * tall)
    marks = [s for s in sites if s.box_xyxy[3] - s.box_xyxy[1] < 0.6 * tall and s.box_xyxy[2] <= left]
    assert marks
    confident = [replace(s, score=max(s.score, 0.9), digit=1) if s is marks[0] else s for s in sites]
    assert predictor.assemble(confident).value == 78
    without_rule = assemble_number(confident, replace(predictor.assembly, height_ratio=0)).text
    assert without_rule.startswith("1") and without_rule.endswith("78") and len(without_rule) > 2


def test_the_card_audit_of_label_omissions_matches_the_validation_labels() -> None:
    """models/card/valid_label_omissions.csv lists validation photos whose labels leave out digits the
    photo shows (checked by eye): each `labelled` number is the split's label, and `seen` holds it."""
    root = real_data("svhn-hw2")
    numbers = {r.image_id: r.number for r in load_coco_split(root / "valid", root / "valid.json")[0]}
    audit = SHIPPED_CHECKPOINT.parent / "card" / "valid_label_omissions.csv"
    rows = list(csv.DictReader(audit.read_text().splitlines()))
    assert len(rows) == 34
    for row in rows:
        labelled, seen = int(row["labelled"]), row["seen"]
        assert numbers[int(row["image_id"])] == labelled
        assert len(seen) > len(str(labelled)) and is_subsequence(str(labelled), seen)


def test_the_card_audit_of_stage_8s_misreads_matches_the_validation_labels() -> None:
    """models/card/valid_misreads_audit.csv: every photo stage 8 misread (and 1324, read as its label
    though it shows more), looked at by eye (stop 66). Its rows are consistent (`training.audit`), its
    labels are the split's, and its verdicts are counted as the card counts them."""
    root = real_data("svhn-hw2")
    numbers = {r.image_id: r.number for r in load_coco_split(root / "valid", root / "valid.json")[0]}
    rows = read_audit(SHIPPED_CHECKPOINT.parent / "card" / "valid_misreads_audit.csv")
    photos = photo_truth(numbers, rows)  # raises where a row's label is not the split's
    verdicts = Counter(row.verdict for row in rows)
    assert verdicts == {"model": 44, "label_omits": 40, "unclear": 28, "label_wrong": 3}
    assert sum(photos[i] != numbers[i] for i in numbers) == 43


def test_the_rescorer_ranks_real_boxes_better_than_score_times_fit() -> None:
    """The first 200 validation images through the service's Predictor: Task 1 mAP with the shipped
    ranking (sqrt(score x fit x quality)) against score x fit alone, the same boxes (models/EXPERIMENTS.md,
    experiment 25: 0.4694 -> 0.4743 on the whole split; here 0.4934 -> 0.4981)."""
    root = real_data("svhn-hw2")
    records = load_coco_split(root / "valid", root / "valid.json")[0][:200]
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    found = {}
    for record in records:
        with Image.open(record.path) as image:
            found[record.image_id] = predictor.detect([np.array(image.convert("RGB"))])[0].detections
    assert all(d.quality is not None for dets in found.values() for d in dets)
    plain = {i: [replace(d, quality=None) for d in dets] for i, dets in found.items()}
    truth = ground_truth_coco(records)
    ranked, unranked = (coco_map(truth, detections_to_coco(d))["map"] for d in (found, plain))
    assert ranked > unranked + 0.001, (ranked, unranked)


def test_the_side_look_reads_the_digit_a_tight_frame_hides() -> None:
    """Synthetic numbers drawn with matplotlib's own fonts (the same on every machine) and framed
    tightly: without the side look the shipped model drops the digit nearest the photo's side; with
    it (experiment 43) it reads the whole number. No real data needed. The two numbers are read with
    margins that hold on every CPU (int8 kernels differ a little between hosts): every digit read
    with the side look scores >= 0.93 and the dropped one < 0.41 without it, in int8 and float32
    (stop 100; the numbers used before, 2301 and 3406, had digits scoring 0.60-0.65). The colour
    balance is off in both: 949's backdrop is green (a cast of 6.9, `models.balance`), and balanced,
    its side digit is read even without the side look (stop 128), so it would no longer show what the
    side look adds. So are the readings made again narrowed (experiment 159): 949's type is wide for
    its height, and narrowed it is read whole without the side look too."""
    cpu, off = torch.device("cpu"), {"balance_gate": 0.0, "widen_gate": 0.0, "squat_gate": 0.0}
    shipped = Predictor.load(SHIPPED_CHECKPOINT, cpu, **off)
    plain = Predictor.load(SHIPPED_CHECKPOINT, cpu, side_look=0.0, **off)
    assert shipped.zoom.side_look == 0.5 and plain.zoom.side_look == 0.0
    for seed, number, without in ((125, 949, 49), (370, 498, 98)):
        pixels = np.array(render_sample(seed, find_fonts("bundled")).image)
        assert plain.assemble(plain.detect([pixels])[0].sites).value == without
        assert shipped.assemble(shipped.detect([pixels])[0].sites).value == number


def _column(seed: int, framing: str) -> tuple[np.ndarray, int]:
    """Synthetic number `seed` (bundled fonts) with its digits stacked top to bottom, at the photo's
    scale or in its shape (`training.columns.stack_digits`, as `benchmarks/bench_columns.py`), and
    the number it shows."""
    sample = render_sample(seed, find_fonts("bundled"))
    digits = sorted(sample.digits, key=lambda d: d[1][0] + d[1][2])
    photo = sample.image
    frame = {"min_width": photo.height} if framing == "scale" else {"aspect": photo.width / photo.height}
    stacked, _ = stack_digits(photo, [box for _, box in digits], **frame)
    return np.array(stacked), int("".join(str(digit) for digit, _ in digits))


def test_a_number_down_a_post_is_read_top_to_bottom() -> None:
    """Synthetic numbers with their digits stacked in a column (experiment 158). At the photo's scale
    the detector finds every digit (each scoring >= 0.92 here, in int8 and float32), and the assembly
    reads them top to bottom, where left to right they read another order of the same digits (which
    one depends on x offsets of a pixel or two: the narrowed reading of experiment 159 reads 36's
    04821 where the photo as it is reads 08412). Framed in the photo's
    shape, the digits are small and the second look crops to the number: before experiment 158 a
    column's digits did not chain, the crop held one of them, and these three read 2, 2 and 8."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    flat = replace(predictor.assembly, read_columns=False)
    for seed in (17, 36):
        pixels, number = _column(seed, "scale")
        sites = predictor.detect([pixels])[0].sites
        assert predictor.assemble(sites).value == number
        left_to_right = assemble_number(sites, flat).text
        assert left_to_right != str(number) and sorted(left_to_right) == sorted(str(number))
    for seed in (28, 41, 53):
        pixels, number = _column(seed, "shape")
        assert predictor.assemble(predictor.detect([pixels])[0].sites).value == number


def test_a_number_seen_from_the_side_is_read_widened() -> None:
    """Synthetic numbers seen 60 degrees from the side (`training.degrade.oblique`, seeded with the
    sample's seed): their digits come out about half as wide, the detector misses some of them, and
    widened back by the squeeze it measures (experiment 159) the photo reads whole. On 100 such
    samples: 75 read right against 72 without widening (7 gained, 4 lost)."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    unwidened = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"), widen_gate=0)
    fonts = find_fonts("bundled")
    for seed, number in ((19, 818), (33, 478), (95, 8270)):
        sample = render_sample(seed, fonts)
        assert int("".join(str(d) for d, _ in sorted(sample.digits, key=lambda d: d[1][0]))) == number
        pixels = np.array(oblique(sample.image.convert("RGB"), 60, seed))
        assert predictor.assemble(predictor.detect([pixels])[0].sites).value == number
        assert len(str(unwidened.assemble(unwidened.detect([pixels])[0].sites).value)) < len(str(number))


def test_clutter_above_a_number_in_a_large_photo_does_not_chain_to_it() -> None:
    """valid/102 (74 x 32, "50") pasted into a 444 x 192 digit-free scene at (77, 101), the placement
    `training.scenes.place_in_scene` draws at 6 x with seed 7: the search's tiles find a 73 px clutter
    box above the number and a 38 px false "1" beside it. Before experiment 116 the two chained into
    the number (centres a clutter-box height apart), the second look cropped 4 x too much and the
    service answered 0; with centres at most the smaller height apart it answers 50 (20 of 20
    placements at 6 x on the stop-102 host)."""
    root = real_data("svhn-hw2")
    with Image.open(root / "valid" / "102.png") as image:
        scene, corner = place_in_scene(image.convert("RGB"), 6, random.Random(7))
    assert corner == (77, 101) and scene.size == (444, 192)
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    assert predictor.assemble(predictor.detect([np.array(scene)])[0].sites).value == 50


def test_a_number_in_a_long_narrow_photo_is_read_in_the_searchs_strips() -> None:
    """Synthetic numbers pasted into strips 16 times as wide as high (`training.scenes.place_in_strip`,
    seeded with the sample's seed): the model sees such a strip at a quarter of the scale it sees the
    number alone, and reads these two wrong; cut into 4:1 tiles by the search (experiment 153) it reads
    them right. On 100 such samples: 88 read right against 61 (experiment 153, before the readings
    made again of experiment 159, with which the first reads 9 without the search)."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    no_search = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"), search_tiles=0)
    for seed, number, without in ((10, 90, 9), (11, 7789, 89)):
        sample = render_sample(seed, find_fonts("bundled"))
        strip, _ = place_in_strip(sample.image.convert("RGB"), 16, random.Random(seed))
        pixels = np.array(strip)
        assert no_search.assemble(no_search.detect([pixels])[0].sites).value == without
        assert predictor.assemble(predictor.detect([pixels])[0].sites).value == number


def test_the_first_photo_read_does_not_change_the_readings_after_it() -> None:
    """Read first, unwarmed, a 41 x 238 photo (two photos side by side) reached the int8 detector
    at 66 x 384, padded to 96 x 384, and torchvision's box pooler inferred its scales from it: every
    later photo read garbage (experiment 153). Its scales are now set when the detector is built.
    The number read after it is synthetic sample 5, 807 (its type as wide as SVHN's, squeeze 1.07,
    so read once); sample 8, 2301, used before, is read 230 since experiment 159 narrows its wide
    type (squeeze 1.30) and the verifier prefers that reading."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    odd = np.random.default_rng(0).integers(0, 256, (41, 238, 3), dtype=np.uint8)
    predictor.detect([odd])
    pixels = np.array(render_sample(5, find_fonts("bundled")).image)
    assert predictor.assemble(predictor.detect([pixels])[0].sites).value == 807


def test_the_shipped_verifier_is_fitted_on_the_shipped_pipeline() -> None:
    """`verifier.json` records the pipeline it was fitted on; the shipped one must be today's (a
    part exported anew, or a setting changed, without refitting it would turn p_correct off)."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    assert predictor.verifier is not None
    assert (
        predictor.verifier[1].fitted_on["split"] == "valid"
        and predictor.verifier[1].fitted_on["images"] == 807
    )
    pixels = np.array(render_sample(5, find_fonts("bundled")).image)  # 807, as above
    found = predictor.detect([pixels])[0]
    number = predictor.assemble(found.sites)
    p_correct = predictor.p_correct(number, found)
    assert number.value == 807 and p_correct is not None and 0.0 < p_correct < 1.0


def test_p_correct_tells_right_readings_from_wrong_ones_better_than_the_confidence() -> None:
    """On 300 real validation images (the split the verifier was fitted on: in-sample, so the margin
    asked is well under the cross-validated one, 0.84 against 0.60 AUC; models/MODEL_CARD_DETAILS.md)."""
    root = real_data("svhn-hw2")
    records = load_coco_split(root / "valid", root / "valid.json")[0][:300]
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))
    confidence, p_correct, right = [], [], []
    for record in records:
        with Image.open(record.path) as image:
            found = predictor.detect([np.array(image.convert("RGB"))])[0]
        number = predictor.assemble(found.sites)
        confidence.append(number.confidence)
        p_correct.append(predictor.p_correct(number, found) or 0.0)
        right.append(number.value == record.number)
    truth = np.array(right)
    assert auc(np.array(p_correct), truth) > auc(np.array(confidence), truth) + 0.1


class _Counting:
    """A detector that records the shape of every image it is called on."""

    def __init__(self, real: Any) -> None:
        self.real, self.transform, self.roi_heads = real, real.transform, real.roi_heads
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, images: list[torch.Tensor]) -> Any:
        self.seen += [tuple(x.shape) for x in images]
        return self.real(images)


def test_an_operator_can_turn_the_shipped_search_off() -> None:
    """DIGITSERVE_SEARCH_TILES=0 on the shipped checkpoint (search_tiles 3, search_tiles_max 4, limited
    by search_below_p): the service starts, and a large photo is read without any tile."""
    off = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"), search_tiles=0)
    assert off.zoom.search_tiles_max == 4 and off.zoom.search_tiles == 0 and not off.zoom.gated
    counting = _Counting(off.model)
    off.model = counting  # type: ignore[assignment]
    off.detect([np.full((480, 640, 3), 128, dtype=np.uint8)])
    assert counting.seen == [(3, 480, 640)]  # the first pass alone


def test_a_phones_heic_reads_as_its_png_does() -> None:
    """Phone cameras save HEIC: twelve synthetic numbers, each saved as PNG and as HEIC (quality 85),
    decoded as uploads are and read through the service's Predictor, read the same but for at most
    one. Tried on the PNGs' pixels: a turn, a mirror or flip changes 11 of the 12 readings, a shift
    of 8 px 4, swapped colours (BGR) 2."""
    predictor = Predictor.load(SHIPPED_CHECKPOINT, torch.device("cpu"))

    def read(image: Image.Image, fmt: str) -> int:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, quality=85)
        decoded = decode_image(buffer.getvalue(), max_pixels=10**8)
        assert decoded.format == fmt
        return predictor.assemble(predictor.detect([decoded.pixels])[0].sites).value

    images = [render_sample(seed).image for seed in range(12)]
    png_readings = [read(image, "PNG") for image in images]
    heic_readings = [read(image, "HEIF") for image in images]
    assert sum(a == b for a, b in zip(png_readings, heic_readings, strict=True)) >= 11
    assert len(set(png_readings)) >= 10  # the premise: twelve different numbers, read as numbers
