import contextlib
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from service.imaging import (
    ALLOWED_FORMATS,
    CorruptImageError,
    EmptyImageError,
    ExtremeAspectRatioError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedFormatError,
    decode_image,
    reduction,
    to_model_input,
)
from training.data import load_image

MAX = 4_000_000


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_png_decodes_to_uint8_pixels_and_unit_range_model_input() -> None:
    decoded = decode_image(encode(Image.new("RGB", (30, 10), (255, 0, 0))), MAX)
    assert decoded.pixels.shape == (10, 30, 3) and decoded.pixels.dtype == np.uint8
    tensor = to_model_input(decoded.pixels)
    assert tensor.shape == (3, 10, 30) and tensor.dtype == torch.float32
    assert tensor[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and decoded.format == "PNG"


def test_model_input_is_bit_for_bit_what_training_and_evaluation_read(tmp_path: Path) -> None:
    """The service's input for an upload equals `training.data.load_image` of the same file exactly:
    every one of the 256 channel values converts the same way (dividing by 255 would not)."""
    values = np.arange(256 * 3, dtype=np.uint8).reshape(16, 16, 3)  # each value in every channel
    data = encode(Image.fromarray(values))
    (tmp_path / "a.png").write_bytes(data)
    served = to_model_input(decode_image(data, MAX).pixels)
    assert torch.equal(served, load_image(tmp_path / "a.png"))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(Image.new("RGB", (40, 20), "white"), "JPEG", exif=exif)
    decoded = decode_image(data, MAX)
    assert (decoded.width, decoded.height) == (20, 40)


@pytest.mark.parametrize(
    ("size", "reduce_to", "factor"),
    [
        ((4032, 3024), 1536, 2),  # a phone photo: 2016 x 1512 (a third would be 1344, under 1536)
        ((3024, 4032), 1536, 2),
        ((3071, 2000), 1536, 1),  # half would be 1535.5
        ((3072, 2000), 1536, 2),
        ((6000, 4000), 1536, 3),  # 2000 x 1334
        ((20000, 500), 1536, 13),
        ((4032, 3024), 0, 1),  # 0: never
    ],
)
def test_reduction_keeps_the_longer_side_at_least_reduce_to(
    size: tuple[int, int], reduce_to: int, factor: int
) -> None:
    assert reduction(*size, reduce_to) == factor


def halves(size: tuple[int, int]) -> Image.Image:
    """Black on the left half, white on the right."""
    image = Image.new("RGB", size, "white")
    image.paste((0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_photo_is_read_reduced_and_says_its_scale(fmt: str) -> None:
    decoded = decode_image(encode(halves((1200, 800)), fmt), MAX, reduce_to_px=300)
    assert decoded.pixels.shape == (200, 300, 3) and (decoded.width, decoded.height) == (1200, 800)
    assert decoded.scale == (4.0, 4.0) and decoded.format == fmt
    assert decoded.pixels[:, :140].max() < 40 and decoded.pixels[:, 160:].min() > 215  # the same picture
    whole = decode_image(encode(halves((1200, 800)), fmt), MAX, reduce_to_px=0)
    assert whole.pixels.shape == (800, 1200, 3) and whole.scale == (1.0, 1.0)


def test_a_reduced_photo_turned_by_exif_is_upright_at_its_upright_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: stored 1000 x 600, upright 600 x 1000
    decoded = decode_image(encode(halves((1000, 600)), "JPEG", exif=exif), MAX, reduce_to_px=400)
    assert (decoded.width, decoded.height) == (600, 1000) and decoded.pixels.shape == (500, 300, 3)
    assert decoded.scale == (2.0, 2.0)
    assert decoded.pixels[:230].max() < 40 and decoded.pixels[270:].min() > 215  # the left half on top


def test_odd_sizes_give_each_axis_its_own_scale() -> None:
    decoded = decode_image(encode(Image.new("RGB", (1001, 601)), "JPEG"), MAX, reduce_to_px=250)
    h, w = decoded.pixels.shape[:2]
    assert (w, h) == (251, 151) and decoded.scale == (1001 / 251, 601 / 151)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("P", "PNG"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("LA", "PNG"),
        ("RGBA", "PNG"),
        ("I;16", "PNG"),
        ("I", "TIFF"),
        ("F", "TIFF"),
    ],
)
def test_modes_become_rgb(mode: str, fmt: str) -> None:
    image = Image.new(mode, (8, 6))
    decoded = decode_image(encode(image, fmt), MAX)
    assert decoded.pixels.shape == (6, 8, 3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG"), MAX)
    red, green, blue = (decoded.pixels[3, 3] / 255).tolist()
    assert red > 0.9 and green < 0.1 and blue < 0.1


def test_transparent_pixels_composite_over_white() -> None:
    decoded = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), MAX)
    assert np.all(decoded.pixels == 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_a_palette_images_transparent_colour_composites_over_white(fmt: str) -> None:
    # Index 0 is black and transparent, index 1 black and opaque: only the transparent half turns white.
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0] * 256)
    image.paste(1, (0, 1, 4, 2))
    decoded = decode_image(encode(image, fmt, transparency=0), MAX)
    assert np.all(decoded.pixels[0] == 255) and np.all(decoded.pixels[1] == 0)


def test_sixteen_bit_scales_to_eight_bit() -> None:
    image = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.all(decode_image(encode(image), MAX).pixels == 255)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in ("white", "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert np.all(decode_image(buffer.getvalue(), MAX).pixels > 230)


@pytest.mark.parametrize("size", [(1, 1), (50, 1), (1, 50)])
def test_tiny_images_up_to_the_largest_aspect_ratio(size: tuple[int, int]) -> None:
    assert decode_image(encode(Image.new("RGB", size)), MAX).pixels.shape == (size[1], size[0], 3)


def test_empty_upload() -> None:
    with pytest.raises(EmptyImageError):
        decode_image(b"", MAX)


def test_not_an_image() -> None:
    with pytest.raises(NotAnImageError):
        decode_image(b"hello, this is text", MAX)


def test_format_outside_allow_list() -> None:
    with pytest.raises(UnsupportedFormatError, match="PNG"):
        decode_image(encode(Image.new("RGB", (4, 4))), MAX, allowed_formats=frozenset({"JPEG"}))


def test_truncated_image_is_corrupt() -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2], MAX)


def test_pixel_bomb_refused_from_header() -> None:
    # A 20000 x 20000 PNG whose pixel data is a tiny zlib stream: refused before decoding.
    bomb = encode(Image.new("1", (20000, 20000)))
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode_image(bomb, MAX)


def test_more_pixels_than_the_setting_allows() -> None:
    with pytest.raises(ImageTooLargeError, match="3000x2000 pixels, more than the 4000000 allowed"):
        decode_image(encode(Image.new("1", (3000, 2000))), MAX)


@pytest.mark.parametrize("size", [(2000, 20), (20, 2000), (1001, 20)])
def test_strips_over_the_aspect_ratio_limit_are_refused_from_the_header(size: tuple[int, int]) -> None:
    with pytest.raises(
        ExtremeAspectRatioError, match=f"{size[0]}x{size[1]} pixels: one side is more than 50"
    ):
        decode_image(encode(Image.new("RGB", size)), MAX)


def test_the_aspect_ratio_limit_is_inclusive_and_settable() -> None:
    assert decode_image(encode(Image.new("RGB", (1000, 20))), MAX).pixels.shape == (20, 1000, 3)
    assert decode_image(encode(Image.new("RGB", (20, 1000))), MAX).pixels.shape == (1000, 20, 3)
    with pytest.raises(ExtremeAspectRatioError, match="more than 4 times"):
        decode_image(encode(Image.new("RGB", (126, 30))), MAX, max_aspect_ratio=4)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_image_errors(data: bytes) -> None:
    with contextlib.suppress(ImageError):
        decode_image(data, MAX)


def assert_decodes_or_refuses(data: bytes) -> None:
    """Either 8-bit RGB pixels or an ImageError (a 4xx): nothing else, which would be a 500."""
    try:
        decoded = decode_image(data, MAX)
    except ImageError:
        return
    assert decoded.pixels.shape[2] == 3 and decoded.pixels.dtype == np.uint8


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_mutated_png_never_raises_anything_but_image_errors(position: int, value: int) -> None:
    data = bytearray(encode(Image.effect_noise((32, 24), 40).convert("RGB")))
    data[position % len(data)] = value
    assert_decodes_or_refuses(bytes(data))


def test_zlib_is_available_for_png() -> None:  # guards the bomb test's premise
    assert zlib.compress(b"\0" * 1000)


@pytest.mark.parametrize("head", [b"GIF89a-junk", b"\x89PNG\r\n\x1a\n-junk", b"\xff\xd8\xff-junk"])
def test_image_signature_with_broken_body_is_corrupt_not_unknown(head: bytes) -> None:
    with pytest.raises(CorruptImageError):
        decode_image(head, MAX)


# Phone cameras' formats: HEIC/HEIF through libheif (pillow-heif), AVIF through Pillow itself.
AVIF_READ = "AVIF" in ALLOWED_FORMATS
PHONE_FORMATS = [
    "HEIF",
    pytest.param("AVIF", marks=pytest.mark.skipif(not AVIF_READ, reason="no AVIF in this Pillow")),
]


def dark_corner_photo() -> Image.Image:
    """120 x 60 white with a black 40 x 20 block at its top left: where the block lands says how the
    photo was turned."""
    image = Image.new("RGB", (120, 60), "white")
    image.paste((0, 0, 0), (0, 0, 40, 20))
    return image


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_decode_to_the_photos_pixels(fmt: str) -> None:
    decoded = decode_image(encode(dark_corner_photo(), fmt, quality=90), MAX)
    assert decoded.format == fmt and (decoded.width, decoded.height) == (120, 60)
    assert decoded.pixels.shape == (60, 120, 3) and decoded.pixels.dtype == np.uint8
    assert decoded.pixels[5, 5].max() < 40 and decoded.pixels[50, 100].min() > 215  # lossy, not exact


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_are_turned_upright_once(fmt: str) -> None:
    """EXIF orientation 6 (turn 90 degrees clockwise to display). pillow-heif writes the file as a
    phone does, with the turn in both the HEIF's own rotation and the EXIF; libheif applies the
    rotation as it decodes and pillow-heif sets the EXIF to 1. Pillow's AVIF keeps the turn in the
    EXIF alone. Either way the photo must come back turned once: turned twice, it would be 120 x 60."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(dark_corner_photo(), fmt, quality=90, exif=exif.tobytes())
    if fmt == "HEIF":  # the premise: the file holds the turn twice over
        raw = Image.open(io.BytesIO(data))
        assert raw.size == (60, 120) and raw.info["original_orientation"] == 6
    decoded = decode_image(data, MAX)
    assert (decoded.width, decoded.height) == (60, 120)
    assert decoded.pixels[5, 55].max() < 40 and decoded.pixels[5, 5].min() > 215  # the block: top right


def test_a_heif_holding_several_images_gives_its_primary_one() -> None:
    """The primary image is the one a phone's gallery shows; here it is the second of two."""
    black, white = Image.new("RGB", (64, 32), "black"), Image.new("RGB", (64, 32), "white")
    data = encode(black, "HEIF", save_all=True, append_images=[white], primary_index=1)
    assert Image.open(io.BytesIO(data)).n_frames == 2  # the premise
    assert decode_image(data, MAX).pixels.min() > 200


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_damaged_phone_formats_are_corrupt_not_unknown(fmt: str) -> None:
    data = encode(Image.effect_noise((64, 48), 40).convert("RGB"), fmt, quality=60)
    for cut in (40, len(data) // 2, len(data) - 8):
        with pytest.raises(CorruptImageError):
            decode_image(data[:cut], MAX)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_over_the_pixel_limit_are_refused(fmt: str) -> None:
    with pytest.raises(ImageTooLargeError, match="120x60 pixels, more than the 5000 allowed"):
        decode_image(encode(dark_corner_photo(), fmt), 5000)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_phone_formats_never_raise_anything_but_image_errors(
    fmt: str, changes: list[tuple[int, int]]
) -> None:
    """libheif and libavif report damage as RuntimeError: it must come out as a CorruptImageError
    (a 400), not a 500."""
    data = bytearray(_PHONE_SAMPLES[fmt])
    for position, value in changes:
        data[position % len(data)] = value
    assert_decodes_or_refuses(bytes(data))


_PHONE_SAMPLES = {
    fmt: encode(Image.effect_noise((48, 32), 40).convert("RGB"), fmt, quality=60)
    for fmt in ["HEIF"] + ["AVIF"] * AVIF_READ
}
