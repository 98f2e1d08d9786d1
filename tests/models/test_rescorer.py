"""The rescorer: its features, its target, the network, rescoring a batch, and its storage (round
trip, a changed file refused, features it was not trained on refused)."""

import json
import math
from pathlib import Path

import pytest
import torch

from models.assembly import Detection
from models.rescorer import (
    FEATURE_NAMES,
    RESCORER_META,
    RESCORER_WEIGHTS,
    Rescorer,
    RescorerError,
    copy_rescorer,
    detection_features,
    has_rescorer,
    load_checkpoint_rescorer,
    load_rescorer,
    quality_target,
    rescore_images,
    save_rescorer,
)

# a number "34" with a rival "9" on the 4, a weak duplicate 3 beside the 3, and a small "1" below
NUMBER = [
    Detection((10.0, 10.0, 20.0, 30.0), 3, 0.9, 0.8),
    Detection((22.0, 10.0, 32.0, 30.0), 4, 0.7, 0.7),
    Detection((22.0, 11.0, 32.0, 31.0), 9, 0.2, 0.6),
    Detection((13.0, 10.0, 23.0, 30.0), 3, 0.1, 0.5),
    Detection((40.0, 40.0, 45.0, 50.0), 1, 0.3, 0.4),
]


def feature(rows: torch.Tensor, index: int, name: str) -> float:
    return rows[index, FEATURE_NAMES.index(name)].item()


def sure(*digits: int) -> torch.Tensor:
    """Reader rows that are sure of each of `digits`: FloatTensor[len(digits), 10]."""
    probs = torch.full((len(digits), 10), 0.01)
    probs[torch.arange(len(digits)), torch.tensor(digits)] = 0.91
    return probs


READ = sure(3, 4, 4, 3, 7)  # the reader agrees with every box but the 9 (a 4) and the 1 (a 7)


def test_features_describe_each_box_among_the_others() -> None:
    rows = detection_features(NUMBER, width=50, height=60, reader_probs=READ)
    assert rows.shape == (5, len(FEATURE_NAMES)) == (5, 35)
    assert feature(rows, 0, "logit_score") == pytest.approx(math.log(0.9 / 0.1), rel=1e-5)
    assert feature(rows, 4, "logit_fit") == pytest.approx(math.log(0.4 / 0.6), rel=1e-5)
    assert feature(rows, 0, "log_aspect") == pytest.approx(math.log(2.0))
    assert feature(rows, 0, "centre_x") == pytest.approx(15 / 50) and feature(
        rows, 0, "height_share"
    ) == pytest.approx(20 / 60)
    # the 4 and the 9 share a place: each is the other's rival; the 4 tops it, the 9 does not
    assert feature(rows, 1, "logit_rival") == pytest.approx(math.log(0.2 / 0.8), rel=1e-5)
    assert feature(rows, 2, "logit_rival") == pytest.approx(math.log(0.7 / 0.3), rel=1e-5)
    assert feature(rows, 1, "tops_its_place") == 1.0 and feature(rows, 2, "tops_its_place") == 0.0
    assert feature(rows, 1, "logit_presence") == pytest.approx(math.log(0.9 / 0.1), rel=1e-4)
    assert [feature(rows, i, "log_rank") for i in range(5)] == pytest.approx(
        [math.log1p(r) for r in (0, 1, 3, 4, 2)]
    )
    assert all(feature(rows, i, "confident_count") == 2.0 for i in range(5))
    # the number's reference: median height 20 and row 20 of the two confident digits
    assert feature(rows, 4, "log_height_vs_number") == pytest.approx(math.log(0.5))
    assert feature(rows, 4, "row_offset") == pytest.approx((45 - 20) / 20)
    # the duplicate 3 overlaps the higher-scored 3 (IoU 7 / 13); the best box overlaps nothing higher
    assert feature(rows, 3, "same_digit_overlap") == pytest.approx(140 / 260)
    assert feature(rows, 0, "same_digit_overlap") == 0.0 == feature(rows, 0, "any_overlap")
    assert feature(rows, 2, "any_overlap") > 0.8 and feature(rows, 2, "same_digit_overlap") == 0.0
    assert feature(rows, 0, "left_margin") == 1.0 and feature(rows, 4, "right_margin") == 1.0
    assert feature(rows, 1, "right_margin") == 1.0 and feature(rows, 4, "left_margin") == 1.0
    edge = detection_features([Detection((2.0, 0.0, 12.0, 20.0), 5, 0.9, 0.9)], 17, 20, sure(5))
    assert feature(edge, 0, "left_margin") == pytest.approx(0.2) and feature(
        edge, 0, "right_margin"
    ) == pytest.approx(0.5)
    assert [feature(edge, 0, f"digit_{d}") for d in range(10)] == [float(d == 5) for d in range(10)]
    weak = detection_features(  # with no confident digit the best one is the number's reference
        [Detection((0.0, 0.0, 10.0, 10.0), 1, 0.5, 0.5), Detection((0.0, 0.0, 10.0, 20.0), 2, 0.4, 0.5)],
        30,
        30,
        sure(1, 2),
    )
    assert (
        feature(weak, 1, "log_height_vs_number") == pytest.approx(math.log(2.0))
        and feature(weak, 0, "confident_count") == 0.0
    )


def test_reader_features_say_how_sure_the_reader_is_of_the_boxs_digit() -> None:
    rows = detection_features(NUMBER, 50, 60, READ)
    assert [feature(rows, i, "reader_agrees") for i in range(5)] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert feature(rows, 0, "logit_reader_digit") == pytest.approx(math.log(0.91 / 0.09), rel=1e-4)
    assert feature(rows, 2, "logit_reader_digit") == pytest.approx(math.log(0.01 / 0.99), rel=1e-4)
    assert feature(rows, 0, "reader_top") == pytest.approx(0.91) and feature(
        rows, 0, "reader_margin"
    ) == pytest.approx(0.9)
    # an 11th column ("no digit") is dropped and the digits renormalised
    eleven = torch.cat([torch.tensor([[0.25, 0.25] + [0.0] * 8]), torch.tensor([[0.5]])], 1)
    one = detection_features([Detection((0.0, 0.0, 5.0, 10.0), 1, 0.9, 0.9)], 20, 20, eleven)
    assert feature(one, 0, "reader_top") == pytest.approx(0.5) and feature(
        one, 0, "reader_margin"
    ) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="reader rows"):
        detection_features(NUMBER, 50, 60, READ[:4])


def test_features_need_a_fit_and_take_an_empty_image() -> None:
    with pytest.raises(ValueError, match="fit"):
        detection_features([Detection((0.0, 0.0, 1.0, 1.0), 1, 0.5)], 10, 10, sure(1))
    assert detection_features([], 10, 10, torch.zeros((0, 10))).shape == (0, len(FEATURE_NAMES))


def test_quality_is_the_share_of_iou_thresholds_passed_with_the_right_digit() -> None:
    labels = [((10.0, 10.0, 20.0, 30.0), 3), ((22.0, 10.0, 32.0, 30.0), 4)]
    assert quality_target(Detection((10.0, 10.0, 20.0, 30.0), 3, 0.9), labels) == 1.0
    taller = Detection((10.0, 10.0, 20.0, 10.0 + 200 / 7.2), 3, 0.9)  # IoU 0.72 with the 3's label
    assert quality_target(taller, labels) == pytest.approx(0.5)  # passes 0.50, 0.55, ..., 0.70
    assert quality_target(Detection((10.0, 10.0, 20.0, 30.0), 4, 0.9), labels) == 0.0  # the wrong digit
    assert quality_target(Detection((10.0, 10.0, 20.0, 30.0), 3, 0.9), []) == 0.0


def test_the_rescorer_averages_its_members_and_takes_rows_per_member() -> None:
    torch.manual_seed(0)
    model = Rescorer(hidden=8, members=3).eval()
    x = torch.randn(7, len(FEATURE_NAMES))
    out = model(x)
    assert out.shape == (7,) and torch.all((out > 0) & (out < 1))
    logits = model.logits(x)
    assert logits.shape == (3, 7) and torch.allclose(out, logits.sigmoid().mean(0))
    assert not torch.allclose(logits[0], logits[1])  # the members differ
    per_member = model.logits(torch.stack([x, x.flip(0), x]))
    assert torch.allclose(per_member[0], logits[0]) and torch.allclose(per_member[1], logits[1].flip(0))
    model.set_standardisation(x)
    assert torch.allclose(model.mean, x.mean(0)) and torch.allclose(model.std, x.std(0))


def test_rescoring_sets_quality_only_and_ranks_by_the_geometric_mean() -> None:
    torch.manual_seed(0)
    model = Rescorer(hidden=8, members=2).eval()
    unfit = [Detection((0.0, 0.0, 5.0, 5.0), 1, 0.9)]
    probs = [READ, torch.zeros((0, 10)), sure(1)]
    out = rescore_images(model, [NUMBER, [], unfit], [(50, 60), (10, 10), (10, 10)], probs)
    assert out[1] == [] and out[2] == unfit
    assert [(d.box_xyxy, d.digit, d.score, d.fit) for d in out[0]] == [
        (d.box_xyxy, d.digit, d.score, d.fit) for d in NUMBER
    ]
    expected = model(detection_features(NUMBER, 50, 60, READ))
    assert [d.quality for d in out[0]] == pytest.approx(expected.tolist())
    d = out[0][0]
    assert d.ranking_score == pytest.approx(math.sqrt(0.9 * 0.8 * d.quality))  # type: ignore[operator]
    assert NUMBER[0].ranking_score == pytest.approx(0.72)
    assert rescore_images(model, [unfit], [(10, 10)], [sure(1)]) == [unfit]


def test_storage_round_trip_and_refusals(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Rescorer(hidden=8, members=2)
    model.set_standardisation(torch.randn(20, len(FEATURE_NAMES)) * 3 + 1)
    model.eval()
    meta = save_rescorer(tmp_path / "r", model, metrics={"train_loss": [0.5]})
    assert has_rescorer(tmp_path / "r") and not has_rescorer(tmp_path)
    assert load_checkpoint_rescorer(tmp_path) is None
    loaded, read = load_rescorer(tmp_path / "r")
    assert read == meta and read.metrics == {"train_loss": [0.5]} and (read.hidden, read.members) == (8, 2)
    x = torch.randn(4, len(FEATURE_NAMES))
    assert torch.equal(loaded(x), model(x))
    copied = copy_rescorer(tmp_path / "r", tmp_path / "ck")
    assert copied.sha256 == meta.sha256 and load_checkpoint_rescorer(tmp_path / "ck") is not None

    doc = json.loads((tmp_path / "r" / RESCORER_META).read_text())
    (tmp_path / "r" / RESCORER_META).write_text(
        json.dumps({**doc, "feature_names": doc["feature_names"][:-1]})
    )
    with pytest.raises(RescorerError, match="other features"):
        load_rescorer(tmp_path / "r")
    weights = tmp_path / "ck" / RESCORER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(RescorerError, match="sha256"):
        load_rescorer(tmp_path / "ck")
