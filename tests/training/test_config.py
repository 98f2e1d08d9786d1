from dataclasses import replace
from pathlib import Path

import pytest

from training.config import TRAIN_PRESETS, config_from_dict, load_config


def test_seed_preset_is_the_reference_recipe() -> None:
    seed = load_config("seed")
    assert (seed.lr, seed.momentum, seed.weight_decay) == (0.005, 0.9, 5e-4)
    assert (seed.epochs, seed.batch_size, seed.workers, seed.cosine_t_max) == (15, 8, 4, 10)
    assert seed.amp and not seed.freeze_backbone
    assert seed.detector.arch == "fasterrcnn_resnet50_fpn_v2" and seed.detector.box_head_dim == 1024
    assert (seed.augment.brightness, seed.augment.contrast, seed.augment.saturation) == (0.3, 0.3, 0.2)
    assert (seed.augment.affine_degrees, seed.augment.affine_translate, seed.augment.erasing_p) == (
        2,
        0.02,
        0.5,
    )


def test_file_overrides_its_base_preset(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "base: fast\nepochs: 3\ndetector: {min_size: 80, train_min_sizes: [64, 96]}\n"
        "data: {valid_json: v.json}\n"
    )
    config = load_config(str(path))
    assert config.epochs == 3 and config.detector.min_size == 80
    assert config.detector.train_min_sizes == (64, 96)
    assert config.detector.arch == TRAIN_PRESETS["fast"].detector.arch and config.data.valid_json == "v.json"


def test_file_overrides_a_base_file_beside_it(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("base: fast\nepochs: 3\ndetector: {min_size: 80}\nseed: 0\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nseed: 2\ndetector: {max_size: 320}\n")
    config = load_config(str(tmp_path / "child.yaml"))
    assert (config.epochs, config.seed) == (3, 2)
    assert (config.detector.min_size, config.detector.max_size) == (80, 320)
    assert config.detector.arch == TRAIN_PRESETS["fast"].detector.arch


def test_base_files_that_loop_or_are_missing_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match="neither a preset"):
        load_config(str(tmp_path / "c.yaml"))


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("detector: {depth: 3}\n")
    with pytest.raises(ValueError, match="unknown"):
        load_config(str(path))
    path.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="bad training config"):
        load_config(str(path))


def test_config_round_trips_through_dict() -> None:
    config = TRAIN_PRESETS["fast"]
    assert config_from_dict(config.to_dict()) == config


def test_repo_config_files_load() -> None:
    for path in Path(__file__).resolve().parents[2].glob("configs/*.yaml"):
        load_config(str(path))


@pytest.mark.parametrize(
    ("init_from", "init_sha256", "message"),
    [("", "0" * 64, "init_from is not"), ("runs/x", "abc", "64 lower-case hex"), ("runs/x", "A" * 64, "hex")],
)
def test_init_sha256_needs_a_start_and_a_whole_digest(init_from: str, init_sha256: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(load_config("fast"), init_from=init_from, init_sha256=init_sha256)
