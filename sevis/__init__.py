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

from ._version import __version__ as __version__

if TYPE_CHECKING:
    # NOTE `X as X`: an explicit re-export for type checkers (mypy's implicit_reexport = false).
    from .analysis import (
        Analysis as Analysis,
        ChannelView as ChannelView,
        ExcitationMap as ExcitationMap,
        ImageResult as ImageResult,
        analyse as analyse,
        channel_view as channel_view,
        compare_ablations as compare_ablations,
        excitation_map as excitation_map,
        module_curves as module_curves,
        run_image as run_image,
    )
    from .attention import (
        AttentionKind as AttentionKind,
        AttentionLayer as AttentionLayer,
        SpatialGroupEnhance as SpatialGroupEnhance,
        default_layer as default_layer,
        depth_positions as depth_positions,
        find_attention as find_attention,
        get_kind as get_kind,
        list_kinds as list_kinds,
        paper_layers as paper_layers,
        prefix_of as prefix_of,
        register_attention as register_attention,
        register_kind as register_kind,
        stage_ends as stage_ends,
        unregister_attention as unregister_attention,
        unregister_kind as unregister_kind,
    )
    from .data import (
        Failure as Failure,
        LabelledFile as LabelledFile,
        decode_image as decode_image,
        load_view as load_view,
        model_view as model_view,
        normalise as normalise,
        preprocess as preprocess,
        read_zip as read_zip,
        sample_photos as sample_photos,
    )
    from .errors import (
        ArchiveError as ArchiveError,
        CheckpointError as CheckpointError,
        DataError as DataError,
        ImageError as ImageError,
        RunError as RunError,
        SevisError as SevisError,
        UnknownLayerError as UnknownLayerError,
        UnknownModelError as UnknownModelError,
        WeightsUnavailableError as WeightsUnavailableError,
    )
    from .hooks import (
        BatchResult as BatchResult,
        Capture as Capture,
        Channels as Channels,
        Fixed as Fixed,
        GroupMean as GroupMean,
        Knockout as Knockout,
        MeanOf as MeanOf,
        Remove as Remove,
        Replacement as Replacement,
        capture as capture,
        forward_batch as forward_batch,
        knockout as knockout,
        knockout_effect as knockout_effect,
        knockout_effects as knockout_effects,
    )
    from .jobs import (
        Ablation as Ablation,
        Importance as Importance,
        ablate as ablate,
        ablate_data as ablate_data,
        ablation_conditions as ablation_conditions,
        channel_importance as channel_importance,
        importance_data as importance_data,
    )
    from .models import (
        ModelInfo as ModelInfo,
        class_indices as class_indices,
        list_models as list_models,
        list_weights_files as list_weights_files,
        load_model as load_model,
        model_info as model_info,
        register_model as register_model,
        set_model_info as set_model_info,
        unregister_model as unregister_model,
        weights_dir as weights_dir,
    )
    from .provenance import (
        Provenance as Provenance,
    )
    from .runs import (
        Run as Run,
        RunMetadata as RunMetadata,
        read_run as read_run,
    )
    from .stats import (
        ALL as ALL,
        ClassStats as ClassStats,
        ExcitationStats as ExcitationStats,
        MaskStats as MaskStats,
        mask_summary as mask_summary,
        predicted_labels as predicted_labels,
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
        "compare_ablations",
        "excitation_map",
        "module_curves",
        "run_image",
    ],
    "attention": [
        "AttentionKind",
        "AttentionLayer",
        "SpatialGroupEnhance",
        "default_layer",
        "depth_positions",
        "find_attention",
        "get_kind",
        "list_kinds",
        "paper_layers",
        "prefix_of",
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
        "sample_photos",
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
        "Importance",
        "ablate",
        "ablate_data",
        "ablation_conditions",
        "channel_importance",
        "importance_data",
    ],
    "models": [
        "ModelInfo",
        "class_indices",
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
