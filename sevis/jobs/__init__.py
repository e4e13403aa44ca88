"""Batch work over datasets: ``sevis extract`` (the local and the Ray engine) and ablations."""

from .ablation import Ablation, AblationRun, ablate, ablate_data, ablation_conditions
from .extraction import extract, prepare_run
from .ray_engine import extract_ray
from .settings import RunSettings

__all__ = [
    "Ablation",
    "AblationRun",
    "RunSettings",
    "ablate",
    "ablate_data",
    "ablation_conditions",
    "extract",
    "extract_ray",
    "prepare_run",
]
