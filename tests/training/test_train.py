import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from models.checkpoint import CheckpointError, read_weights, save_checkpoint, sha256_file
from models.detector import DETECTOR_PRESETS, build_detector
from tests.helpers import randomise_batchnorm
from training.config import TRAIN_PRESETS, load_config
from training.data import DataError, ImageRecord, Target, collate
from training.distributed import DistInfo
from training.engine import train_one_epoch
from training.mosaic import MosaicDataset
from training.sampling import KeyedDraws
from training.train import (
    annotation_path,
    build_model,
    freeze,
    identity_new_blocks,
    load_splits,
    make_loaders,
    make_run_dir,
    make_schedule,
)
from training.transforms import AugmentConfig
from training.vet import filter_coco


def _factors(steps: int, steps_per_epoch: int, **changes: object) -> list[float]:
    config = replace(TRAIN_PRESETS["fast"], warmup_steps=0, **changes)  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    schedule = make_schedule(optimizer, config, steps_per_epoch)
    return [schedule.lr_lambdas[0](step) for step in range(steps)]


def test_cyclic_schedule_falls_to_its_floor_within_every_epoch() -> None:
    factors = _factors(15, 5, schedule="cyclic", cyclic_min_ratio=0.01)
    assert factors[0] == factors[5] == factors[10] == 1.0
    assert factors[4] == factors[9] == factors[14] == pytest.approx(0.01)
    assert all(a > b for a, b in itertools.pairwise(factors[:5]))


def test_cosine_schedule_is_constant_within_an_epoch_and_falls_over_t_max() -> None:
    factors = _factors(12, 3, cosine_t_max=4)
    assert factors[0] == factors[2] == 1.0
    assert factors[3] == pytest.approx(0.5 * (1 + 0.7071068))
    assert factors[6] == pytest.approx(0.5) and factors[11] == pytest.approx(0.5 * (1 - 0.7071068))


def test_unknown_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match="schedule"):
        replace(TRAIN_PRESETS["fast"], schedule="step")


def test_extra_roots_add_their_training_images_from_their_own_folder_in_either_layout(
    synth_dir: Path, tmp_path: Path
) -> None:
    base = replace(TRAIN_PRESETS["fast"], data=replace(TRAIN_PRESETS["fast"].data, root=str(synth_dir)))
    plain, _, plain_fingerprint = load_splits(base)
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    kept = plain[:2]
    for record in kept:
        (other / "train" / record.path.name).write_bytes(record.path.read_bytes())
    doc = json.loads((synth_dir / "train.json").read_text())
    (other / "train.json").write_text(json.dumps(filter_coco(doc, {r.image_id for r in kept})))
    mixed = replace(base, data=replace(base.data, extra_train_roots=(str(other),)))
    train, _, fingerprint = load_splits(mixed)
    assert len(train) == len(plain) + 2
    assert [r.path for r in train[-2:]] == [other / "train" / r.path.name for r in kept]
    assert [r.boxes for r in train[-2:]] == [r.boxes for r in kept]
    assert fingerprint != plain_fingerprint
    coco = tmp_path / "coco"  # the same two images in the COCO 2017 layout, after the HW2 folder
    (coco / "images").mkdir(parents=True)
    (coco / "images" / "train2017").symlink_to(other / "train")
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_train2017.json").write_text((other / "train.json").read_text())
    both = replace(base, data=replace(base.data, extra_train_roots=(str(other), str(coco))))
    train, _, _ = load_splits(both)
    assert len(train) == len(plain) + 4
    assert [r.path for r in train[-2:]] == [coco / "images" / "train2017" / r.path.name for r in kept]
    assert [r.boxes for r in train[-2:]] == [r.boxes for r in kept]
    missing = replace(base, data=replace(base.data, extra_train_roots=(str(tmp_path / "absent"),)))
    with pytest.raises(DataError, match="absent"):
        load_splits(missing)


@pytest.mark.parametrize("new_blocks", ["identity", "random"])
def test_deeper_backbone_from_a_shallower_checkpoint(tmp_path: Path, new_blocks: str) -> None:
    torch.manual_seed(0)
    shallow = DETECTOR_PRESETS["fast"]
    assert shallow.arch == "fasterrcnn_resnet18_fpn"
    source = build_detector(shallow).eval()
    randomise_batchnorm(source, seed=1)
    save_checkpoint(tmp_path / "src", source, shallow)
    deep = replace(shallow, arch="fasterrcnn_resnet34_fpn")
    start = str(tmp_path / "src")
    config = replace(load_config("fast"), detector=deep, init_from=start, new_blocks=new_blocks)
    model = build_model(config, torch.device("cpu")).eval()
    images = torch.rand(2, 3, 96, 160)
    with torch.no_grad():
        expected = source.backbone(images)
        got = model.backbone(images)
    same = [torch.allclose(got[k], expected[k], atol=1e-5) for k in expected]
    # ResNet-34's stages hold 3/4/6/3 blocks to ResNet-18's 2/2/2/2: 8 blocks are new.
    assert all(same) == (new_blocks == "identity")
    new_scales = [model.backbone.body.get_submodule(f"{s}.bn2").weight for s in ("layer1.2", "layer3.5")]
    assert all(bool(w.eq(0).all()) == (new_blocks == "identity") for w in new_scales)


# (stage, block) of the ResNet-34 blocks ResNet-18 lacks
NEW_34 = [(1, 2), (2, 2), (2, 3), (3, 2), (3, 3), (3, 4), (3, 5), (4, 2)]


def test_identity_blocks_are_named_and_shape_changing_ones_refused() -> None:
    model = build_detector(replace(DETECTOR_PRESETS["fast"], arch="fasterrcnn_resnet34_fpn"))
    loaded = {k for k in model.state_dict() if not any(f".layer{s}.{b}." in k for s, b in NEW_34)}
    assert identity_new_blocks(model, loaded) == [f"layer{s}.{b}" for s, b in NEW_34]
    with pytest.raises(ValueError, match=r"layer2\.0"):
        identity_new_blocks(model, set())  # layer1's blocks would do; layer2.0 downsamples
    assert not model.backbone.body.layer1[0].bn2.weight.eq(0).any()  # refused before any change
    with pytest.raises(ValueError, match="new_blocks"):
        replace(load_config("fast"), new_blocks="zeros")


@pytest.mark.parametrize("mosaic_p", [0.0, 0.5])
def test_the_training_loader_makes_mosaics_only_when_asked(mosaic_p: float) -> None:
    records = [ImageRecord(image_id=i, path=Path(f"{i}.png"), width=10, height=10) for i in range(3)]
    config = replace(TRAIN_PRESETS["fast"], workers=0, augment=AugmentConfig(mosaic_p=mosaic_p))
    train_loader, _ = make_loaders(config, records, records, DistInfo(), torch.Generator())
    drawn = train_loader.dataset
    assert isinstance(drawn, KeyedDraws) and isinstance(drawn.dataset, MosaicDataset) == (mosaic_p > 0)
    if mosaic_p:
        assert drawn.dataset.p == mosaic_p  # type: ignore[attr-defined]


def test_run_dir_is_made_and_linked_as_latest(tmp_path: Path) -> None:
    first = make_run_dir(replace(TRAIN_PRESETS["fast"], out_dir=str(tmp_path), run_name="a"), None)
    second = make_run_dir(replace(TRAIN_PRESETS["fast"], out_dir=str(tmp_path), run_name="b"), None)
    assert first == tmp_path / "a" and first.is_dir() and second.is_dir()
    assert (tmp_path / "latest").resolve() == second.resolve()


def test_other_ranks_only_learn_the_run_dir(tmp_path: Path) -> None:
    """Under torchrun only the main process makes the folder and the `latest` link; a second process
    replacing the link raced the first (FileExistsError)."""
    make_run_dir(replace(TRAIN_PRESETS["fast"], out_dir=str(tmp_path), run_name="a"), None)
    config = replace(TRAIN_PRESETS["fast"], out_dir=str(tmp_path), run_name="b")
    assert make_run_dir(config, None, create=False) == tmp_path / "b"
    assert not (tmp_path / "b").exists()
    assert (tmp_path / "latest").resolve() == (tmp_path / "a").resolve()
    resumed = tmp_path / "elsewhere"
    assert make_run_dir(config, resumed, create=False) == resumed == make_run_dir(config, resumed)
    assert not resumed.exists()


def test_init_sha256_pins_the_weights_a_run_starts_from(tmp_path: Path) -> None:
    torch.manual_seed(0)
    detector = DETECTOR_PRESETS["fast"]
    save_checkpoint(tmp_path / "a", build_detector(detector).eval(), detector)
    save_checkpoint(tmp_path / "b", build_detector(detector).eval(), detector)  # other random weights
    digest_a = sha256_file(tmp_path / "a" / "weights.safetensors")
    pinned = replace(load_config("fast"), init_from=str(tmp_path / "a"), init_sha256=digest_a)
    model = build_model(pinned, torch.device("cpu"))
    source = read_weights(tmp_path / "a" / "weights.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.items())
    # The same pin on a folder holding other weights refuses to start, naming both digests.
    digest_b = sha256_file(tmp_path / "b" / "weights.safetensors")
    with pytest.raises(ValueError, match=f"{digest_b}.*{digest_a}"):
        build_model(replace(pinned, init_from=str(tmp_path / "b")), torch.device("cpu"))


def test_a_model_built_for_resuming_does_not_read_its_start(tmp_path: Path) -> None:
    config = replace(load_config("fast"), init_from=str(tmp_path / "gone"))
    with pytest.raises(CheckpointError, match="gone"):
        build_model(config, torch.device("cpu"))
    assert build_model(config, torch.device("cpu"), initialise=False) is not None


def _two_image_loader() -> DataLoader[tuple[torch.Tensor, Target]]:
    """Two 96 x 160 noise images with one digit box each ([x1, y1, x2, y2] pixels)."""
    generator = torch.Generator().manual_seed(0)
    samples = [
        (
            torch.rand(3, 96, 160, generator=generator),
            {"boxes": torch.tensor([[40.0, 20.0, 70.0, 80.0]]), "labels": torch.tensor([3 + i])},
        )
        for i in range(2)
    ]
    return DataLoader(samples, batch_size=2, collate_fn=collate)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config_changes", "frozen", "trained"),
    [
        ({"freeze": ("backbone", "rpn")}, ("backbone.", "rpn."), ("roi_heads.",)),
        ({"freeze_backbone": True}, ("backbone.body.",), ("backbone.fpn.", "rpn.", "roi_heads.")),
    ],
)
def test_frozen_parts_keep_their_weights_and_batchnorm_statistics(
    config_changes: dict[str, object], frozen: tuple[str, ...], trained: tuple[str, ...]
) -> None:
    torch.manual_seed(0)
    config = replace(load_config("fast"), **config_changes)  # type: ignore[arg-type]
    model = build_model(config, torch.device("cpu"))
    randomise_batchnorm(model)  # running statistics a training batch would move
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    for epoch in (1, 2):
        train_one_epoch(
            model, optimizer, _two_image_loader(), torch.device("cpu"), epoch=epoch, show_progress=False
        )
    after = model.state_dict()
    stayed = [k for k in before if k.startswith(frozen)]
    moved = [k for k in before if k.startswith(trained) and not k.endswith("num_batches_tracked")]
    assert stayed and moved
    assert all(torch.equal(before[k], after[k]) for k in stayed)  # weights and BatchNorm buffers
    changed = {k for k in moved if not torch.equal(before[k], after[k])}
    assert any(k.endswith("weight") for k in changed)
    # The trainable BatchNorms still learn their statistics (the FPN's, when only the body is frozen).
    if "backbone.fpn." in trained:
        assert any(k.startswith("backbone.fpn.") and k.endswith("running_mean") for k in changed)


def test_freeze_matches_whole_module_names_and_refuses_a_prefix_that_names_nothing() -> None:
    model = torch.nn.ModuleDict({"rpn": torch.nn.Linear(2, 2), "rpnx": torch.nn.Linear(2, 2)})
    assert freeze(model, ["rpn"]) == ["rpn.weight", "rpn.bias"] == freeze(model, ["rpn", "rpn.bias"])
    assert model["rpnx"].weight.requires_grad and not model["rpn"].weight.requires_grad
    with pytest.raises(ValueError, match="'roi_head'"):
        freeze(model, ["roi_head"])


def test_an_annotation_file_is_read_under_the_root_else_as_given_and_named_under_the_root_if_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    assert annotation_path(root, "train.json") == root / "train.json"  # neither: the error names this
    (tmp_path / "train.json").write_text("{}")
    assert annotation_path(root, "train.json") == Path("train.json")  # a copy given beside us
    (root / "train.json").write_text("{}")
    assert annotation_path(root, "train.json") == root / "train.json"  # the root's comes first
