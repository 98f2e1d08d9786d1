"""Uploaded bytes -> an RGB image tensor, or a typed error that says what is wrong with the upload.

Pure: no model, no server. Decompression bombs, and strips far longer than they are high (or the
other way round), are refused from the header before any pixel is decoded; EXIF orientation is
applied; palette, grey, CMYK, alpha and 16-bit images become 8-bit RGB (alpha over white);
animated images give their first frame. Phone cameras' HEIC/HEIF is read through libheif
(pillow-heif), its primary image where it holds several; AVIF by Pillow itself. A photo at least
twice `reduce_to_px` on its longer side (a phone's 4032 x 3024) is read reduced by a whole factor
(each output pixel the mean of a k x k block), and `DecodedImage.scale` maps what is found back to
its pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pillow_heif
import torch
from PIL import Image, ImageOps, UnidentifiedImageError, features

from models.inference import to_unit_float

# libheif applies a HEIF file's own rotation and mirroring as it decodes, and pillow-heif then sets
# the EXIF orientation to 1, so `exif_transpose` below does not turn the photo a second time. One
# decoding thread: request threads must not compete with the model thread's pool (`DecodedImage`);
# a 12-megapixel HEIC takes ~0.6 s with one thread and ~0.5 s with four on a slow 2-core host. No
# thumbnails, depth maps or auxiliary images: only the photo is read.
pillow_heif.register_heif_opener(decode_threads=1, thumbnails=False, depth_images=False, aux_images=False)

# AVIF where Pillow's build reads it (its wheels carry libavif; this project's mirror serves 13.0).
ALLOWED_FORMATS = frozenset(
    {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "HEIF"} | ({"AVIF"} if features.check("avif") else set())
)
# The file names the command line reads as images: every suffix Pillow (with pillow-heif) registers
# for an accepted format (.jpg, .jpeg, .jfif, .heic, .hif, ...).
IMAGE_SUFFIXES = frozenset(
    ext for ext, fmt in Image.registered_extensions().items() if fmt in ALLOWED_FORMATS
)
# Longer side / shorter side. The detector scales an image so that its longer side is at most its
# max_size (384 px for the shipped model), so a long, narrow photo reaches it shrunk: at 50:1 under
# 8 px high. The search then reads it in tiles along its length, each at most 4:1 (models/zoom.py,
# experiment 153): 24 tiles at 50:1, p50 ~0.6 s a photo on 2 CPU cores. Past max_size:1 the whole
# photo would be under one pixel high at the first pass, which the model cannot take.
MAX_ASPECT_RATIO = 50.0
# A photo whose longer side is at least twice this is read reduced, to no less than this. The tile
# search (models/zoom.py) cuts a large photo into at most 4 x 4 tiles, each scaled to the detector's
# max_size (384 px for the shipped model): 4 x 384 = 1536. Only the crops of the second look and of
# the reader could use more pixels; at half size they read as many numbers (experiment 149, which also
# found libjpeg's faster reduced decoding, PIL's `draft`, reading 7 fewer of 200 small numbers).
REDUCE_TO_PX = 1536
# Bytes that start like an image but do not open are corrupt, not "not an image".
IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
# ISO base media files (HEIF, AVIF) say what they are in their first box: bytes 4-8 are `ftyp` and
# 8-12 the major brand.
ISOBMFF_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)


def looks_like_image(data: bytes) -> bool:
    """Whether `data` starts as a format we read: a damaged file of one is corrupt, not "not an image"."""
    return (
        data.startswith(IMAGE_SIGNATURES)
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or (data[4:8] == b"ftyp" and data[8:12] in ISOBMFF_IMAGE_BRANDS)
    )


class ImageError(ValueError):
    """Base of the upload errors; the message is meant for the caller."""


class EmptyImageError(ImageError):
    """No bytes at all."""


class NotAnImageError(ImageError):
    """The bytes are not an image in any format we know."""


class UnsupportedFormatError(ImageError):
    """An image, but in a format outside the allow-list."""


class CorruptImageError(ImageError):
    """A known format whose data is truncated or damaged."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed (a decompression bomb, or just too big)."""


class ExtremeAspectRatioError(ImageError):
    """One side many times the other (a strip, not a photo of a number)."""


@dataclass(frozen=True)
class DecodedImage:
    """`pixels` is uint8 RGB [H, W, 3], upright (EXIF applied); `format` is PIL's name.

    Deliberately no torch tensor: torch ops on request threads compete with the model thread's OpenMP
    pool (measured: 34 ms instead of 21 ms per forward pass on 2 cores). `to_model_input` converts on
    the model thread."""

    pixels: np.ndarray
    width: int
    height: int
    format: str
    scale: tuple[float, float] = (1.0, 1.0)
    """Upload pixels per pixel of `pixels`, (x, y): `width / W` and `height / H` of pixels' [H, W]; (1, 1)
    unless the photo was read reduced."""


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float RGB FloatTensor[3, H, W] in [0, 1], as the detector takes it: the
    same values, bit for bit, as training and evaluation read from the same image file
    (`models.inference.to_unit_float`)."""
    return to_unit_float(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1))


def reduction(width: int, height: int, reduce_to_px: int) -> int:
    """The largest whole factor k that keeps an image's longer side at least `reduce_to_px` (pixels)
    when it is divided by k; 1 when `reduce_to_px` is 0."""
    return max(1, max(width, height) // reduce_to_px) if reduce_to_px > 0 else 1


def decode_image(
    data: bytes,
    max_pixels: int,
    allowed_formats: frozenset[str] = ALLOWED_FORMATS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
    reduce_to_px: int = REDUCE_TO_PX,
) -> DecodedImage:
    """Decode one upload. Raises an ImageError subclass for anything unusable: among them an image
    with more than `max_pixels` pixels or whose longer side is more than `max_aspect_ratio` times
    its shorter side. An image whose longer side is at least twice `reduce_to_px` comes back reduced
    (`reduction`; 0: never)."""
    if not data:
        raise EmptyImageError("the upload is empty")
    image = _open(data)
    fmt = (image.format or "").upper()
    if fmt not in allowed_formats:
        raise UnsupportedFormatError(
            f"image format {fmt or 'unknown'} is not accepted; use one of {sorted(allowed_formats)}"
        )
    if image.width * image.height > max_pixels:
        raise ImageTooLargeError(
            f"image is {image.width}x{image.height} pixels, more than the {max_pixels} allowed"
        )
    longer, shorter = max(image.width, image.height), min(image.width, image.height)
    if longer > max_aspect_ratio * shorter:
        raise ExtremeAspectRatioError(
            f"image is {image.width}x{image.height} pixels: one side is more than {max_aspect_ratio:g} times "
            "the other; crop it around the number"
        )
    rgb = _to_rgb(_first_frame_upright(image))
    width, height = rgb.size  # upright, whole
    factor = reduction(width, height, reduce_to_px)
    if factor > 1:
        rgb = rgb.reduce(factor)  # the mean of each factor x factor block; the last ones may be smaller
    return DecodedImage(
        pixels=np.array(rgb, dtype=np.uint8),
        width=width,
        height=height,
        format=fmt,
        scale=(width / rgb.width, height / rgb.height),
    )


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        if looks_like_image(data):
            raise CorruptImageError("the image is truncated or damaged beyond reading its header") from exc
        raise NotAnImageError("the upload is not a recognisable image") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLargeError(f"image is too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError, RuntimeError) as exc:  # libheif and libavif raise RuntimeError
        raise CorruptImageError(f"the image header is damaged: {exc}") from exc


def _first_frame_upright(image: Image.Image) -> Image.Image:
    try:
        if image.format != "HEIF":  # a HEIF opens at its primary image, the one shown, not always its first
            image.seek(0)
        image.load()
        return ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"the image data is truncated or damaged: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency composited over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.uint8(np.clip(values / top * 255.0, 0, 255)), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
