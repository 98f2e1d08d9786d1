"""The reader: a small digit classifier that gives a second opinion on each digit site
(`models.reread`), and its storage.

A reader lives in a folder as `reader.safetensors` plus `reader.json` (architecture width, crop
spec, mixing parameters, sha256 of the weights, metrics). Inside a checkpoint folder it is part of
that checkpoint: everything that loads the checkpoint uses it; without one, numbers are read from the
detector alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import load_part, save_part
from models.labels import NUM_DIGITS
from models.reread import CropSpec, RereadParams

READER = "reader"  # the part's name in a checkpoint folder
READER_WEIGHTS = f"{READER}.safetensors"
READER_META = f"{READER}.json"
NOT_A_DIGIT = NUM_DIGITS  # the class index of "no digit" in a reader with `not_digit`


class ReaderError(RuntimeError):
    """A reader folder is incomplete, malformed, or does not match its recorded hash."""


class CropNet(nn.Module):
    """A small VGG-style network on square crops: four stages of 3x3 convolutions with BatchNorm
    (`width`, 2 x, 4 x, 8 x `width` channels), max-pooling between stages, global average pooling.
    Input FloatTensor[N, 3 + extra_channels, S, S]: RGB in [0, 1] (normalised here with the ImageNet
    mean/std, as the detector does), then any extra channels in [0, 1] (masks; mapped to [-1, 1]);
    `features` gives FloatTensor[N, 8 x width]. Subclasses add a `head`."""

    mean: torch.Tensor
    std: torch.Tensor
    features: nn.Module  # nn.Sequential; an int8 graph of it once quantized (models/int8.py)
    head: nn.Module

    def __init__(self, width: int, extra_channels: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.width = width
        w = width
        self.features = nn.Sequential(
            *_conv(3 + extra_channels, w), *_conv(w, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d(2),
            *_conv(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Crops FloatTensor[N, 3 + extra_channels, S, S] as `forward` takes them -> what `features`
        takes: RGB normalised with the ImageNet mean/std, extra channels mapped to [-1, 1]."""
        rgb = (x[:, :3] - self.mean) / self.std
        if x.shape[1] > 3:
            rgb = torch.cat([rgb, x[:, 3:] * 2 - 1], dim=1)
        return rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalise(x)))


class DigitReader(CropNet):
    """The digit classifier (~0.6 M parameters at `width` 32): `CropNet` with dropout and a linear
    layer. Output logits FloatTensor[N, 10] for digits 0-9, or FloatTensor[N, 11] with `not_digit`:
    column 10 (`NOT_A_DIGIT`) is "this crop is no digit".
    """

    def __init__(self, width: int = 32, not_digit: bool = False) -> None:
        super().__init__(width)
        self.not_digit = not_digit
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * width, NUM_DIGITS + int(not_digit)))


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@dataclass(frozen=True)
class ReaderMeta:
    """What `reader.json` says."""

    width: int
    crop: CropSpec
    reread: RereadParams
    sha256: str
    dtype: str = "float32"
    metrics: dict[str, Any] = field(default_factory=dict)
    not_digit: bool = False  # an 11th output, "no digit" (readers written before it have 10)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ReaderMeta:
        return cls(
            width=int(doc["width"]),
            crop=CropSpec(**doc["crop"]),
            reread=RereadParams(**doc["reread"]),
            sha256=str(doc["sha256"]),
            dtype=str(doc.get("dtype", "float32")),
            metrics=dict(doc.get("metrics") or {}),
            not_digit=bool(doc.get("not_digit", False)),
        )


def save_reader(
    directory: str | Path,
    reader: DigitReader,
    crop: CropSpec,
    reread: RereadParams,
    *,
    metrics: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> ReaderMeta:
    """Write `reader`'s weights (as `dtype`) and `reader.json` into `directory` (created if needed)."""

    def meta(sha256: str) -> ReaderMeta:
        return ReaderMeta(reader.width, crop, reread, sha256, dtype, metrics or {}, reader.not_digit)

    return save_part(directory, READER, reader, dtype, meta)


def has_reader(directory: str | Path) -> bool:
    """True when `directory` holds a reader (its `reader.json`)."""
    return (Path(directory) / READER_META).is_file()


def load_reader(directory: str | Path, device: str | torch.device = "cpu") -> tuple[DigitReader, ReaderMeta]:
    """Verify and load the reader in `directory`: float32, eval mode, on `device`. Raises ReaderError."""
    reader, meta = load_part(
        directory, READER, ReaderMeta.from_dict, lambda m: DigitReader(m.width, m.not_digit), ReaderError
    )
    return reader.to(device), meta


def copy_reader(
    source: str | Path, directory: str | Path, dtype: str = "float32", detector_weight: float | None = None
) -> ReaderMeta:
    """Verify the reader in `source` and write it into `directory` (a checkpoint folder, say) as
    `dtype`, with its settings (the detector's weight in the mix replaced by `detector_weight` when
    given, `RereadParams`) and metrics."""
    reader, meta = load_reader(source)
    reread = meta.reread if detector_weight is None else replace(meta.reread, detector_weight=detector_weight)
    return save_reader(directory, reader, meta.crop, reread, metrics=meta.metrics, dtype=dtype)
