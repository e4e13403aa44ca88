"""How sevis finds the attention layers of a network.

Layers are found by module *type*, never by name strings: a small registry maps each
known attention class to its kind (see :mod:`sevis.attention.kinds`: ``"se"``, channel gates;
``"sge"``, spatial masks; ``"branch"``, a softmax over branches; or any registered kind),
to the name of its gate child, the submodule whose output is the attention value, and
optionally to its own layer-name prefix. Users add their own classes with
:func:`register_attention`.

Known classes (each module's gate is a child, so a hook sees the values it multiplies by):

* SE (arXiv:1709.01507): timm's and the SENet authors' ``SEModule`` s, torchvision's
  ``SqueezeExcitation``; layers ``SE_2_1`` ...
* ECA (arXiv:1910.03151): timm's ``EcaModule`` and ``CecaModule`` (circular padding), a
  sigmoid per channel from a 1-D convolution over the pooled channels: channel gates of
  kind ``"se"``, layers ``ECA_2_1`` ...
* CBAM's channel gate (arXiv:1807.06521): timm's ``ChannelAttn``, sigmoid(MLP(avg) +
  MLP(max)): kind ``"se"``, layers ``CBAMC_2_1`` ... (not its ``LightChannelAttn``, whose
  forward calls ``F.sigmoid`` rather than its gate child).
* GC (arXiv:1904.11492): timm's ``GlobalContext``; fused by scaling, its gate, sigmoid of
  the transformed context, is a channel gate (kind ``"se"``, layers ``GC_2_1`` ...); fused by
  adding (``gcresnet50t``), its one attention value is the context map, a softmax over the
  positions of its ``conv_attn`` output (kind ``"context"``, layers ``GC_2_1`` ...).
* SK (arXiv:1903.06586): timm's ``SelectiveKernel``, a softmax over its kernel branches per
  channel from its ``attn`` child: kind ``"branch"``, layers ``SK_2_1`` ...
* ResNeSt's split attention (arXiv:2004.08955): timm's ``SplitAttn``, a softmax over the
  radix splits of each channel from its ``rsoftmax`` child: kind ``"branch"``, layers
  ``SPLIT_2_1`` ...
* SGE (arXiv:1905.09646): :class:`sevis.attention.sge.SpatialGroupEnhance`; layers
  ``SGE_2_1`` ...
* CBAM as PytorchInsight trained it (:mod:`sevis.attention.cbam`): its channel gate (kind
  ``"se"``, layers ``CBAMC_2_1`` ...) and its spatial gate (kind ``"spatial"``, layers
  ``CBAMS_2_1`` ...); timm's CBAM spatial gates (``SpatialAttn``, ``LightSpatialAttn``) too.
* BAM (:mod:`sevis.attention.bam`; arXiv:1807.06514): kind ``"bam"``; in PytorchInsight's
  BAM-ResNet-50, the last module of stages 2 to 4: ``BAM_2_4``, ``BAM_3_5``, ``BAM_4_7``.
* PytorchInsight's SK bottleneck (:mod:`sevis.attention.sk`): kind ``"branch"``, layers
  ``SK_2_1`` ...

Names follow the SENet paper's ``SE_stageID_blockID`` scheme (arXiv:1709.01507) for
ResNet-style networks (``layer1``, or a timm ByobNet's ``stages.0``, is the paper's
stage 2): ``SE_2_1`` ... ``SE_5_3``. Other networks get ``SE_1``, ``SE_2``, ... in depth
order (see :mod:`sevis.attention.layers`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .bam import BAM
from .cbam import CBAMChannelGate, CBAMSpatialGate
from .kinds import AttentionKind, get_kind
from .sge import SpatialGroupEnhance
from .sk import SKBottleneck

__all__ = ["AttentionLayer", "find_attention", "register_attention", "unregister_attention"]


@dataclass(frozen=True)
class _AttentionType:
    kind: str
    gate: str
    prefix: str | None
    # NOTE for built-in classes whose forward multiplies by the gate child only in some
    # configurations; a module it rejects is no attention layer.
    applies: Callable[[nn.Module], bool] | None = None


# NOTE a class may have several types, tried in order: the first that applies to a module wins
# (timm's GlobalContext is a channel gate when it fuses by scaling, a context map otherwise).
_REGISTRY: dict[type[nn.Module], tuple[_AttentionType, ...]] = {}
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def register_attention(cls: type[nn.Module], *, kind: str, gate: str, prefix: str | None = None) -> None:
    """Teach sevis a new attention module class.

    Args:
        cls: the module class; subclasses match too.
        kind: a registered kind (:func:`sevis.attention.kinds.register_kind`): ``"se"`` if the gate
            outputs one value per channel, shape (N, C, 1, 1), (N, 1, C) or (N, 1, 1, C);
            ``"sge"`` if it outputs spatial masks, shape (N * G, 1, H, W), and the module has
            ``groups``; ``"branch"`` if it outputs a softmax over M branches of each of C
            channels, M-major ((N, M, C, 1, 1) or (N, M * C)), and the module has
            ``num_paths`` or ``radix`` (M); ``"spatial"`` for sigmoid maps (N, K, H, W)
            that multiply the features; ``"bam"`` for a gate the features are multiplied
            by 1 + (BAM's); ``"context"`` for the logits of a softmax over positions (GC).
        gate: attribute name of the child module whose output is the attention.
        prefix: the layers' name prefix (``"ECA"`` gives ``ECA_2_1``); default the kind's.
            Letters and digits, starting with a letter.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    get_kind(kind)  # raises ValueError naming the registered kinds
    if not isinstance(gate, str) or not gate:
        raise TypeError(f"gate must be the name of a child module, got {gate!r}")
    if prefix is not None and not (isinstance(prefix, str) and _PREFIX.fullmatch(prefix)):
        raise ValueError(f"prefix must be letters and digits starting with a letter, got {prefix!r}")
    _REGISTRY[cls] = (_AttentionType(kind, gate, prefix),)


def unregister_attention(cls: type[nn.Module]) -> None:
    """Forget a class added by :func:`register_attention`."""
    _REGISTRY.pop(cls, None)


def _register_builtins() -> None:
    from timm.layers import cbam, eca, global_context, selective_kernel, split_attn, squeeze_excite as timm_se
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
    register_attention(eca.EcaModule, kind="se", gate="gate", prefix="ECA")
    register_attention(eca.CecaModule, kind="se", gate="gate", prefix="ECA")
    # NOTE timm's LightChannelAttn (a ChannelAttn) calls F.sigmoid, not its gate child, and
    # GlobalContext calls its gate only when it fuses by scaling (gcresnet50t fuses by adding:
    # its one attention value is the context softmax).
    _REGISTRY[cbam.ChannelAttn] = (
        _AttentionType("se", "gate", "CBAMC", lambda m: not isinstance(m, cbam.LightChannelAttn)),
    )
    _REGISTRY[global_context.GlobalContext] = (
        _AttentionType("se", "gate", "GC", lambda m: getattr(m, "mlp_scale", None) is not None),
        _AttentionType("context", "conv_attn", "GC", lambda m: getattr(m, "conv_attn", None) is not None),
    )
    register_attention(selective_kernel.SelectiveKernel, kind="branch", gate="attn", prefix="SK")
    register_attention(SKBottleneck, kind="branch", gate="gate", prefix="SK")
    register_attention(CBAMChannelGate, kind="se", gate="sigmoid", prefix="CBAMC")
    register_attention(CBAMSpatialGate, kind="spatial", gate="sigmoid", prefix="CBAMS")
    register_attention(cbam.SpatialAttn, kind="spatial", gate="gate", prefix="CBAMS")
    register_attention(cbam.LightSpatialAttn, kind="spatial", gate="gate", prefix="CBAMS")
    register_attention(BAM, kind="bam", gate="gate", prefix="BAM")
    register_attention(split_attn.SplitAttn, kind="branch", gate="rsoftmax", prefix="SPLIT")


_register_builtins()


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer of a model.

    Attributes:
        name: ``SE_2_1``-style name, unique within the model.
        kind: the kind's name, ``"se"``, ``"sge"``, ``"branch"`` or another registered one.
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
            return next((t for t in _REGISTRY[cls] if t.applies is None or t.applies(module)), None)
    return None


# timm's ResNet: layer1 is the paper's stage 2; timm's ByobNet (seresnext26ts): stages.0 is.
_STAGE_BLOCKS = ((re.compile(r"^layer(\d+)\.(\d+)(?:\.|$)"), 1), (re.compile(r"^stages\.(\d+)\.(\d+)(?:\.|$)"), 2))

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
        prefix = _prefix(spec)
        name = f"{prefix}_{stage}_{block}" if stage is not None else f"{prefix}_{block}"
        layers.append(AttentionLayer(name, spec.kind, path, module, getattr(module, spec.gate), stage, block))
    return layers


def _prefix(spec: _AttentionType) -> str:
    return spec.prefix or get_kind(spec.kind).prefix


def _paper_places(found: list[_Found]) -> list[tuple[int | None, int]] | None:
    """(stage, block) of each layer if every one sits in its own block of a ResNet's
    ``layerX.Y`` (or a ByobNet's ``stages.X.Y``)."""
    for pattern, first_stage in _STAGE_BLOCKS:
        places: list[tuple[int | None, int]] = []
        for path, _, _ in found:
            match = pattern.match(path)
            if match is None:
                break
            places.append((int(match[1]) + first_stage, int(match[2]) + 1))
        else:
            keys = [(_prefix(spec), place) for (_, _, spec), place in zip(found, places, strict=True)]
            return places if found and len(set(keys)) == len(keys) else None
    return None


def _depth_places(found: list[_Found]) -> list[tuple[int | None, int]]:
    counts: dict[str, int] = {}
    places: list[tuple[int | None, int]] = []
    for _, _, spec in found:
        prefix = _prefix(spec)
        counts[prefix] = counts.get(prefix, 0) + 1
        places.append((None, counts[prefix]))
    return places
