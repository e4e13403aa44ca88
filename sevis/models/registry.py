"""Models sevis knows, where their weights come from, and :func:`load_model`.

A small registry (after timm's ``_registry.py``) maps a name to how the network is
built, where its default weights live, and how a checkpoint's keys map onto it:

* ``se_resnet50``: SE-ResNet-50 with the SENet authors' ImageNet weights, converted
  from Caffe (timm ``legacy_seresnet50.in1k``; the same file as the ``pretrainedmodels``
  package's ``se_resnet50``). Hu et al., arXiv:1709.01507.
* ``sge_resnet50``: SGE-ResNet-50, the PytorchInsight reference network, with the
  checkpoint its README links on Google Drive. Li et al., arXiv:1905.09646.
* ``cbam_resnet50``, ``bam_resnet50``, ``sk_resnet50``: the networks PytorchInsight trained
  beside it with one recipe (:mod:`sevis.models.pytorchinsight`), with its checkpoints, and
  ``resnet50_pytorchinsight``, the same recipe without attention (the baseline of its table:
  it loads, classifies and ablates; it has nothing to capture).

* the timm networks of the modules SGE is compared with, under their timm ids
  (:data:`COMPARED`): ECA (``ecaresnet50d.miil_in1k``, ``ecaresnet50t.ra2_in1k``), GC
  (``gcresnet50t.ra2_in1k``), SK
  (``skresnext50_32x4d.ra_in1k``, ``skresnet18.ra_in1k``, ``skresnet34.ra_in1k``), ResNeSt
  (``resnest50d.in1k``, ``resnest14d.gluon_in1k``, ``resnest26d.gluon_in1k``) and SE-ResNet-50
  in four more training recipes (``seresnet50.a1_in1k``, ``.a2_in1k``, ``.a3_in1k``,
  ``.ra2_in1k``); their weights come from timm's Hugging Face hub repositories.

These pretrained files are downloaded into, and found in, the weights folder
(:mod:`sevis.models.weights`), so each run records the file's SHA-256.
* any other timm model id whose network has attention sevis knows, e.g.
  ``seresnext50_32x4d.gluon_in1k``, with timm's own download and cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_model_data_config
from timm.models import get_pretrained_cfg
from torch import nn

from ..attention.registry import find_attention
from ..attention.sge import SpatialGroupEnhance
from ..errors import UnknownModelError, WeightsUnavailableError
from ..provenance import UNTRAINED_SEED, Provenance
from . import pytorchinsight
from ._checkpoint import load_strict, read_checkpoint, read_checkpoint_isolated
from .selfcheck import SelfCheck, self_check
from .weights import WeightsFile, fetch_weights, register_weights, weights_file

__all__ = [
    "COMPARED",
    "IMAGENET_CONFIG",
    "PRETRAINED",
    "UNTRAINED",
    "ModelInfo",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
    "set_model_info",
    "unregister_model",
]

PRETRAINED = "pretrained"
UNTRAINED = "untrained"


@dataclass(frozen=True)
class ModelInfo:
    """What a model loaded by sevis knows about itself (``model.sevis_info``).

    Attributes:
        name: the name given to :func:`load_model`.
        weights: where the weights came from, for people: a URL or hub id, a file path,
            or ``"untrained"``.
        weights_sha256: SHA-256 of the weights file, when one was read.
        untrained: True for random weights; every output should say so.
        data_config: timm data config: input_size, interpolation, crop_pct, mean, std.
        class_names: one human-readable name per output class.
        check: the self-check on photographs (:mod:`sevis.models.selfcheck`): None where it
            does not apply (not the 1,000 ImageNet classes) or was not asked for.
    """

    name: str
    weights: str
    weights_sha256: str | None
    untrained: bool
    data_config: dict[str, Any]
    class_names: tuple[str, ...] = field(repr=False)
    check: SelfCheck | None = field(default=None, repr=False)

    @property
    def provenance(self) -> Provenance:
        """Model, weights and untrained flag, as every result and export records them."""
        seed = UNTRAINED_SEED if self.untrained else None
        return Provenance(self.name, self.weights, self.untrained, self.weights_sha256, seed)


def _same_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state


@dataclass(frozen=True)
class _Spec:
    description: str
    build: Callable[[bool], nn.Module]  # pretrained -> model
    pretrained_source: str
    adapt_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = _same_keys
    # NOTE a reference network without attention (PytorchInsight's plain ResNet-50): it loads,
    # classifies and ablates (its "none" row is the comparison's baseline), nothing to capture
    attention_free: bool = False


def _timm_builder(model_id: str) -> Callable[[bool], nn.Module]:
    return lambda pretrained: timm.create_model(model_id, pretrained=pretrained)


IMAGENET_CONFIG: dict[str, Any] = {  # a torchvision-style ResNet's ImageNet-1k evaluation at 224 px
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "num_classes": 1000,
    "first_conv": "conv1",
    "classifier": "fc",
}


def _build_sge_resnet50(pretrained: bool) -> nn.Module:
    from timm.models.resnet import Bottleneck, ResNet

    assert not pretrained, "SGE weights come from a local file"
    return ResNet(
        block=Bottleneck,  # type: ignore[arg-type]  # timm annotates the class as an instance
        layers=(3, 4, 6, 3),
        block_args={"attn_layer": SpatialGroupEnhance},
    )


def _imagenet(build: Callable[[bool], nn.Module]) -> Callable[[bool], nn.Module]:
    """``build`` giving its network a torchvision-style ResNet's ImageNet data config (what
    timm reads the data config from)."""

    def built(pretrained: bool) -> nn.Module:
        model = build(pretrained)
        model.pretrained_cfg = dict(IMAGENET_CONFIG)  # type: ignore[assignment]
        return model

    return built


def _pytorchinsight_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # NOTE timm's Bottleneck calls its attention slot `se`; PytorchInsight named it `sge`.
    return {k.replace(".sge.", ".se."): v for k, v in state.items()}


COMPARED: dict[str, str] = {
    "ecaresnet50d.miil_in1k": "ECA-ResNet-50-D (ECA, arXiv:1910.03151), timm, MIIL weights",
    "ecaresnet50t.ra2_in1k": "ECA-ResNet-50-T (ECA), timm RandAugment weights",
    "skresnext50_32x4d.ra_in1k": "SK-ResNeXt-50 32x4d (SK, arXiv:1903.06586), timm weights",
    "skresnet18.ra_in1k": "SK-ResNet-18 (SK), timm weights",
    "skresnet34.ra_in1k": "SK-ResNet-34 (SK), timm weights",
    "gcresnet50t.ra2_in1k": "GC-ResNet-50-T (global context, arXiv:1904.11492), timm weights",
    "resnest50d.in1k": "ResNeSt-50-D (split attention, arXiv:2004.08955), the authors' weights",
    "resnest14d.gluon_in1k": "ResNeSt-14-D (split attention), GluonCV weights",
    "resnest26d.gluon_in1k": "ResNeSt-26-D (split attention), GluonCV weights",
    "seresnet50.a1_in1k": "SE-ResNet-50, timm's A1 recipe (ResNet strikes back, 600 epochs)",
    "seresnet50.a2_in1k": "SE-ResNet-50, timm's A2 recipe (300 epochs)",
    "seresnet50.a3_in1k": "SE-ResNet-50, timm's A3 recipe (100 epochs at 160 px)",
    "seresnet50.ra2_in1k": "SE-ResNet-50, timm's RandAugment recipe",
}
"""timm ids of the networks sevis compares SE and SGE with, and a line about each; the
SENet authors' own SE-ResNet-50 is ``se_resnet50`` (timm ``legacy_seresnet50.in1k``)."""


def _hub_weights(model_id: str) -> WeightsFile:
    """timm's weights of ``model_id`` as a file of the weights folder: the safetensors file
    of its Hugging Face hub repository (what ``timm.create_model(pretrained=True)`` reads)."""
    repo = get_pretrained_cfg(model_id).hf_hub_id  # type: ignore[union-attr]
    return WeightsFile(
        f"{model_id}.safetensors",
        (f"https://huggingface.co/{repo}/resolve/main/model.safetensors",),
        manual=(f"https://huggingface.co/{repo} (Files: model.safetensors)",),
    )


_REGISTRY: dict[str, _Spec] = {
    "se_resnet50": _Spec(
        "SE-ResNet-50, SENet authors' ImageNet weights (77.6 top-1)",
        _timm_builder("legacy_seresnet50.in1k"),
        "timm legacy_seresnet50.in1k (se_resnet50-ce0d4300.pth, downloaded once and cached)",
    ),
    "sge_resnet50": _Spec(
        "SGE-ResNet-50, PytorchInsight reference weights (77.58 top-1)",
        _imagenet(_build_sge_resnet50),
        "PytorchInsight (https://github.com/implus/PytorchInsight), Google Drive",
        adapt_keys=_pytorchinsight_keys,
    ),
    "resnet50_pytorchinsight": _Spec(
        "ResNet-50 without attention, PytorchInsight's reference of the one recipe (76.38 top-1)",
        _imagenet(pytorchinsight.build_resnet50),
        "PytorchInsight (https://github.com/implus/PytorchInsight), Google Drive",
        attention_free=True,
    ),
    "cbam_resnet50": _Spec(
        "CBAM-ResNet-50, PytorchInsight weights (77.63 top-1)",
        _imagenet(pytorchinsight.build_cbam_resnet50),
        "PytorchInsight (https://github.com/implus/PytorchInsight), Google Drive",
        adapt_keys=pytorchinsight.cbam_keys,
    ),
    "bam_resnet50": _Spec(
        "BAM-ResNet-50, PytorchInsight weights (76.90 top-1)",
        _imagenet(pytorchinsight.build_bam_resnet50),
        "PytorchInsight (https://github.com/implus/PytorchInsight), Google Drive",
        adapt_keys=pytorchinsight.bam_keys,
    ),
    "sk_resnet50": _Spec(
        "SK-ResNet-50 (PytorchInsight's SK on a ResNet-50 bottleneck), its weights (77.54 top-1)",
        _imagenet(pytorchinsight.build_sk_resnet50),
        "PytorchInsight (https://github.com/implus/PytorchInsight), Google Drive",
    ),
}
for _id, _description in COMPARED.items():
    _REGISTRY[_id] = _Spec(_description, _timm_builder(_id), f"Hugging Face hub, timm/{_id}")
    register_weights(_id, _hub_weights(_id))


def register_model(
    name: str,
    build: Callable[[bool], nn.Module],
    *,
    description: str,
    pretrained_source: str = "none: pass a weights file",
    adapt_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = _same_keys,
    local_pretrained: str | None = None,
) -> None:
    """Add a model name to :func:`load_model` (after timm's registry).

    Args:
        build: ``build(pretrained)`` returns the network; with ``pretrained=True`` it
            fetches its own weights, or raises if it cannot.
        description: one line for people.
        pretrained_source: where the pretrained weights come from, for messages.
        adapt_keys: maps a checkpoint's state dict onto the network's key names.
        local_pretrained: a file-name pattern: a match in :func:`weights_dir` is used as
            the pretrained weights (then ``build(True)`` is never called); registered with
            :func:`sevis.models.weights.register_weights`, which also takes download sources.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    _REGISTRY[name] = _Spec(description, build, pretrained_source, adapt_keys)
    if local_pretrained is not None:
        register_weights(name, WeightsFile(local_pretrained, (), (pretrained_source,), None, (local_pretrained,)))


def unregister_model(name: str) -> None:
    """Remove a name added by :func:`register_model` (and where its weights come from)."""
    _REGISTRY.pop(name, None)
    register_weights(name, None)


def list_models() -> dict[str, str]:
    """sevis's own model names and a one-line description of each."""
    return {name: spec.description for name, spec in _REGISTRY.items()}


def _spec_for(name: str) -> _Spec:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if timm.is_model(name):
        return _Spec(f"timm {name}", _timm_builder(name), f"timm {name} (hub weights, cached)")
    raise UnknownModelError(
        f"unknown model {name!r}: use one of {sorted(_REGISTRY)} or a timm model id "
        "with SE modules (e.g. 'seresnet50.ra2_in1k', 'seresnext50_32x4d')"
    )


def load_model(
    name: str,
    weights: str | os.PathLike[str] = PRETRAINED,
    *,
    device: str | torch.device = "cpu",
    check: bool = True,
    isolate: bool = False,
    within: Sequence[str] | None = None,
) -> nn.Module:
    """Build ``name`` with ``weights`` and return it in eval mode.

    Args:
        name: ``"se_resnet50"``, ``"sge_resnet50"`` or a timm model id with SE modules.
        weights: ``"pretrained"`` (the default source, downloaded once and cached),
            ``"untrained"`` (random init, flagged in ``model.sevis_info``), or the path of
            a ``.pth``, ``.pth.tar``, ``.pt``, ``.bin`` or ``.safetensors`` file, with or
            without a training wrapper and ``module.`` prefixes. Files are read without
            executing pickled code and must fit the architecture exactly.
        device: where the model lives.
        check: classify the sample photographs (:func:`sevis.models.selfcheck.self_check`) and
            keep the verdict in ``model.sevis_info.check``; three images, once.
        isolate: read a weights file in a worker process limited in memory and time
            (:class:`sevis.limits.Limits`, from ``SEVIS_*`` variables): for files from
            people you do not trust, such as a shared dashboard's uploads.
        within: folders a weights file must lie in, checked on the file as it is
            opened (a symbolic link swapped in after a check by name is refused).

    Returns:
        The model, with :class:`ModelInfo` at ``model.sevis_info``.

    Raises:
        UnknownModelError: ``name`` is unknown, or the network has no SE/SGE layers.
        CheckpointError: the file is unsafe, corrupt, beyond the limits, or for another
            architecture.
        WeightsUnavailableError: the pretrained source cannot be reached.
    """
    spec = _spec_for(name)
    sha256 = None
    if isinstance(weights, os.PathLike) or weights not in (PRETRAINED, UNTRAINED):
        model = spec.build(False)
        checkpoint = (read_checkpoint_isolated if isolate else read_checkpoint)(weights, within=within)
        load_strict(model, spec.adapt_keys(checkpoint.state_dict), checkpoint.path.name, name)
        source, sha256 = str(checkpoint.path), checkpoint.sha256
    elif weights == UNTRAINED:
        # NOTE a fixed seed: two loads (a resumed run, a Ray actor, another session) are
        # the same network, and the global RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            model = spec.build(False)
        source = UNTRAINED
    elif weights_file(name) is not None:  # a file in the weights folder, downloaded there if missing
        return load_model(name, fetch_weights(name), device=device, check=check, isolate=isolate, within=within)
    else:
        try:
            model = spec.build(True)
        except Exception as err:  # urllib, huggingface_hub and socket errors differ by source
            raise WeightsUnavailableError(
                f"the pretrained weights of {name} could not be fetched from {spec.pretrained_source} "
                f"({_said_once(str(err))}); use a weights file or untrained weights instead"
            ) from err
        source = spec.pretrained_source

    if not find_attention(model) and not spec.attention_free:
        raise UnknownModelError(f"{name} has no attention layers sevis knows (SE, SGE, ECA, SK, ResNeSt, ...)")
    data_config, class_names = resolve_model_data_config(model), _class_names(model)
    model = model.eval().to(device)
    info = ModelInfo(
        name=name,
        weights=source,
        weights_sha256=sha256,
        untrained=weights == UNTRAINED,
        data_config=data_config,
        class_names=class_names,
        check=self_check(model, data_config, class_names) if check else None,
    )
    return set_model_info(model, info)


def _said_once(text: str, limit: int = 600) -> str:
    """A library's error for a message: each sentence once (the hub's errors repeat theirs
    for every retry), on one line, cut at a word with an ellipsis past ``limit``."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    said = " ".join(dict.fromkeys(s for s in sentences if s))
    if len(said) <= limit:
        return said
    return said[:limit].rsplit(" ", 1)[0] + " …"


def _class_names(model: nn.Module) -> tuple[str, ...]:
    num_classes = getattr(model, "num_classes", 0)
    subset = infer_imagenet_subset(model)
    if subset is not None:
        info = ImageNetInfo(subset)
        if info.num_classes() == num_classes:
            return tuple(info.index_to_description(i) for i in range(num_classes))
    return tuple(f"class {i}" for i in range(num_classes))


def set_model_info(model: nn.Module, info: ModelInfo) -> nn.Module:
    """Give ``model`` what sevis knows of it (``model.sevis_info``), e.g. a copy of its
    :class:`ModelInfo` naming other weights; returns the model.

    Raises:
        TypeError: ``model`` is no ``nn.Module`` or ``info`` no :class:`ModelInfo`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(info, ModelInfo):
        raise TypeError(f"info must be a ModelInfo, got {type(info).__name__}")
    # NOTE object.__setattr__: nn.Module's __setattr__ is typed for tensors and modules.
    object.__setattr__(model, "sevis_info", info)
    return model


def model_info(model: nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` of a model loaded by :func:`load_model`."""
    info = getattr(model, "sevis_info", None)
    if not isinstance(info, ModelInfo):
        raise TypeError("model was not loaded by sevis.load_model (no sevis_info)")
    return info
