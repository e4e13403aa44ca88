"""Batch work over datasets: ``sevis extract`` (the local and the Ray engine) and ablations."""

from .ablation import Ablation, AblationRun, ablate, ablate_data, ablation_conditions, class_indices
from .extraction import IMAGE_SUFFIXES, ImageFiles, Item, discover, extract, prepare_run
from .ray_engine import extract_ray

__all__ = [
    "IMAGE_SUFFIXES",
    "Ablation",
    "AblationRun",
    "ImageFiles",
    "Item",
    "ablate",
    "ablate_data",
    "ablation_conditions",
    "class_indices",
    "discover",
    "extract",
    "extract_ray",
    "prepare_run",
]
