"""Batch work over datasets: ``sevis extract`` (the local and the Ray engine), ablations and
per-channel knock-out importance."""

from .ablation import (
    Ablation,
    AblationRun,
    ablate,
    ablate_data,
    ablation_conditions,
    dataset_items,
)
from .extraction import extract, prepare_run
from .importance import Importance, ImportanceRun, channel_importance, importance_data
from .ray_engine import extract_ray
from .settings import RunSettings

__all__ = [
    "Ablation",
    "AblationRun",
    "Importance",
    "ImportanceRun",
    "RunSettings",
    "ablate",
    "ablate_data",
    "ablation_conditions",
    "channel_importance",
    "dataset_items",
    "extract",
    "extract_ray",
    "importance_data",
    "prepare_run",
]
