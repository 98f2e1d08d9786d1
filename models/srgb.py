"""The sRGB transfer curve (IEC 61966-2-1): 8-bit grey levels to linear light and back, for the photo
steps that work on light rather than on grey levels (`models.balance`) and for the photos
`training.degrade` darkens, brightens and tints as a camera would."""

from __future__ import annotations

from typing import Final

import numpy as np


def to_linear(levels: np.ndarray) -> np.ndarray:
    """sRGB grey levels (0-255, any shape and number type) -> linear light (0-1), float64, same shape."""
    v = np.asarray(levels, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def to_srgb(light: np.ndarray) -> np.ndarray:
    """Linear light (any shape; clipped to 0-1) -> uint8 sRGB grey levels, rounded to the nearest."""
    light = np.clip(np.asarray(light, dtype=np.float64), 0.0, 1.0)
    v = np.where(light <= 0.0031308, light * 12.92, 1.055 * light ** (1 / 2.4) - 0.055)
    return np.rint(v * 255.0).astype(np.uint8)


#: the linear light of each of the 256 grey levels, float64 [256]: a look-up is ~20 x faster than the curve
LINEAR: Final[np.ndarray] = to_linear(np.arange(256))
