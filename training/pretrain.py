"""Pretrain the detector's backbone as a digit classifier on crops cut around the training boxes.

    python -m training.pretrain --config configs/fast.yaml --out runs/pretrain-crops --epochs 10

With no ImageNet weights, this is our substitute: the backbone first learns what digits look like from
every labelled box (tens of thousands of crops, cheap at 48 px), then detection training starts from it
via `init_from: runs/pretrain-crops/best`. The output is an ordinary detector checkpoint whose backbone
body holds the classifier's weights; the FPN and heads are freshly initialised.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from models.atomic import staged_folder
from models.checkpoint import save_checkpoint
from models.detector import build_detector
from training.crops import (
    add_crop_training_args,
    add_degradation_args,
    crop_params,
    crop_sets,
    fit_on_crops,
    load_crop_config,
)
from training.exits import run_tool
from training.train import seed_everything

log = logging.getLogger(__name__)


class CropClassifier(nn.Module):
    """A detector's backbone body + global average pooling + a 10-way linear layer.

    Input FloatTensor[B, 3, S, S] RGB in [0, 1] (normalised here with the detector's mean/std);
    output logits FloatTensor[B, 10].
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, body: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        was_training = body.training
        body.eval()
        with torch.no_grad():
            channels = self._features(torch.zeros(1, 3, 64, 64)).shape[1]
        body.train(was_training)
        self.head = nn.Linear(channels, 10)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body((x - self.mean) / self.std)
        last = list(features.values())[-1] if isinstance(features, dict) else features
        return last.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_crop_training_args(p, epochs=10, lr=0.02)  # lr 0.1 stalled at the class prior (0.18 after 4 epochs)
    add_degradation_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_crop_config(args)
    train_set, valid_set, fingerprint = crop_sets(
        config, crop_params(args), preload=args.preload_images, progress=not args.no_progress
    )
    seed_everything(args.seed)  # the initial weights too: the same flags give the same backbone
    detector = build_detector(config.detector)
    model = CropClassifier(detector.backbone.body, config.detector.image_mean, config.detector.image_std)

    def keep_best(history: list[dict[str, float]]) -> None:
        *before, row = history  # from the rows alone, so that a resumed run keeps the same epoch
        if all(row["val_accuracy"] > earlier["val_accuracy"] for earlier in before):
            with staged_folder(args.out / "best") as staging:
                save_checkpoint(
                    staging,
                    detector,
                    config.detector,
                    assembly=config.assembly,
                    training={
                        "pretrain": {k: str(v) for k, v in vars(args).items()},
                        "crop": asdict(train_set.params),
                    },
                    data_fingerprint=fingerprint,
                    metrics={"crop_pretraining": row},
                )

    history = fit_on_crops(model, train_set, valid_set, args, keep_best)
    best = max((row["val_accuracy"] for row in history), default=float("nan"))
    log.info("best crop accuracy %.4f; checkpoint %s", best, args.out / "best")
    return args.out / "best"


if __name__ == "__main__":
    run_tool(main)
