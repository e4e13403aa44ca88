"""Networks by name: the model registry, pretrained weights, reading checkpoints and the self-check."""

# NOTE the README has long named sevis.models.UNTRAINED_SEED: it lives in provenance.
from ..provenance import UNTRAINED_SEED
from .classes import class_candidates, class_indices, imagenet_names
from .registry import (
    COMPARED,
    IMAGENET_CONFIG,
    PRETRAINED,
    UNTRAINED,
    ModelInfo,
    list_models,
    load_model,
    model_info,
    register_model,
    set_model_info,
    unregister_model,
)
from .selfcheck import CHECK_PHOTOS, SelfCheck, self_check
from .weights import (
    WeightsFile,
    cached_weights,
    fetch_weights,
    file_sha256,
    list_weights_files,
    register_weights,
    weights_dir,
    weights_file,
)

__all__ = [
    "CHECK_PHOTOS",
    "COMPARED",
    "IMAGENET_CONFIG",
    "PRETRAINED",
    "UNTRAINED",
    "UNTRAINED_SEED",
    "ModelInfo",
    "SelfCheck",
    "WeightsFile",
    "cached_weights",
    "class_candidates",
    "class_indices",
    "fetch_weights",
    "file_sha256",
    "imagenet_names",
    "list_models",
    "list_weights_files",
    "load_model",
    "model_info",
    "register_model",
    "register_weights",
    "self_check",
    "set_model_info",
    "unregister_model",
    "weights_dir",
    "weights_file",
]
