from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint, save_checkpoint_like
from models.detector import DETECTOR_PRESETS, build_detector
from tests.helpers import randomise_batchnorm
from training import average
from training.config import TRAIN_PRESETS


def test_average_state_dicts_means_floats_and_keeps_last_counters() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 7.0]), "n": torch.tensor(9)}
    out = average.average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 5.0]))
    assert out["n"].item() == 9 and out["n"].dtype == torch.int64


def test_average_state_dicts_keeps_half_precision() -> None:
    a = {"w": torch.tensor([1.0], dtype=torch.float16)}
    b = {"w": torch.tensor([2.0], dtype=torch.float16)}
    out = average.average_state_dicts([a, b])
    assert out["w"].dtype == torch.float16 and out["w"].item() == 1.5


@pytest.mark.parametrize(
    "other", [{"w": torch.zeros(3)}, {"w": torch.zeros(2), "extra": torch.zeros(1)}, {"v": torch.zeros(2)}]
)
def test_average_state_dicts_refuses_other_architectures(other: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="architecture"):
        average.average_state_dicts([{"w": torch.zeros(2)}, other])


def test_one_architecture_ignores_inference_only_and_training_only_settings() -> None:
    fast = DETECTOR_PRESETS["fast"]
    served = replace(fast, rpn_post_nms_top_n_test=30, box_score_thresh=0.2, box_detections_per_img=50)
    stricter = replace(fast, box_fg_iou_thresh=0.6)
    assert average.one_architecture([fast, served, fast])
    assert average.one_architecture([fast, stricter])
    assert not average.one_architecture([fast, replace(fast, fpn_channels=64)])
    assert not average.one_architecture([fast, replace(served, anchor_sizes=(8, 16, 32))])


def test_training_only_settings_leave_the_weights_and_the_eval_output_alone() -> None:
    fast = DETECTOR_PRESETS["fast"]
    assert set(average.TRAINING_ONLY) <= set(asdict(fast))  # a misspelt name would ignore nothing
    other = replace(
        fast,
        box_fg_iou_thresh=0.7,
        box_bg_iou_thresh=0.4,
        rpn_pre_nms_top_n_train=fast.rpn_pre_nms_top_n_train + 100,
        rpn_post_nms_top_n_train=fast.rpn_post_nms_top_n_train + 100,
        rpn_batch_size_per_image=fast.rpn_batch_size_per_image * 2,
        box_batch_size_per_image=fast.box_batch_size_per_image * 2,
        train_min_sizes=(48, 56),
        trainable_backbone_layers=2,
    )
    before, after = asdict(fast), asdict(other)
    assert set(average.TRAINING_ONLY) == {k for k in before if before[k] != after[k]}
    assert average.one_architecture([fast, other])
    torch.manual_seed(0)
    a = build_detector(fast).eval()
    b = build_detector(other).eval()
    shapes = {k: v.shape for k, v in a.state_dict().items()}
    assert shapes == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    image = torch.rand(3, 40, 90)
    with torch.no_grad():
        out_a, out_b = a([image])[0], b([image])[0]
    assert out_a["boxes"].shape[0] > 0
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(out_a[key], out_b[key])


def test_average_state_dicts_refuses_nothing() -> None:
    with pytest.raises(ValueError):
        average.average_state_dicts([])


def test_recompute_batchnorm_measures_the_batches() -> None:
    torch.manual_seed(0)
    model = build_detector(DETECTOR_PRESETS["fast"]).eval()
    bn1 = model.backbone.body.bn1
    bn1.running_mean.fill_(123.0)
    momentum = bn1.momentum
    images = [torch.rand(3, 40, 90), torch.rand(3, 50, 70)]
    seen = average.recompute_batchnorm(model, [images])
    with torch.no_grad():
        model.train()
        batch = model.transform(images)[0].tensors
        model.eval()
        expected = model.backbone.body.conv1(batch).mean((0, 2, 3))
    assert seen == 2 and not model.training and bn1.momentum == momentum
    assert torch.allclose(bn1.running_mean, expected, atol=1e-4)


def test_batchnorm_statistics_repeat_under_the_runs_seed_with_or_without_workers(synth_dir: Path) -> None:
    fast = TRAIN_PRESETS["fast"]
    config = replace(  # multi-scale: the model's transform draws each batch's size
        fast,
        detector=replace(fast.detector, train_min_sizes=(48, 80)),
        data=replace(fast.data, root=str(synth_dir)),
        batch_size=2,
        workers=0,
    )
    means = []
    for run in (config, config, replace(config, workers=2)):
        torch.manual_seed(0)
        model = build_detector(config.detector)
        torch.manual_seed(len(means))  # whatever the global RNGs hold before, as between two commands
        average.recompute_batchnorm(model, average.training_batches(run, 8))
        means.append(model.backbone.body.bn1.running_mean.clone())
    assert torch.equal(means[0], means[1]) and torch.equal(means[0], means[2])


def test_recompute_batchnorm_needs_images() -> None:
    model = build_detector(DETECTOR_PRESETS["fast"])
    with pytest.raises(ValueError, match="no images"):
        average.recompute_batchnorm(model, [])


@pytest.mark.slow
def test_average_command_writes_the_mean_checkpoint(
    trained_run: Path, synth_dir: Path, tmp_path: Path
) -> None:
    # the run's last weights and a copy moved in its backbone and box head: its best and last can be
    # one epoch's, and sources that share a backbone are averaged without new BatchNorm statistics
    model, meta = load_checkpoint(trained_run / "last")
    with torch.no_grad():
        model.backbone.body.conv1.weight.add_(0.01)
        model.roi_heads.box_predictor.cls_score.weight.add_(0.5)
    sources = [trained_run / "last", save_checkpoint_like(tmp_path / "moved", model, meta, metrics={})]
    out = average.main([*map(str, sources), "--out", str(tmp_path / "swa"), "--data", str(synth_dir)])
    meta = read_checkpoint_meta(out)
    assert meta.metrics["averaged"]["sources"] == [str(s) for s in sources]
    assert meta.metrics["averaged"]["batchnorm_images"] == 40  # every synthetic training image
    key = "roi_heads.box_predictor.cls_score.weight"
    weights = [load_checkpoint(s)[0].state_dict()[key] for s in sources]
    averaged, _ = load_checkpoint(out)
    assert torch.allclose(averaged.state_dict()[key], (weights[0] + weights[1]) / 2)


def test_average_state_dicts_keeps_a_tensor_every_state_shares_exactly() -> None:
    shared = torch.tensor([0.1, 0.3, 0.9])  # a mean of seven copies of these rounds off in float32
    states = [{"w": shared.clone(), "v": torch.tensor([float(i)])} for i in range(7)]
    out = average.average_state_dicts(states)
    assert torch.equal(out["w"], shared)
    assert torch.equal(out["v"], torch.tensor([3.0]))


def test_runs_that_trained_only_the_heads_average_without_new_batchnorm_statistics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    detector = DETECTOR_PRESETS["fast"]
    model = build_detector(detector).eval()
    randomise_batchnorm(model)
    save_checkpoint(tmp_path / "a", model, detector, training=asdict(TRAIN_PRESETS["fast"]))
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.add_(1.0)
    save_checkpoint(tmp_path / "b", model, detector, training=asdict(TRAIN_PRESETS["fast"]))
    states = [load_checkpoint(tmp_path / s)[0].state_dict() for s in ("a", "b")]
    assert average.same_backbone(states)
    # No data: re-estimating the statistics would need the training images, and must not be tried.
    out = average.average_checkpoints(
        [tmp_path / "a", tmp_path / "b"], tmp_path / "avg", str(tmp_path / "no-data"), 0, "float32"
    )
    averaged = load_checkpoint(out)[0].state_dict()
    assert read_checkpoint_meta(out).metrics["averaged"]["batchnorm_images"] == 0
    assert all(torch.equal(averaged[k], v) for k, v in states[0].items() if k.startswith("backbone."))
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.allclose(averaged[key], states[0][key] + 0.5)
    # One backbone tensor apart, and the statistics must be measured again.
    states[1]["backbone.fpn.inner_blocks.0.1.running_mean"] += 1.0
    assert not average.same_backbone(states)
