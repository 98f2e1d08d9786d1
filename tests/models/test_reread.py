"""The second opinion: crops, digit sites, the mixing of the two opinions and the reader's shapes."""

from dataclasses import replace

import pytest
import torch

from models.assembly import Detection, assemble_number
from models.reader import DigitReader
from models.reread import (
    CropSpec,
    DigitSite,
    Findings,
    RereadParams,
    crop_digits,
    crop_window,
    group_sites,
    mix_opinions,
    read_boxes,
    reread_detections,
    reread_images,
    reread_sites,
)


def _scores(**by_digit: float) -> tuple[float, ...]:
    return tuple(by_digit.get(f"d{d}", 0.0) for d in range(10))


def test_crop_window_is_a_square_around_the_box() -> None:
    assert crop_window((10, 20, 30, 60), context=1.0) == (0, 20, 40, 60)
    x1, y1, x2, y2 = crop_window((10, 20, 30, 60), context=1.5, scale=1.2)
    assert x2 - x1 == pytest.approx(72) and y2 - y1 == pytest.approx(72)
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((20, 40))
    moved = crop_window((10, 20, 30, 60), context=1.0, shift=(0.25, -0.5))
    assert moved == pytest.approx((10, 0, 50, 40))


def test_crop_digits_cuts_each_box_at_the_spec_size() -> None:
    image = torch.zeros(3, 40, 100)
    image[:, 10:30, 60:75] = 1.0  # a white digit on the right; the left half is black
    crops = crop_digits(image, [(60, 10, 75, 30), (5, 10, 20, 30)], CropSpec(size=16, context=1.0))
    assert crops.shape == (2, 3, 16, 16)
    assert crops[0].mean() > 0.5 and crops[1].max() == 0.0
    assert crop_digits(image, [], CropSpec(size=16)).shape == (0, 3, 16, 16)


def test_group_sites_merges_overlapping_boxes_and_sums_their_class_scores() -> None:
    dets = [
        Detection((0, 0, 10, 20), 1, 0.4),
        Detection((0, 1, 10, 21), 7, 0.35),  # the same place, another digit
        Detection((0, 0, 10, 20), 1, 0.2),  # the same digit again: its best score counts once
        Detection((30, 0, 40, 20), 5, 0.9),  # elsewhere
    ]
    sites = group_sites(dets, site_iou=0.5)
    assert [s.box_xyxy for s in sites] == [(30, 0, 40, 20), (0, 0, 10, 20)]
    assert sites[1].class_scores == pytest.approx(_scores(d1=0.4, d7=0.35))
    assert sites[1].presence == pytest.approx(0.75)
    assert group_sites([], 0.5) == []


def test_presence_is_at_most_one() -> None:
    dets = [Detection((0, 0, 10, 20), d, 0.6) for d in (1, 7)]
    assert group_sites(dets, 0.5)[0].presence == 1.0


def test_mix_opinions_weighs_the_detector_against_the_reader() -> None:
    detector = torch.tensor([_scores(d1=0.5, d7=0.3)])
    reader = torch.zeros(1, 10)
    reader[0, 7] = 0.95
    reader[0, 1] = 0.05
    assert int(mix_opinions(detector, reader, 1.0).argmax()) == 1  # the detector alone
    assert int(mix_opinions(detector, reader, 0.0).argmax()) == 7  # the reader alone
    mixed = mix_opinions(detector, reader, 0.7)
    assert int(mixed.argmax()) == 7 and mixed.sum().item() == pytest.approx(1.0)


def test_reread_sites_relabels_shown_sites_and_keeps_the_rest() -> None:
    sites = [
        DigitSite((0, 0, 10, 20), _scores(d1=0.5, d7=0.3), 0.8),
        DigitSite((20, 0, 30, 20), _scores(d3=0.4), 0.4),  # under min_presence: not shown
    ]
    reader = torch.zeros(1, 10)
    reader[0, 7] = 1.0
    out = reread_sites(sites, reader, RereadParams(detector_weight=0.5, min_presence=0.6))
    assert [(d.digit, d.score) for d in out] == [(7, 0.8), (3, 0.4)]
    with pytest.raises(ValueError, match="2 reader outputs for 1 sites"):
        reread_sites(sites, torch.zeros(2, 10), RereadParams())


def test_a_split_digit_survives_the_assembly_after_the_reread() -> None:
    """Scores 0.45 + 0.35 on one digit: the plain rule drops it (both under 0.6), the sites keep it."""
    dets = [
        Detection((0, 0, 10, 20), 1, 0.45),
        Detection((0, 0, 10, 20), 7, 0.35),
        Detection((12, 0, 22, 20), 4, 0.9),
    ]
    assert assemble_number(dets).text == "4"
    sites = group_sites(dets, 0.5)
    reader_probs = torch.zeros(2, 10)
    reader_probs[0, 4] = 1.0
    reader_probs[1, 1] = 1.0
    assert assemble_number(reread_sites(sites, reader_probs, RereadParams())).text == "14"


def test_params_reject_values_outside_0_1() -> None:
    with pytest.raises(ValueError, match="detector_weight"):
        RereadParams(detector_weight=1.5)


def test_reader_maps_crops_to_ten_logits_and_reread_images_runs_end_to_end() -> None:
    torch.manual_seed(0)
    reader = DigitReader(width=4).eval()
    assert reader(torch.rand(3, 3, 24, 24)).shape == (3, 10)
    images = [torch.rand(3, 40, 60), torch.rand(3, 30, 30)]
    dets = [[Detection((5, 5, 20, 35), 2, 0.9), Detection((25, 5, 40, 35), 3, 0.3)], []]
    out = reread_images(reader, images, dets, RereadParams(), CropSpec(size=24))
    assert len(out) == 2 and out[1] == []
    assert [d.box_xyxy for d in out[0]] == [(5, 5, 20, 35), (25, 5, 40, 35)]
    assert out[0][1].digit == 3  # under min_presence: the detector's digit, not the reader's


def test_a_reader_with_a_no_digit_output_judges_each_shown_site() -> None:
    """Column 10 is "no digit": the site's score mixes presence and 1 - P(no digit) geometrically."""
    sites = [
        DigitSite((0, 0, 10, 20), _scores(d1=0.9), 0.9),  # confident, but the reader sees no digit
        DigitSite((12, 0, 22, 20), _scores(d5=0.5), 0.5),  # faint, but the reader sees a clear 5
        DigitSite((24, 0, 34, 20), _scores(d8=0.2), 0.2),  # under min_presence: not shown
    ]
    reader = torch.zeros(2, 11)
    reader[0, 10], reader[0, 1] = 0.9, 0.1
    reader[1, 5], reader[1, 10] = 0.98, 0.02
    out = reread_sites(sites, reader, RereadParams(min_presence=0.3, presence_weight=0.5))
    assert [d.digit for d in out] == [1, 5, 8]  # the digit comes from the ten digit columns
    assert [d.score for d in out] == pytest.approx([(0.9 * 0.1) ** 0.5, (0.5 * 0.98) ** 0.5, 0.2])
    assert assemble_number(out).text == "5"  # the plain presence would read "1"
    alone = reread_sites(sites, reader, RereadParams(min_presence=0.3, presence_weight=1.0))
    assert [d.score for d in alone] == pytest.approx([0.9, 0.5, 0.2])  # weight 1: presence alone


def test_a_no_digit_reader_runs_end_to_end() -> None:
    torch.manual_seed(0)
    reader = DigitReader(width=4, not_digit=True).eval()
    assert reader(torch.rand(2, 3, 24, 24)).shape == (2, 11)
    image, box = torch.rand(3, 40, 60), (5.0, 5.0, 20.0, 35.0)
    params, spec = RereadParams(presence_weight=0.0), CropSpec(size=24)
    out = reread_images(reader, [image], [[Detection(box, 2, 0.9)]], params, spec)
    with torch.inference_mode():
        no_digit = reader(crop_digits(image, [box], spec)).softmax(1)[0, 10].item()
    assert len(out[0]) == 1 and out[0][0].score == pytest.approx(1 - no_digit)  # weight 0: the reader alone


def test_readings_of_every_box_give_the_sites_reread_images_gives_without_a_second_call() -> None:
    torch.manual_seed(0)
    reader = DigitReader(width=4).eval()
    images = [torch.rand(3, 40, 60), torch.rand(3, 30, 30), torch.rand(3, 20, 20)]
    dets = [
        [  # two places: a weak 8 on the 2's place, listed first; a 3 beside them
            Detection((6, 5, 21, 35), 8, 0.2),
            Detection((25, 5, 40, 35), 3, 0.7),
            Detection((5, 5, 20, 35), 2, 0.6),
        ],
        [Detection((2, 2, 12, 22), 5, 0.3)],  # under min_presence: not read
        [],
    ]
    sites = group_sites(dets[0], 0.5)
    assert [s.top for s in sites] == [1, 2]  # each site knows its best box's index in the input
    probs = read_boxes(reader, images, [[d.box_xyxy for d in f] for f in dets], CropSpec(size=24))
    assert [p.shape for p in probs] == [(3, 10), (1, 10), (0, 10)]
    with torch.inference_mode():
        alone = reader(crop_digits(images[0], [dets[0][2].box_xyxy], CropSpec(size=24))).softmax(1)
    assert torch.allclose(probs[0][2], alone[0], atol=1e-6)
    params = RereadParams(detector_weight=0.3)
    reused = reread_detections(dets, probs, params)
    assert reused == reread_images(reader, images, dets, params, CropSpec(size=24))
    assert [d.box_xyxy for d in reused[0]] == [(25, 5, 40, 35), (5, 5, 20, 35)] and reused[2] == []
    with pytest.raises(ValueError, match="reader rows"):
        reread_detections(dets[:1], [probs[0][:2]], params)


def test_scaled_findings_scale_every_box_and_keep_the_rest() -> None:
    box = Detection((1.0, 2.0, 3.0, 4.0), 7, 0.9, fit=0.8, quality=0.7)
    found = Findings([box, replace(box, digit=1)], [box])
    assert found.scaled(1.0, 1.0) is found
    twice = found.scaled(2.0, 0.5)
    assert [d.box_xyxy for d in twice.detections] == [(2.0, 1.0, 6.0, 2.0)] * 2
    assert twice.sites == [replace(box, box_xyxy=(2.0, 1.0, 6.0, 2.0))]
    assert [d.digit for d in twice.detections] == [7, 1]
    assert found.detections[0].box_xyxy == (1.0, 2.0, 3.0, 4.0)  # the original is left as it was
