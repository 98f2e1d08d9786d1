"""Average the weights of several checkpoints of one run (stochastic weight averaging, SWA).

    python -m training.average runs/fast96-swa/epochs/* --out runs/fast96-swa/swa

The checkpoints must share one architecture (typically the epoch ends of a `schedule: cyclic` run with
`keep_epochs: true`, or runs restarted from one model); settings that steer inference only, such as the
shipped model's 30 region proposals, or training only, such as the box head's IoU thresholds or the
training image sizes (`TRAINING_ONLY`), may differ, and the last checkpoint's are kept. Parameters are
averaged; BatchNorm statistics of averaged weights are not the average of the statistics, so they are
re-estimated with forward passes over the training images (with the run's augmentations, as the
statistics were gathered in training), except where every checkpoint holds the same backbone (runs that
trained only the heads from one start, `freeze: [backbone, rpn]`): its statistics hold for the average as
they are. The training config and data come from the last checkpoint's metadata; `--data` points at
another copy of the data.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from models.atomic import staged_folder
from models.checkpoint import WEIGHT_DTYPES, load_checkpoint, save_checkpoint_like
from models.detector import DetectorConfig
from training.config import TrainConfig, config_from_dict
from training.data import DigitDataset, collate
from training.exits import run_tool
from training.sampling import shuffled_draws
from training.train import load_train_records, seed_everything
from training.transforms import TrainTransforms

log = logging.getLogger(__name__)

# detector settings that steer inference only (`training.export --test-proposals` sets one): checkpoints
# that differ in these alone hold weights of one architecture, such as a run's and the shipped model's
INFERENCE_ONLY = (
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test",
    "box_score_thresh",
    "box_nms_thresh",
    "box_detections_per_img",
)
# detector settings that steer training only - which proposals and anchors the losses sample, the
# training image sizes, which backbone layers learn - not the shape of any weight nor what the model
# computes in eval mode, so runs that differ in them can be averaged too. `train_scale_per_batch` is
# not listed: it swaps the model's transform class.
TRAINING_ONLY = (
    "box_fg_iou_thresh",
    "box_bg_iou_thresh",
    "rpn_pre_nms_top_n_train",
    "rpn_post_nms_top_n_train",
    "rpn_batch_size_per_image",
    "box_batch_size_per_image",
    "train_min_sizes",
    "trainable_backbone_layers",
)


def one_architecture(detectors: Sequence[DetectorConfig]) -> bool:
    """Whether `detectors` agree on everything but their `INFERENCE_ONLY` and `TRAINING_ONLY` settings."""
    ignored = INFERENCE_ONLY + TRAINING_ONLY
    shapes = [{k: v for k, v in asdict(d).items() if k not in ignored} for d in detectors]
    return all(shape == shapes[-1] for shape in shapes)


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors; a tensor every state holds alike, and tensors
    that are not floating point (BatchNorm's batch counters), are taken from the last state unchanged.
    All states must hold the same keys and shapes; raises ValueError."""
    if not states:
        raise ValueError("nothing to average")
    last = states[-1]
    if any(set(state) != set(last) for state in states):
        raise ValueError("checkpoints hold different tensors: not one architecture")
    averaged: dict[str, torch.Tensor] = {}
    for key, tensor in last.items():
        if any(state[key].shape != tensor.shape for state in states):
            raise ValueError(f"checkpoints differ in the shape of {key!r}: not one architecture")
        if tensor.is_floating_point() and not all(torch.equal(state[key], tensor) for state in states):
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(0).to(tensor.dtype)
        else:
            averaged[key] = tensor.clone()
    return averaged


@torch.no_grad()
def recompute_batchnorm(model: FasterRCNN, batches: Iterable[list[torch.Tensor]]) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance from `batches` of images
    (each a list of FloatTensor[3, H, W] in [0, 1], resized and normalised by the model's transform).

    The statistics become the plain average over all batches (momentum None), as in training mode;
    only the transform and the backbone run, since the heads hold no BatchNorm (torch's
    `swa_utils.update_bn` calls the whole model, which in training mode needs targets). The model is
    left in eval mode. Returns the number of images seen.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    device = next(model.parameters()).device
    model.train()
    seen = 0
    try:
        for images in batches:
            image_list, _ = model.transform([image.to(device) for image in images])
            model.backbone(image_list.tensors)
            seen += len(images)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("no images to estimate BatchNorm statistics from")
    return seen


def training_batches(config: TrainConfig, limit: int) -> Iterable[list[torch.Tensor]]:
    """Augmented training images of `config`, batch by batch (the first `limit` images; 0 = all). Each
    photo alone, also where `config` trained on mosaics (`augment.mosaic_p`): the statistics are for
    photos as they are served. Their order and augmentations are those of a training epoch 0 under
    `config.seed` (`training.sampling`), whatever `config.workers`."""
    train = load_train_records(config)
    records = train[:limit] if limit else train
    keyed, order = shuffled_draws(DigitDataset(records, TrainTransforms(config.augment)), config.seed)
    loader = DataLoader(
        keyed,
        batch_size=config.batch_size,
        sampler=order,
        num_workers=config.workers,
        collate_fn=collate,
        generator=seed_everything(config.seed),  # also the multi-scale size the model's transform draws
    )
    for images, _ in tqdm(loader, desc="BatchNorm statistics", leave=False):
        yield images


def same_backbone(states: Sequence[dict[str, torch.Tensor]]) -> bool:
    """Whether every state holds the same backbone tensors (weights and BatchNorm statistics), as runs
    that trained only the heads from one start do (`freeze: [backbone, ...]`). Every BatchNorm of the
    detector is in its backbone, so their average then has the backbone's statistics already."""
    last = states[-1]
    return all(
        torch.equal(state[key], tensor)
        for state in states
        for key, tensor in last.items()
        if key.startswith("backbone.")
    )


def average_checkpoints(
    sources: Sequence[Path], out: Path, data_root: str | None, bn_images: int, dtype: str
) -> Path:
    """Average `sources` into a checkpoint at `out`, BatchNorm re-estimated (unless they share one
    backbone, `same_backbone`); metadata (inference settings included) from the last."""
    loaded = [load_checkpoint(source) for source in sources]
    model, meta = loaded[-1]
    if not one_architecture([other.detector for _, other in loaded]):
        raise ValueError("the checkpoints have different architectures")
    states = [m.state_dict() for m, _ in loaded]
    # read before the average is loaded into the last model, whose tensors `states[-1]` holds
    shared = same_backbone(states)
    model.load_state_dict(average_state_dicts(states))
    config = config_from_dict(meta.training)
    if data_root:
        config = replace(config, data=replace(config.data, root=data_root))
    seen = 0
    if shared:
        log.info("the checkpoints share one backbone: its BatchNorm statistics kept")
    else:
        seen = recompute_batchnorm(model, training_batches(config, bn_images))
    averaged = {"sources": [str(s) for s in sources], "batchnorm_images": seen}  # 0: kept
    with staged_folder(out) as staging:  # all or nothing
        save_checkpoint_like(staging, model, meta, metrics={"averaged": averaged}, dtype=dtype)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders to average")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", help="data set root, if not the one the checkpoints were trained on")
    p.add_argument("--bn-images", type=int, default=0, help="training images for BatchNorm (0 = all)")
    p.add_argument("--dtype", choices=list(WEIGHT_DTYPES), default="float32")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = average_checkpoints(args.checkpoints, args.out, args.data, args.bn_images, args.dtype)
    print(f"wrote {folder}: the average of {len(args.checkpoints)} checkpoints")
    return folder


if __name__ == "__main__":
    run_tool(main)
