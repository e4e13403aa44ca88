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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torchvision.transforms import InterpolationMode, functional as TF

from ..errors import ImageError

__all__ = ["ACCEPTED_FORMATS", "MAX_PIXELS", "decode_image", "load_view", "model_view", "normalise", "preprocess"]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PIXELS = 64_000_000
"""Largest accepted width x height: a 64-megapixel photograph decodes to 192 MB of RGB."""


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
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(_too_large(f"{width} x {height} pixels", max_pixels))
    if width == 0 or height == 0:
        raise ImageError("the image has no pixels")
    try:
        image.seek(0)
        image.load()
        upright = ImageOps.exif_transpose(image)
    except Exception as err:  # noqa: BLE001  truncated: OSError; corrupt: SyntaxError, ValueError, struct.error…
        raise ImageError(f"the {image.format} file is truncated or corrupt ({err})") from None
    return _to_rgb(upright)


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
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode.startswith("I") or mode == "F":
        image = Image.fromarray(_to_uint8(np.asarray(image)), mode="L")
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16-bit or 32-bit grayscale to 8 bits: integer data by its bit depth, float by range."""
    if np.issubdtype(array.dtype, np.integer):
        top = 255 if array.max(initial=0) <= 255 else 65535
        return (array.astype(np.float64) * (255 / top)).clip(0, 255).round().astype(np.uint8)
    array = np.nan_to_num(array.astype(np.float64))
    low, high = array.min(), array.max()
    scale = 255 / (high - low) if high > low else 0.0
    return ((array - low) * scale).round().astype(np.uint8)


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
    """The resized, centre-cropped RGB image the model sees (before normalisation)."""
    config = _data_config(model)
    size = config["input_size"][-2:]
    scale = math.floor(size[0] / config["crop_pct"])
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
