from dataclasses import replace

import pytest
import torch
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops.poolers import _setup_scales

from models.detector import BACKBONES, DETECTOR_PRESETS, DetectorConfig, build_detector
from tests.helpers import randomise_batchnorm


@pytest.fixture(scope="module")
def seed_model() -> torch.nn.Module:
    return build_detector(DETECTOR_PRESETS["seed"])


def test_seed_is_resnet50_fpn_with_digit_anchors(seed_model: torch.nn.Module) -> None:
    gen = seed_model.rpn.anchor_generator
    assert len(gen.sizes) == 5 and all(s == (8, 16, 32) for s in gen.sizes)
    assert all(r == (0.5, 1.0, 2.0) for r in gen.aspect_ratios)
    assert gen.num_anchors_per_location() == [9] * 5
    assert type(seed_model.backbone.body.layer4[0]).__name__ == "Bottleneck"
    assert len(seed_model.backbone.body.layer3) == 6  # ResNet-50: 3-4-6-3


def test_seed_box_head_is_two_1024_fc_and_11_classes(seed_model: torch.nn.Module) -> None:
    head = seed_model.roi_heads.box_head
    assert isinstance(head, TwoMLPHead)
    assert (head.fc6.out_features, head.fc7.out_features) == (1024, 1024)
    assert seed_model.roi_heads.box_predictor.cls_score.out_features == 11


def test_input_size_and_imagenet_normalisation_in_model(seed_model: torch.nn.Module) -> None:
    assert seed_model.transform.min_size == (64,) and seed_model.transform.max_size == 256
    assert seed_model.transform.image_mean == [0.485, 0.456, 0.406]


def test_multi_scale_training_draws_sizes_and_evaluates_at_min_size() -> None:
    config = DetectorConfig(
        arch="fasterrcnn_resnet18_fpn", min_size=96, max_size=400, train_min_sizes=(80, 112)
    )
    transform = build_detector(config).transform
    image = torch.rand(3, 50, 100)  # shorter side 50 -> resized to the drawn size
    torch.manual_seed(0)
    trained = {transform.train()([image])[0].image_sizes[0][0] for _ in range(30)}
    assert trained == {80, 96, 112}
    assert {transform.eval()([image])[0].image_sizes[0][0] for _ in range(5)} == {96}
    with pytest.raises(ValueError, match="train_min_sizes"):
        DetectorConfig(max_size=256, train_min_sizes=(80, 300))


def test_per_batch_scale_draws_one_size_for_the_whole_batch() -> None:
    config = DetectorConfig(
        arch="fasterrcnn_resnet18_fpn",
        min_size=96,
        max_size=400,
        train_min_sizes=(80, 112),
        train_scale_per_batch=True,
    )
    transform = build_detector(config).transform
    images = [torch.rand(3, 50, 100), torch.rand(3, 60, 60), torch.rand(3, 40, 120)]
    torch.manual_seed(0)
    drawn = []
    for _ in range(30):
        sizes = {min(size) for size in transform.train()(images)[0].image_sizes}
        assert len(sizes) == 1  # every image of the batch got the same shorter side
        drawn.append(sizes.pop())
    assert set(drawn) == {80, 96, 112}
    assert {min(s) for s in transform.eval()(images)[0].image_sizes} == {96}


def test_per_image_scale_mixes_sizes_within_a_batch() -> None:
    config = DetectorConfig(
        arch="fasterrcnn_resnet18_fpn", min_size=96, max_size=400, train_min_sizes=(80, 112)
    )
    transform = build_detector(config).transform.train()
    images = [torch.rand(3, 50, 100) for _ in range(6)]
    torch.manual_seed(0)
    mixed = [len({min(s) for s in transform(images)[0].image_sizes}) > 1 for _ in range(10)]
    assert any(mixed)


def test_builder_never_fetches_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_detector tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    build_detector(DETECTOR_PRESETS["fast"])


@pytest.mark.parametrize("preset", ["seed", "fast"])
def test_eval_output_format(preset: str) -> None:
    torch.manual_seed(0)
    model = build_detector(DETECTOR_PRESETS[preset]).eval()
    with torch.no_grad():
        (out,) = model([torch.rand(3, 40, 90)])
    assert out["boxes"].shape[1:] == (4,) and out["labels"].dtype == torch.int64
    assert len(out["boxes"]) == len(out["scores"])


def test_fast_trains_one_step() -> None:
    model = build_detector(DETECTOR_PRESETS["fast"]).train()
    target = {"boxes": torch.tensor([[10.0, 5.0, 25.0, 35.0]]), "labels": torch.tensor([4])}
    losses = model([torch.rand(3, 40, 90)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()


def test_box_head_iou_thresholds_reach_the_matcher() -> None:
    default = build_detector(DETECTOR_PRESETS["fast"]).roi_heads.proposal_matcher
    assert (default.high_threshold, default.low_threshold) == (0.5, 0.5)
    config = replace(DETECTOR_PRESETS["fast"], box_fg_iou_thresh=0.6, box_bg_iou_thresh=0.5)
    matcher = build_detector(config).roi_heads.proposal_matcher
    assert (matcher.high_threshold, matcher.low_threshold) == (0.6, 0.5)
    # IoUs 0.55 (between the thresholds: left out), 0.65 (positive), 0.3 (background) with one box
    matches = matcher(torch.tensor([[0.55, 0.65, 0.3]]))
    assert matches.tolist() == [matcher.BETWEEN_THRESHOLDS, 0, matcher.BELOW_LOW_THRESHOLD]


@pytest.mark.parametrize("fg, bg", [(0.5, 0.6), (1.0, 0.5), (0.5, 0.0)])
def test_box_head_iou_thresholds_out_of_order_refused(fg: float, bg: float) -> None:
    with pytest.raises(ValueError, match="box_bg_iou_thresh"):
        replace(DETECTOR_PRESETS["fast"], box_fg_iou_thresh=fg, box_bg_iou_thresh=bg)


def test_config_round_trips_through_dict() -> None:
    config = DETECTOR_PRESETS["fast"]
    assert DetectorConfig.from_dict(config.to_dict()) == config


def test_unknown_arch_and_keys_rejected() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        DetectorConfig(arch="yolo")
    with pytest.raises(ValueError, match="unknown detector arguments"):
        DetectorConfig.from_dict({"arch": "fasterrcnn_resnet18_fpn", "depth": 3})


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_the_box_poolers_scales_are_set_from_the_start_as_a_well_shaped_image_infers_them(arch: str) -> None:
    """torchvision infers them on the first call; from a 128 x 256 image (no padding) it gets them right."""
    model = build_detector(replace(DETECTOR_PRESETS["fast"], arch=arch)).eval()
    pooler = model.roi_heads.box_roi_pool
    assert pooler.scales == [0.25, 0.125, 0.0625, 0.03125]
    with torch.inference_mode():
        features = model.backbone(torch.zeros(1, 3, 128, 256))
    scales, levels = _setup_scales(
        [features[name] for name in pooler.featmap_names],
        [(128, 256)],
        pooler.canonical_scale,
        pooler.canonical_level,
    )
    assert pooler.scales == scales
    assert vars(pooler.map_levels) == vars(levels)


def test_the_first_image_seen_does_not_change_how_later_ones_are_read() -> None:
    """A 41 x 238 first image is resized to 66 x 384 and padded to 96 x 384: torchvision's pooler,
    left to infer its scales from it, would pool every later image from the wrong cells
    (pytorch/vision#3747)."""
    config = replace(DETECTOR_PRESETS["fast"], min_size=96, max_size=384, box_score_thresh=0.0)
    first_odd = build_detector(config).eval()
    randomise_batchnorm(first_odd)
    first_plain = build_detector(config).eval()
    first_plain.load_state_dict(first_odd.state_dict())
    generator = torch.Generator().manual_seed(0)
    odd, image = torch.rand(3, 41, 238, generator=generator), torch.rand(3, 56, 126, generator=generator)
    with torch.inference_mode():
        first_odd([odd])
        after_odd, plain = first_odd([image])[0], first_plain([image])[0]
    assert plain["scores"].numel() > 0
    torch.testing.assert_close(after_odd["boxes"], plain["boxes"])
    torch.testing.assert_close(after_odd["scores"], plain["scores"])
