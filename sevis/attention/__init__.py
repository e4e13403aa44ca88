"""What an attention layer is: kinds of attention values, the registry of attention
modules, layer names, the SGE, CBAM, BAM and SK modules, and where a feature map's cells sit
on the image."""

from .bam import BAM
from .cbam import CBAM, CBAMChannelGate, CBAMSpatialGate
from .geometry import CellGrid, cell_grid, layer_grid, upsample
from .kinds import (
    AttentionKind,
    BAMKind,
    BranchKind,
    SEKind,
    SGEKind,
    SpatialKind,
    get_kind,
    group_norms,
    list_kinds,
    register_kind,
    unregister_kind,
)
from .layers import LayerName, default_layer, depth_positions, paper_layers, parse_layer, prefix_of, stage_ends
from .registry import AttentionLayer, find_attention, register_attention, unregister_attention
from .sge import SpatialGroupEnhance
from .sk import SKBottleneck

__all__ = [
    "BAM",
    "CBAM",
    "AttentionKind",
    "AttentionLayer",
    "BAMKind",
    "BranchKind",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "CellGrid",
    "LayerName",
    "SEKind",
    "SGEKind",
    "SKBottleneck",
    "SpatialGroupEnhance",
    "SpatialKind",
    "cell_grid",
    "default_layer",
    "depth_positions",
    "find_attention",
    "get_kind",
    "group_norms",
    "layer_grid",
    "list_kinds",
    "paper_layers",
    "parse_layer",
    "prefix_of",
    "register_attention",
    "register_kind",
    "stage_ends",
    "unregister_attention",
    "unregister_kind",
    "upsample",
]
