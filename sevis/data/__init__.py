"""What users bring, read safely: images, zips of images, and what could not be read."""

from ._zipcheck import ZipLimitError, count_entries
from .archive import LabelledFile, read_zip
from .failure import Failure
from .files import IMAGE_SUFFIXES, DecodedBatch, ImageFiles, Item, discover, iter_batches
from .images import ACCEPTED_FORMATS, MAX_PIXELS, decode_image, load_view, model_view, normalise, preprocess
from .labels import read_labels
from .samples import SAMPLE_PHOTOS, assets_dir, sample_photos

__all__ = [
    "ACCEPTED_FORMATS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "SAMPLE_PHOTOS",
    "DecodedBatch",
    "Failure",
    "ImageFiles",
    "Item",
    "LabelledFile",
    "ZipLimitError",
    "assets_dir",
    "count_entries",
    "decode_image",
    "discover",
    "iter_batches",
    "load_view",
    "model_view",
    "normalise",
    "preprocess",
    "read_labels",
    "read_zip",
    "sample_photos",
]
