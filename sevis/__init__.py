"""sevis: see what Squeeze-and-Excitation and Spatial Group-wise Enhance layers do.

    import sevis
    model = sevis.load_model("se_resnet50")
    x = sevis.preprocess(model, [sevis.decode_image(open("cat.jpg", "rb").read())])
    with sevis.capture(model) as cap:
        logits = model(x)
    cap.excitations["SE_5_2"]  # (1, 2048)

Names are imported on first use (PEP 562), so ``import sevis`` and the command line's
``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .analysis import Analysis, Failure, ImageResult, analyse
    from .archive import LabelledFile, read_zip
    from .attention import AttentionLayer, find_attention, register_attention, unregister_attention
    from .errors import (
        ArchiveError,
        CheckpointError,
        DataError,
        ImageError,
        RunError,
        SevisError,
        UnknownLayerError,
        UnknownModelError,
        WeightsUnavailableError,
    )
    from .explore import ChannelView, ExcitationMap, channel_view, excitation_map, run_image
    from .hooks import Capture, capture
    from .images import decode_image, model_view, normalise, preprocess
    from .kinds import AttentionKind, get_kind, list_kinds, register_kind, unregister_kind
    from .layers import default_layer, paper_layers, stage_ends
    from .models import (
        ModelInfo,
        list_models,
        list_weights_files,
        load_model,
        model_info,
        register_model,
        unregister_model,
        weights_dir,
    )
    from .pipeline import BatchResult, forward_batch, load_view
    from .provenance import Provenance
    from .runs import Run, RunMetadata, read_run
    from .sge import SpatialGroupEnhance
    from .stats import ALL, ClassStats, ExcitationStats, MaskStats, mask_summary, predicted_labels
    from .whatif import (
        Ablation,
        Channels,
        Fixed,
        GroupMean,
        Knockout,
        MeanOf,
        Remove,
        Replacement,
        ablate,
        ablate_data,
        ablation_conditions,
        class_indices,
        knockout,
        knockout_effect,
        knockout_effects,
    )

_EXPORTS = {
    "analysis": ["Analysis", "Failure", "ImageResult", "analyse"],
    "archive": ["LabelledFile", "read_zip"],
    "attention": ["AttentionLayer", "find_attention", "register_attention", "unregister_attention"],
    "explore": ["ChannelView", "ExcitationMap", "channel_view", "excitation_map", "run_image"],
    "hooks": ["Capture", "capture"],
    "errors": [
        "ArchiveError",
        "CheckpointError",
        "DataError",
        "ImageError",
        "RunError",
        "SevisError",
        "UnknownLayerError",
        "UnknownModelError",
        "WeightsUnavailableError",
    ],
    "images": ["decode_image", "model_view", "normalise", "preprocess"],
    "kinds": ["AttentionKind", "get_kind", "list_kinds", "register_kind", "unregister_kind"],
    "layers": ["default_layer", "paper_layers", "stage_ends"],
    "models": [
        "ModelInfo",
        "list_models",
        "list_weights_files",
        "load_model",
        "model_info",
        "register_model",
        "unregister_model",
        "weights_dir",
    ],
    "pipeline": ["BatchResult", "forward_batch", "load_view"],
    "provenance": ["Provenance"],
    "runs": ["Run", "RunMetadata", "read_run"],
    "sge": ["SpatialGroupEnhance"],
    "stats": ["ALL", "ClassStats", "ExcitationStats", "MaskStats", "mask_summary", "predicted_labels"],
    "whatif": [
        "Ablation",
        "Channels",
        "Fixed",
        "GroupMean",
        "Knockout",
        "MeanOf",
        "Remove",
        "Replacement",
        "ablate",
        "ablate_data",
        "ablation_conditions",
        "class_indices",
        "knockout",
        "knockout_effect",
        "knockout_effects",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sevis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
