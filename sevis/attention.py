"""How sevis finds the attention layers of a network.

Layers are found by module *type*, never by name strings: a small registry maps each
known attention class to its kind (``"se"``: channel gate, ``"sge"``: spatial masks)
and to the name of its gate child, the submodule whose output is the attention value.
Users add their own classes with :func:`register_attention`.

Names follow the SENet paper's ``SE_stageID_blockID`` scheme (arXiv:1709.01507) for
ResNet-style networks (``layer1`` is the paper's stage 2): ``SE_2_1`` ... ``SE_5_3``
and ``SGE_2_1`` ... ``SGE_5_3``. Other networks get ``SE_1``, ``SE_2``, ... in depth
order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from .sge import SpatialGroupEnhance

__all__ = ["AttentionKind", "AttentionLayer", "find_attention", "register_attention"]

AttentionKind = Literal["se", "sge"]
_PREFIX = {"se": "SE", "sge": "SGE"}


@dataclass(frozen=True)
class _AttentionType:
    kind: AttentionKind
    gate: str


_REGISTRY: dict[type[nn.Module], _AttentionType] = {}


def register_attention(cls: type[nn.Module], *, kind: AttentionKind, gate: str) -> None:
    """Teach sevis a new attention module class.

    Args:
        cls: the module class; subclasses match too.
        kind: ``"se"`` if the gate outputs one value per channel, shape (N, C, 1, 1) or
            (N, 1, 1, C); ``"sge"`` if it outputs spatial masks, shape (N * G, 1, H, W).
        gate: attribute name of the child module whose output is the attention.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    if kind not in _PREFIX:
        raise ValueError(f"kind must be one of {sorted(_PREFIX)}, got {kind!r}")
    if not isinstance(gate, str) or not gate:
        raise TypeError(f"gate must be the name of a child module, got {gate!r}")
    _REGISTRY[cls] = _AttentionType(kind, gate)


def _register_builtins() -> None:
    from timm.layers import squeeze_excite as timm_se
    from timm.models import _efficientnet_blocks as timm_effnet
    from timm.models import senet as timm_senet
    from torchvision.ops import SqueezeExcitation

    register_attention(SpatialGroupEnhance, kind="sge", gate="gate")
    # NOTE the SENet authors' module (timm's legacy_seresnet*) names its gate `sigmoid`.
    register_attention(timm_senet.SEModule, kind="se", gate="sigmoid")
    register_attention(SqueezeExcitation, kind="se", gate="scale_activation")
    for cls in (
        timm_se.SEModule,
        timm_se.EffectiveSEModule,
        timm_se.SqueezeExcite,
        timm_se.SqueezeExciteCl,
        timm_effnet.SqueezeExcite,
    ):
        register_attention(cls, kind="se", gate="gate")


_register_builtins()


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer of a model.

    Attributes:
        name: ``SE_2_1``-style name, unique within the model.
        kind: ``"se"`` or ``"sge"``.
        path: dotted module path inside the model, e.g. ``layer1.0.se_module``.
        module: the attention module.
        gate: its gate child; a forward hook on it sees the attention values.
    """

    name: str
    kind: AttentionKind
    path: str
    module: nn.Module
    gate: nn.Module


def _lookup(module: nn.Module) -> _AttentionType | None:
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


_RESNET_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")


def find_attention(model: nn.Module) -> list[AttentionLayer]:
    """All registered attention layers of ``model`` in depth (registration) order."""
    found: list[tuple[str, nn.Module, _AttentionType]] = []
    for path, module in model.named_modules():
        spec = _lookup(module)
        if spec is None:
            continue
        gate = getattr(module, spec.gate, None)
        if not isinstance(gate, nn.Module):
            raise ValueError(
                f"{type(module).__name__} at {path!r} is registered with gate {spec.gate!r}, "
                "but has no child module of that name"
            )
        found.append((path, module, spec))

    names = _paper_names(found) or _depth_names(found)
    return [
        AttentionLayer(name, spec.kind, path, module, getattr(module, spec.gate))
        for name, (path, module, spec) in zip(names, found)
    ]


def _paper_names(found: list[tuple[str, nn.Module, _AttentionType]]) -> list[str] | None:
    """``SE_<stage>_<block>`` names if every layer sits in a ResNet ``layerX.Y`` block."""
    names = []
    for path, _, spec in found:
        match = _RESNET_BLOCK.match(path)
        if match is None:
            return None
        stage, block = int(match[1]) + 1, int(match[2]) + 1
        names.append(f"{_PREFIX[spec.kind]}_{stage}_{block}")
    return names if len(set(names)) == len(names) else None


def _depth_names(found: list[tuple[str, nn.Module, _AttentionType]]) -> list[str]:
    counts = {kind: 0 for kind in _PREFIX}
    names = []
    for _, _, spec in found:
        counts[spec.kind] += 1
        names.append(f"{_PREFIX[spec.kind]}_{counts[spec.kind]}")
    return names
