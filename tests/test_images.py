"""decode_image on a corpus of real photographs in every awkward form; preprocess."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import timm
import torch
from conftest import PHOTOS
from PIL import Image
from torch.testing import assert_close

import sevis
from sevis import ImageError


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.open(PHOTOS / "chelsea.png").convert("RGB")  # 451 x 300


def huge_png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header declares a huge image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_formats_decode_to_the_same_rgb_photograph(cat):
    reference = np.asarray(cat, dtype=np.int16)
    for fmt, kwargs, tolerance in [
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("JPEG", {"quality": 95}, 40),
    ]:
        out = sevis.decode_image(encode(cat, fmt, **kwargs))
        assert out.mode == "RGB" and out.size == cat.size, fmt
        diff = np.abs(np.asarray(out, dtype=np.int16) - reference)
        assert diff.max() <= tolerance and diff.mean() < 2, fmt


def test_grayscale_photograph_becomes_three_equal_channels():
    out = np.asarray(sevis.decode_image((PHOTOS / "camera.png").read_bytes()))
    gray = np.asarray(Image.open(PHOTOS / "camera.png"))
    assert out.shape == (*gray.shape, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], gray)


def test_palette_image_keeps_its_colours(cat):
    palette = cat.quantize(64)
    out = sevis.decode_image(encode(palette, "PNG"))
    assert out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg_comes_back_near_the_original(cat):
    out = sevis.decode_image(encode(cat.convert("CMYK"), "JPEG", quality=95))
    assert out.mode == "RGB" and out.size == cat.size
    assert np.abs(np.asarray(out, np.int16) - np.asarray(cat, np.int16)).mean() < 6


def test_sixteen_bit_grayscale_is_scaled_by_bit_depth():
    gray = np.asarray(Image.open(PHOTOS / "camera.png"), dtype=np.uint16)
    deep = Image.fromarray(gray * 257)  # full 16-bit range
    data = encode(deep, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = np.asarray(sevis.decode_image(data))
    assert np.abs(out[..., 0].astype(int) - gray).max() <= 1


def test_exif_orientation_is_applied(cat):
    # Stored rotated, with EXIF orientation 6 ("rotate 90 CW to display"), as phones do.
    stored = cat.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = sevis.decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == cat.size  # 451 x 300 again, not 300 x 451
    assert np.abs(np.asarray(out, np.int16) - np.asarray(cat, np.int16)).mean() < 3


def test_transparency_is_composited_on_white():
    logo = Image.open(PHOTOS / "logo.png")
    assert logo.mode == "RGBA"
    alpha = np.asarray(logo)[..., 3]
    out = np.asarray(sevis.decode_image((PHOTOS / "logo.png").read_bytes()))
    assert (out[alpha == 0] == 255).all()
    opaque = alpha == 255
    assert np.array_equal(out[opaque], np.asarray(logo)[..., :3][opaque])


def test_animation_and_multipage_give_the_first_frame():
    gif = (PHOTOS / "no_time_for_that_tiny.gif").read_bytes()
    frames = Image.open(io.BytesIO(gif))
    assert frames.n_frames > 1
    frames.seek(0)
    out = sevis.decode_image(gif)
    assert out.size == frames.size == (14, 25)
    assert np.array_equal(np.asarray(out), np.asarray(frames.convert("RGB")))
    tiff = sevis.decode_image((PHOTOS / "multipage.tif").read_bytes())
    first = Image.open(PHOTOS / "multipage.tif")
    assert tiff.size == first.size and np.array_equal(np.asarray(tiff)[..., 0], np.asarray(first))


def test_tiny_image_decodes_and_preprocesses(cat):
    tiny = sevis.decode_image(encode(cat.resize((1, 1)), "PNG"))
    assert tiny.size == (1, 1)
    x = sevis.preprocess(sevis.load_model("se_resnet50", "untrained"), tiny)
    assert x.shape == (1, 3, 224, 224) and torch.isfinite(x).all()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "the file is empty"),
        ((PHOTOS / "README.txt").read_bytes(), "not an image this app can read"),
        (b"\x00" * 1000, "not an image this app can read"),
        (huge_png_header(100_000, 100_000), "declares 10,000,000,000 pixels, more than the limit of 64,000,000"),
        (huge_png_header(10_000, 8_000), "declares 10000 x 8000 pixels, more than the limit of 64,000,000"),
    ],
    ids=["empty", "text", "zeros", "bomb", "huge-declared"],
)
def test_refused_inputs(data, message):
    with pytest.raises(ImageError, match=message):
        sevis.decode_image(data)


def test_truncated_photograph_is_refused():
    jpeg = (PHOTOS / "rocket.jpg").read_bytes()
    with pytest.raises(ImageError, match="JPEG file is truncated or corrupt"):
        sevis.decode_image(jpeg[: len(jpeg) // 2])
    png = (PHOTOS / "coffee.png").read_bytes()
    with pytest.raises(ImageError, match="PNG file is truncated or corrupt"):
        sevis.decode_image(png[: len(png) // 3])


def test_other_formats_are_named_and_refused(cat):
    for fmt in ("ICO", "PCX", "TGA"):
        with pytest.raises(ImageError, match=f"{fmt} images are not accepted; use one of JPEG, PNG"):
            sevis.decode_image(encode(cat.resize((64, 64)), fmt))


def test_error_is_a_value_error_and_type_is_checked():
    assert issubclass(ImageError, ValueError)
    with pytest.raises(TypeError, match="data must be bytes"):
        sevis.decode_image("cat.jpg")


def test_preprocess_equals_timm_eval_transform(cat):
    for name in ("se_resnet50", "seresnet50.ra2_in1k"):
        model = sevis.load_model(name, "untrained")
        transform = timm.data.create_transform(**model.sevis_info.data_config)
        expected = torch.stack([transform(cat), transform(cat.rotate(90, expand=True))])
        assert_close(sevis.preprocess(model, [cat, cat.rotate(90, expand=True)]), expected)
    view = sevis.model_view(model, cat)
    assert view.size == (224, 224)


def test_phone_mpo_jpeg_gives_its_first_picture(cat):
    # Phones save JPEGs with a second picture inside (MPO); Pillow opens them as MPO.
    second = cat.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    data = encode(cat, "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = sevis.decode_image(data)
    assert out.size == cat.size
    assert np.abs(np.asarray(out, np.int16) - np.asarray(cat, np.int16)).mean() < 2
