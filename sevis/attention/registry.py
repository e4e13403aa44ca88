"""How sevis finds the attention layers of a network.

Layers are found by module *type*, never by name strings: a small registry maps each
known attention class to its kind (see :mod:`sevis.attention.kinds`: ``"se"``, channel gates;
``"sge"``, spatial masks; or any registered kind) and to the name of its gate child,
the submodule whose output is the attention value. Users add their own classes with
:func:`register_attention`.

Names follow the SENet paper's ``SE_stageID_blockID`` scheme (arXiv:1709.01507) for
ResNet-style networks (``layer1`` is the paper's stage 2): ``SE_2_1`` ... ``SE_5_3``
and ``SGE_2_1`` ... ``SGE_5_3``. Other networks get ``SE_1``, ``SE_2``, ... in depth
order (see :mod:`sevis.attention.layers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from .kinds import AttentionKind, get_kind
from .sge import SpatialGroupEnhance

__all__ = ["AttentionLayer", "find_attention", "register_attention", "unregister_attention"]


@dataclass(frozen=True)
class _AttentionType:
    kind: str
    gate: str


_REGISTRY: dict[type[nn.Module], _AttentionType] = {}


def register_attention(cls: type[nn.Module], *, kind: str, gate: str) -> None:
    """Teach sevis a new attention module class.

    Args:
        cls: the module class; subclasses match too.
        kind: a registered kind (:func:`sevis.attention.kinds.register_kind`): ``"se"`` if the gate
            outputs one value per channel, shape (N, C, 1, 1) or (N, 1, 1, C); ``"sge"``
            if it outputs spatial masks, shape (N * G, 1, H, W), and the module has
            ``groups``.
        gate: attribute name of the child module whose output is the attention.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    get_kind(kind)  # raises ValueError naming the registered kinds
    if not isinstance(gate, str) or not gate:
        raise TypeError(f"gate must be the name of a child module, got {gate!r}")
    _REGISTRY[cls] = _AttentionType(kind, gate)


def unregister_attention(cls: type[nn.Module]) -> None:
    """Forget a class added by :func:`register_attention`."""
    _REGISTRY.pop(cls, None)


def _register_builtins() -> None:
    from timm.layers import squeeze_excite as timm_se
    from timm.models import _efficientnet_blocks as timm_effnet, senet as timm_senet
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
        kind: the kind's name, ``"se"``, ``"sge"`` or another registered one.
        path: dotted module path inside the model, e.g. ``layer1.0.se_module``.
        module: the attention module.
        gate: its gate child; a forward hook on it sees the attention values.
        stage: the paper's stage number (2 to 5 in a ResNet-50), None outside stages.
        block: the block's number within its stage from 1, or the depth index.
    """

    name: str
    kind: str
    path: str
    module: nn.Module
    gate: nn.Module
    stage: int | None
    block: int

    @property
    def spec(self) -> AttentionKind:
        """The registered kind of this layer."""
        return get_kind(self.kind)


def _lookup(module: nn.Module) -> _AttentionType | None:
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


_RESNET_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")

_Found = tuple[str, nn.Module, _AttentionType]


def find_attention(model: nn.Module) -> list[AttentionLayer]:
    """All registered attention layers of ``model`` in depth (registration) order."""
    found: list[_Found] = []
    for path, module in model.named_modules():
        spec = _lookup(module)
        if spec is None:
            continue
        gate = getattr(module, spec.gate, None)
        if not isinstance(gate, nn.Module):
            raise TypeError(
                f"{type(module).__name__} at {path!r} is registered with gate {spec.gate!r}, "
                "but has no child module of that name"
            )
        found.append((path, module, spec))

    places = _paper_places(found) or _depth_places(found)
    layers = []
    for (path, module, spec), (stage, block) in zip(found, places, strict=True):
        prefix = get_kind(spec.kind).prefix
        name = f"{prefix}_{stage}_{block}" if stage is not None else f"{prefix}_{block}"
        layers.append(AttentionLayer(name, spec.kind, path, module, getattr(module, spec.gate), stage, block))
    return layers


def _paper_places(found: list[_Found]) -> list[tuple[int | None, int]] | None:
    """(stage, block) of each layer if every one sits in its own ResNet ``layerX.Y`` block."""
    places: list[tuple[int | None, int]] = []
    for path, _, _ in found:
        match = _RESNET_BLOCK.match(path)
        if match is None:
            return None
        places.append((int(match[1]) + 1, int(match[2]) + 1))
    keys = [(spec.kind, place) for (_, _, spec), place in zip(found, places, strict=True)]
    return places if len(set(keys)) == len(keys) else None


def _depth_places(found: list[_Found]) -> list[tuple[int | None, int]]:
    counts: dict[str, int] = {}
    places: list[tuple[int | None, int]] = []
    for _, _, spec in found:
        counts[spec.kind] = counts.get(spec.kind, 0) + 1
        places.append((None, counts[spec.kind]))
    return places
