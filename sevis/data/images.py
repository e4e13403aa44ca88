"""Images from untrusted uploads, and the model's evaluation preprocessing.

:func:`decode_image` turns bytes into an RGB ``PIL.Image`` or raises
:class:`~sevis.errors.ImageError` with a message a person understands.
:func:`preprocess` applies the model's ImageNet evaluation transform (resize the
shorter side to ``floor(size / crop_pct)``, centre crop, normalise), the same as
``timm.data.create_transform`` for the model's pretrained config;
:func:`model_view` is the crop before normalisation, which attention maps line up with.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torchvision.transforms import InterpolationMode, functional as TF

from ..errors import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_ASPECT_RATIO",
    "MAX_DECODED_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "decode_image",
    "jpeg_scans",
    "load_view",
    "model_view",
    "normalise",
    "preprocess",
]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PIXELS = 64_000_000
"""Largest accepted width x height."""
MAX_DECODED_BYTES = 256 * 1024**2
"""Largest decoded image, as Pillow keeps it: 4 bytes a pixel for RGB, RGBA, CMYK and
32-bit modes, 2 for 16-bit, 1 for grayscale and palette (a 64-megapixel photograph is
256 MB). Decoding one image holds at most twice this at once: the decoded image and the
RGB image made from it (converted strip by strip, never through float64)."""
MAX_ASPECT_RATIO = 50
"""Longest side over shortest: the model's resize makes the short side 256 px, so a
1 x 100,000 image would become 256 x 25,600,000 (26 GB)."""
MAX_JPEG_SCANS = 64
"""Most scans a JPEG may have (a progressive photograph has about 10). Each scan is one
more pass over every coefficient, so the work is bounded too: scans x pixels may not
exceed ``MAX_JPEG_SCANS x 12`` megapixels (a 64-megapixel JPEG may have 12 scans)."""
_MAX_SCAN_PIXELS = MAX_JPEG_SCANS * 12_000_000
_STRIP = 512  # rows converted at a time


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an uploaded image into an RGB ``PIL.Image``.

    Accepts JPEG, PNG, WebP, BMP, GIF and TIFF. Applies EXIF orientation; converts
    palette, grayscale, CMYK and 16-bit images; composites transparency on white;
    takes the first frame of an animation or multi-page file.

    Raises:
        ImageError: empty, truncated, not an image, another format, or more than
            ``max_pixels`` pixels (checked from the header, before decoding).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(_not_accepted(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow refuses before sevis sees the size; its message carries the pixel count.
        declared = re.search(r"\((\d+) pixels\)", str(err))
        count = f"{int(declared[1]):,} pixels" if declared else "too many pixels"
        raise ImageError(_too_large(count, max_pixels)) from None
    except Exception as err:  # noqa: BLE001  Pillow's plugins raise nearly any type on a damaged header
        raise ImageError(f"the image header is damaged ({err})") from None
    _check_cost(image, data, max_pixels)
    try:
        image.seek(0)
        image.load()
        # NOTE in place: exif_transpose otherwise returns a copy even of an upright image
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as err:  # noqa: BLE001  truncated: OSError; corrupt: SyntaxError, ValueError, struct.error…
        raise ImageError(f"the {image.format} file is truncated or corrupt ({str(err)[:200]})") from None
    return _to_rgb(image)


def _check_cost(image: Image.Image, data: bytes | bytearray | memoryview, max_pixels: int) -> None:
    """Refuse, from the header alone, an image whose decoding or resizing would cost more
    than the module's limits: pixels, decoded bytes, aspect ratio, JPEG scans."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(_too_large(f"{width} x {height} pixels", max_pixels))
    if width == 0 or height == 0:
        raise ImageError("the image has no pixels")
    decoded = width * height * _bytes_per_pixel(image.mode)
    if decoded > MAX_DECODED_BYTES:
        raise ImageError(
            f"the image ({width} x {height}, {image.mode}) decodes to {decoded / 1024**2:,.0f} MB, more than the "
            f"limit of {MAX_DECODED_BYTES / 1024**2:,.0f} MB; downscale it first"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(
            f"the image is {width} x {height} pixels, longer than {MAX_ASPECT_RATIO} times its width or height; "
            "crop it first"
        )
    if image.format in ("JPEG", "MPO"):  # MPO: phones' JPEGs, the first picture decoded
        scans = jpeg_scans(data)
        allowed = min(MAX_JPEG_SCANS, max(1, _MAX_SCAN_PIXELS // (width * height)))
        if scans > allowed:
            raise ImageError(
                f"the JPEG has {scans:,} scans, more than the {allowed} allowed for {width} x {height} pixels "
                "(each scan is another pass over the whole image); re-save it"
            )


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow keeps per pixel of ``mode``."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


_MARKER = re.compile(rb"\xff+([^\x00\x01\xd0-\xd8\xff])")
"""The next JPEG marker that has a length: 0xFF (and fill bytes 0xFF), then a code that
is not 0x00 (inside a scan's entropy-coded data, a stuffed 0xFF byte) nor one of the
markers without a length (restarts, TEM, SOI), which the search skips in C."""
_MAX_SEGMENTS = 4096  # a photograph has a few dozen; each costs a step of the Python loop


def jpeg_scans(data: bytes | bytearray | memoryview) -> int:
    """The number of scans (SOS segments) in the JPEG ``data``, found as libjpeg finds
    them without decoding: segments are skipped by their length, the bytes between them
    (entropy-coded data, or garbage libjpeg skips with a warning) by a regular-expression
    search for the next marker, in C, a megabyte at a time (64 MB of stuffed 0xFF bytes
    take about 1.8 s; other threads run between the windows).
    A truncated file counts the scans found.

    Raises:
        ImageError: more than 4,096 segments (a file built to make this loop long).
    """
    if bytes(data[:2]) != b"\xff\xd8":
        return 0
    position, end, scans = 2, len(data), 0
    for _ in range(_MAX_SEGMENTS):
        found = _next_marker(data, position, end)
        if found is None or found[1][0] == 0xD9 or found.end() + 2 > end:  # none left, end of image, truncated
            return scans
        position = found.end()
        if found[1][0] == 0xDA:
            scans += 1
        position += (data[position] << 8) | data[position + 1]  # the segment (its length counts itself)
    raise ImageError(f"the JPEG has more than {_MAX_SEGMENTS:,} segments; re-save it")


_SEARCH_WINDOW = 1 << 20
"""Bytes one search for a marker covers at most: the search holds the interpreter's lock,
so the server's other threads wait at most one window's search (about 30 ms for 1 MB
of stuffed 0xFF bytes), not the whole file's."""


def _next_marker(data: bytes | bytearray | memoryview, position: int, end: int) -> re.Match[bytes] | None:
    """``_MARKER.search(data, position, end)``, a window at a time, with the same code and
    end. A match inside a window is the search's own; none there, the next window starts
    at the window's last byte if that is 0xFF (a marker's fill may run on past the edge)."""
    while position < end:
        stop = min(position + _SEARCH_WINDOW, end)
        found = _MARKER.search(data, position, stop)
        if found is not None or stop == end:
            return found
        position = stop - 1 if data[stop - 1] == 0xFF else stop
    return None


def _too_large(declared: str, max_pixels: int) -> str:
    return f"the image declares {declared}, more than the limit of {max_pixels:,}; downscale it first"


def _not_accepted(data: bytes) -> str:
    accepted = ", ".join(ACCEPTED_FORMATS)
    try:
        other = Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001  only to name the format in the message; any failure means "unknown"
        return f"not an image this app can read (accepted formats: {accepted})"
    return f"{other} images are not accepted; use one of {accepted}"


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; palettes, transparency and 16/32-bit modes converted strip by
    strip, so no intermediate is larger than the RGB result."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _to_uint8(image).convert("RGB")
    transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if not transparent:
        return image.convert("RGB")
    out = Image.new("RGB", image.size)
    width, height = image.size
    for top in range(0, height, _STRIP):
        box = (0, top, width, min(top + _STRIP, height))
        rgba = image.crop(box).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out.paste(Image.alpha_composite(white, rgba).convert("RGB"), box)
    return out


def _to_uint8(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit grayscale to 8 bits (mode L): integer data by its bit depth,
    float by its range; strip by strip, integers in integer arithmetic (exact)."""
    width, height = image.size
    boxes = [(0, top, width, min(top + _STRIP, height)) for top in range(0, height, _STRIP)]

    def strips() -> Iterator[tuple[tuple[int, int, int, int], np.ndarray]]:
        for box in boxes:
            strip = np.asarray(image.crop(box))
            yield box, np.nan_to_num(strip.astype(np.float64)) if image.mode == "F" else strip.astype(np.int64)

    if image.mode == "F":  # NaN and infinities count as nan_to_num makes them: a pass of its own
        extremes = [(float(strip.min()), float(strip.max())) for _, strip in strips()]
        low, high = min(e[0] for e in extremes), max(e[1] for e in extremes)
    else:  # integers: Pillow's own pass, in C
        low, high = (float(v) for v in image.getextrema())  # type: ignore[arg-type]  # one band: (min, max)
    out = np.empty((height, width), np.uint8)
    for box, strip in strips():
        if image.mode == "F":
            scaled = (strip - low) * (255 / (high - low) if high > low else 0.0)
        elif high <= 255:
            scaled = strip
        else:  # round(x * 255 / 65535) = floor((x + 128) / 257): 257 is odd, so no x is a tie
            scaled = (strip + 128) // 257
        out[box[1] : box[3]] = scaled.round().clip(0, 255) if image.mode == "F" else scaled.clip(0, 255)
    return Image.fromarray(out, mode="L")


def _data_config(model: nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(model, Mapping):
        return model
    info = getattr(model, "sevis_info", None)
    if info is not None:
        return info.data_config
    if isinstance(model, nn.Module):
        from timm.data import resolve_model_data_config

        return resolve_model_data_config(model)
    raise TypeError(f"model must be an nn.Module or a data config, got {type(model).__name__}")


def model_view(model: nn.Module | Mapping[str, Any], image: Image.Image) -> Image.Image:
    """The resized, centre-cropped RGB image the model sees (before normalisation).

    Raises:
        ImageError: the resized image would have more than ``MAX_PIXELS`` pixels (an
            image far longer than it is wide; :func:`decode_image` refuses those first).
    """
    config = _data_config(model)
    size = config["input_size"][-2:]
    scale = math.floor(size[0] / config["crop_pct"])
    width, height = image.size
    if scale * scale * max(width, height) > MAX_PIXELS * max(1, min(width, height)):
        raise ImageError(f"the image is {width} x {height} pixels, too elongated to resize; crop it first")
    interpolation = InterpolationMode(config.get("interpolation", "bilinear"))
    image = TF.resize(image, scale, interpolation=interpolation)
    return TF.center_crop(image, list(size))


def normalise(model: nn.Module | Mapping[str, Any], views: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
    """Batch (N, 3, H, W) of views already made by :func:`model_view`, normalised.

    Args:
        views: the views as images, or as a uint8 tensor (N, 3, H, W).
    """
    config = _data_config(model)
    if not isinstance(views, torch.Tensor):
        views = torch.stack([TF.pil_to_tensor(view) for view in views])
    batch = views.float().div_(255)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std)


def preprocess(model: nn.Module | Mapping[str, Any], images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
    """Batch of normalised images, shape (N, 3, H, W), per the model's data config."""
    config = _data_config(model)
    if isinstance(images, Image.Image):
        images = [images]
    if not images:
        raise ValueError("images must hold at least one image")
    return normalise(config, [model_view(config, image) for image in images])


def load_view(data: bytes, data_config: Mapping[str, Any]) -> Image.Image:
    """Decode an image file's bytes and make the crop the model sees.

    Raises:
        ImageError: the bytes are not an image sevis accepts (the message says why).
    """
    return model_view(data_config, decode_image(data))
