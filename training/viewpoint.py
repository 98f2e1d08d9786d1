"""Photos of a house number seen from off its axis: from the side of the street (the plate turned
about its upright axis, `yaw`) or from below (turned about its level axis, `pitch`), for measuring how
well a number photographed at an angle is read (`training.degrade`'s `oblique` and `below`).

The photo is taken as a flat plate facing a pinhole camera whose field of view spans the photo's
width (`FOV` degrees); the plate is turned about its centre and photographed again. The far side comes
out shorter and nearer the centre, the near side taller: a digit's width shrinks by about the cosine of
the turn and the number's height changes along it (keystone). Nothing is cut: the new photo is the
turned plate's bounding box, and the corners it leaves bare take the colour of the photo's rim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from PIL import Image

#: the field of view, in degrees, that the photo's width spans: about half a phone's wide side, a house
#: number photographed from across a street and cropped to its plate
FOV: Final[float] = 40.0


def perspective_coeffs(src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]) -> list[float]:
    """The 8 coefficients of `Image.transform(..., Image.Transform.PERSPECTIVE, ...)` that map each of
    the four output points `dst` to the input point `src` beside it (x, y in px). LinAlgError when three
    of the points lie on a line."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return [float(c) for c in np.linalg.solve(np.array(rows, float), np.array(rhs, float))]


def view_points(
    points: np.ndarray, size: tuple[int, int], yaw: float, pitch: float, fov: float = FOV
) -> np.ndarray:
    """`points` [N, 2] (x, y in px of a `size` = (width, height) photo) where they land when the photo's
    plate is turned `yaw` degrees about its upright axis through its centre (positive: its right side
    away from the camera) and `pitch` degrees about its level one (positive: its top away, as seen from
    below), seen by a camera whose view spans `fov` degrees of the photo's width. [N, 2] float, in the
    px of the photo as it was, before any shift (the centre stays where it was). ValueError for a turn
    of 80 degrees or more either way, or a `fov` outside (0, 120)."""
    if not (abs(yaw) < 80 and abs(pitch) < 80):
        raise ValueError(f"a turn must be under 80 degrees either way, not yaw {yaw}, pitch {pitch}")
    if not 0 < fov < 120:
        raise ValueError(f"a field of view must be in (0, 120) degrees, not {fov}")
    width, height = size
    half = width / 2
    distance = 1 / math.tan(math.radians(fov) / 2)  # camera to plate, in half-widths
    u = (np.asarray(points, float)[:, 0] - width / 2) / half
    v = (np.asarray(points, float)[:, 1] - height / 2) / half
    a, b = math.radians(yaw), math.radians(pitch)
    # turn about y (yaw: +x goes away, +z), then about x (pitch: the top, -y, goes away)
    x1, z1 = u * math.cos(a), u * math.sin(a)
    y2, z2 = v * math.cos(b), z1 - v * math.sin(b)
    depth = distance + z2
    return np.stack([half * distance * x1 / depth + width / 2, half * distance * y2 / depth + height / 2], 1)


def _frame(size: tuple[int, int], yaw: float, pitch: float, fov: float) -> tuple[np.ndarray, float, float]:
    """The photo's four corners (top left, top right, bottom right, bottom left) as `view_points` turns
    them, and the top left of their bounding box, rounded down: where the seen photo starts."""
    width, height = size
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], float)
    turned = view_points(corners, size, yaw, pitch, fov)
    left, top = np.floor(turned.min(axis=0))
    return turned, float(left), float(top)


def seen_from(photo: Image.Image, yaw: float, pitch: float = 0.0, fov: float = FOV) -> Image.Image:
    """`photo` (RGB) as `view_points` turns it, bicubic, on the bounding box of its four turned corners
    (rounded out); the bare corners take the median colour of the photo's one-pixel rim. A turn of 0
    both ways returns the photo unchanged."""
    photo = photo.convert("RGB")
    if yaw == 0 and pitch == 0:
        return photo
    width, height = photo.size
    turned, left, top = _frame((width, height), yaw, pitch, fov)
    right, bottom = np.ceil(turned.max(axis=0))
    shifted = [(float(x - left), float(y - top)) for x, y in turned]
    corners = [(0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height))]
    coeffs = perspective_coeffs(corners, shifted)
    size = (max(1, int(right - left)), max(1, int(bottom - top)))
    return photo.transform(
        size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC, fillcolor=rim_colour(photo)
    )


def view_box(
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    yaw: float,
    pitch: float = 0.0,
    fov: float = FOV,
) -> tuple[float, float, float, float]:
    """Where an xyxy `box` of a `size` = (width, height) photo lies in `seen_from`'s photo at the same
    turn: the bounding box of its four turned corners, in the seen photo's pixels."""
    if yaw == 0 and pitch == 0:
        return box
    x1, y1, x2, y2 = box
    _, left, top = _frame(size, yaw, pitch, fov)
    turned = view_points(np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], float), size, yaw, pitch, fov)
    (a, b), (c, d) = turned.min(axis=0), turned.max(axis=0)
    return float(a - left), float(b - top), float(c - left), float(d - top)


def rim_colour(photo: Image.Image) -> tuple[int, int, int]:
    """The median RGB colour of `photo`'s outermost pixels (its one-pixel rim), each channel an int."""
    pixels = np.asarray(photo.convert("RGB"))
    rim = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    red, green, blue = (int(v) for v in np.median(rim, axis=0))
    return red, green, blue
