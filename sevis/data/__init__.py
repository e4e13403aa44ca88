"""What users bring, read safely: images, zips of images, and what could not be read."""

from ._zipcheck import ZipLimitError, count_entries
from .archive import LabelledFile, read_zip
from .failure import Failure
from .images import ACCEPTED_FORMATS, MAX_PIXELS, decode_image, model_view, normalise, preprocess

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_PIXELS",
    "Failure",
    "LabelledFile",
    "ZipLimitError",
    "count_entries",
    "decode_image",
    "model_view",
    "normalise",
    "preprocess",
    "read_zip",
]
