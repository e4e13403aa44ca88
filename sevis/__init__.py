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
    from .analysis import (
        Analysis,
        ChannelView,
        ExcitationMap,
        ImageResult,
        analyse,
        channel_view,
        excitation_map,
        run_image,
    )
    from .attention import (
        AttentionKind,
        AttentionLayer,
        SpatialGroupEnhance,
        default_layer,
        find_attention,
        get_kind,
        list_kinds,
        paper_layers,
        register_attention,
        register_kind,
        stage_ends,
        unregister_attention,
        unregister_kind,
    )
    from .data import (
        Failure,
        LabelledFile,
        decode_image,
        load_view,
        model_view,
        normalise,
        preprocess,
        read_zip,
    )
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
    from .hooks import (
        BatchResult,
        Capture,
        Channels,
        Fixed,
        GroupMean,
        Knockout,
        MeanOf,
        Remove,
        Replacement,
        capture,
        forward_batch,
        knockout,
        knockout_effect,
        knockout_effects,
    )
    from .jobs import (
        Ablation,
        ablate,
        ablate_data,
        ablation_conditions,
        class_indices,
    )
    from .models import (
        ModelInfo,
        list_models,
        list_weights_files,
        load_model,
        model_info,
        register_model,
        set_model_info,
        unregister_model,
        weights_dir,
    )
    from .provenance import (
        Provenance,
    )
    from .runs import (
        Run,
        RunMetadata,
        read_run,
    )
    from .stats import (
        ALL,
        ClassStats,
        ExcitationStats,
        MaskStats,
        mask_summary,
        predicted_labels,
    )

# Where each public name lives: a subpackage (or a module at the top) that exports it.
_EXPORTS = {
    "analysis": [
        "Analysis",
        "ChannelView",
        "ExcitationMap",
        "ImageResult",
        "analyse",
        "channel_view",
        "excitation_map",
        "run_image",
    ],
    "attention": [
        "AttentionKind",
        "AttentionLayer",
        "SpatialGroupEnhance",
        "default_layer",
        "find_attention",
        "get_kind",
        "list_kinds",
        "paper_layers",
        "register_attention",
        "register_kind",
        "stage_ends",
        "unregister_attention",
        "unregister_kind",
    ],
    "data": [
        "Failure",
        "load_view",
        "LabelledFile",
        "decode_image",
        "model_view",
        "normalise",
        "preprocess",
        "read_zip",
    ],
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
    "hooks": [
        "BatchResult",
        "Capture",
        "Channels",
        "Fixed",
        "GroupMean",
        "Knockout",
        "MeanOf",
        "Remove",
        "Replacement",
        "capture",
        "forward_batch",
        "knockout",
        "knockout_effect",
        "knockout_effects",
    ],
    "jobs": [
        "Ablation",
        "ablate",
        "ablate_data",
        "ablation_conditions",
        "class_indices",
    ],
    "models": [
        "ModelInfo",
        "list_models",
        "list_weights_files",
        "load_model",
        "model_info",
        "register_model",
        "set_model_info",
        "unregister_model",
        "weights_dir",
    ],
    "provenance": [
        "Provenance",
    ],
    "runs": [
        "Run",
        "RunMetadata",
        "read_run",
    ],
    "stats": [
        "ALL",
        "ClassStats",
        "ExcitationStats",
        "MaskStats",
        "mask_summary",
        "predicted_labels",
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
