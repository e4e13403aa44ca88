"""What-if: knock attention out during a forward pass and see what the network loses.

    with sevis.knockout(model, stages=[5]):          # the last stage's SE gates set to 1
        logits = model(x)
    with sevis.knockout(model, {"SE_4_6": sevis.Channels({17: 0.0})}):
        logits = model(x)                              # one channel's gate forced to 0

A forward hook on each chosen layer's gate child returns a replacement for the gate's
output, so everything downstream of the gate (the module's product, later layers, the
logits) sees the replacement and nothing else changes. The hooks are registered first
(``prepend=True``): a :func:`sevis.capture` block, entered before or after, records the
values the forward pass actually used. As with ``capture``, only forward passes of the
thread that entered the block are changed, and the hooks live exactly as long as the
block, also when it raises.

:func:`ablate` runs the SENet paper's experiment (its Table 13 and the remark that the
last stage's SE blocks can go at almost no cost): top-1 and top-5 accuracy with each
stage's attention removed, one stage at a time and all at once. It shares the work
the conditions have in common: removing stage k changes nothing before stage k, so
each condition starts from the baseline's input to its first changed stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attention.registry import AttentionLayer, find_attention
from ..errors import DataError, UnknownLayerError
from ..models.registry import model_info
from ..stats.classes import ClassStats
from .capturing import HookSet

__all__ = [
    "Channels",
    "Fixed",
    "GroupMean",
    "Knockout",
    "MeanOf",
    "Remove",
    "Replacement",
    "effect_tables",
    "knockout",
    "knockout_effect",
    "knockout_effects",
]


class Replacement:
    """What a knock-out puts in place of a layer's attention values.

    :meth:`__call__` gets the values as one row per image (:meth:`AttentionKind.per_image`
    layout: SE (N, C), SGE (N, G, H, W), branch gates (N, C, M)), not detached, and returns new values of the same
    shape (out of place, so gradients still flow where values are kept).
    """

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Remove(Replacement):
    """The attention values of an absent module (:meth:`AttentionKind.removed`): every gate
    that scales (SE, ECA, SGE) set to 1, so the module passes its input through; every
    branch of a softmax over M branches (SK, ResNeSt) weighted 1/M, their plain mean."""

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        return layer.spec.removed(layer.module, values)


def _broadcast(given: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """One value per position (D,), or per image and position (N, D), shaped to broadcast
    against ``values`` (N, D, ...); or a summary flattened from a row's every value
    (D * ..., a branch gate's ``weight``), shaped as the row."""
    rows = given[None] if given.ndim == 1 else given
    if rows.ndim == 2 and values.ndim > 2 and rows.shape[1] == values[0].numel() != values.shape[1]:
        return rows.reshape(-1, *values.shape[1:]).to(values.device, values.dtype).expand_as(values)
    if rows.ndim != 2 or rows.shape[1] != values.shape[1] or rows.shape[0] not in (1, values.shape[0]):
        raise ValueError(
            f"replacement of shape {tuple(given.shape)} does not fit values of shape {tuple(values.shape)}"
        )
    return rows.reshape(*rows.shape, *([1] * (values.ndim - 2))).to(values.device, values.dtype).expand_as(values)


@dataclass(frozen=True)
class Fixed(Replacement):
    """Given values: one per channel (SE) or group (SGE), (D,), the same for every image;
    or one row per image, (N, D); or the whole per-image layout."""

    values: torch.Tensor | np.ndarray = field(repr=False)

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        given = torch.as_tensor(self.values)
        if given.shape == values.shape:
            return given.to(values.device, values.dtype)
        return _broadcast(given, values)


@dataclass(frozen=True)
class Channels(Replacement):
    """Chosen channels (SE) or groups (SGE) forced to given values, e.g. ``{17: 0.0}``;
    every other value is kept as the network computed it."""

    values: Mapping[int, float]

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        size = values.shape[1]
        bad = [c for c in self.values if not 0 <= int(c) < size]
        if bad:
            raise ValueError(f"{layer.name} has {size} {layer.spec.index_name}s (0 to {size - 1}); got {bad[:5]}")
        chosen = torch.zeros(size, dtype=torch.bool, device=values.device)
        forced = torch.zeros(size, dtype=values.dtype, device=values.device)
        for c, v in self.values.items():
            chosen[int(c)] = True
            forced[int(c)] = float(v)
        chosen = chosen.reshape(1, size, *([1] * (values.ndim - 2)))
        return torch.where(chosen, _broadcast(forced, values), values)


@dataclass(frozen=True)
class GroupMean(Replacement):
    """SGE: each group's mask replaced by its own mean over the positions (per image), so the
    group keeps its overall weight but loses where it looks."""

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        if values.ndim < 3:
            raise ValueError(f"{layer.name}: GroupMean needs spatial values (SGE masks), not {layer.kind} gates")
        return values.mean(dim=tuple(range(2, values.ndim)), keepdim=True).expand_as(values)


@dataclass(frozen=True)
class MeanOf(Replacement):
    """Each layer's mean over a reference set of images (statistics of an analysis or a
    saved run: SE the mean gate per channel, SGE the mean mask per group); with
    ``per_class``, the mean of each image's own class (the labels are given to
    :class:`Knockout` as ``labels``)."""

    stats: ClassStats = field(repr=False)
    per_class: bool = False

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        if layer.name not in self.stats.layers:
            raise UnknownLayerError(f"the reference statistics have no layer {layer.name}")
        if not self.per_class:
            return _broadcast(torch.from_numpy(self.stats.mean(layer.name)), values)
        if labels is None or len(labels) != values.shape[0]:
            raise ValueError("MeanOf(per_class=True) needs one label per image: set Knockout.labels before the pass")
        unknown = sorted({str(x) for x in labels} - set(self.stats.classes))
        if unknown:
            raise DataError(f"the reference statistics have no class {unknown[0][:80]!r}")
        rows = np.stack([self.stats.mean(layer.name, label) for label in labels])
        return _broadcast(torch.from_numpy(rows), values)


class Knockout(HookSet):
    """Context manager replacing attention values during forward passes (see the module's
    docstring). ``plan`` maps layer names to a :class:`Replacement`.

    Attributes:
        labels: the class of each image of the next forward pass, for
            ``MeanOf(stats, per_class=True)``; set it before each pass.
    """

    def __init__(self, model: nn.Module, plan: Mapping[str, Replacement]) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        found = {layer.name: layer for layer in find_attention(model)}
        unknown = [name for name in plan if name not in found]
        if unknown:
            raise UnknownLayerError(f"layers {unknown[:8]} not in the model; it has {list(found)}")
        bad = [name for name, r in plan.items() if not isinstance(r, Replacement)]
        if bad:
            raise TypeError(f"the plan's values must be Replacement objects (Remove(), Channels(...)); see {bad[:3]}")
        self.model = model
        self.plan = {name: plan[name] for name in found if name in plan}  # depth order
        self.layers = [found[name] for name in self.plan]
        self.labels: Sequence[str] | None = None
        super().__init__()

    def attach(self) -> None:
        for layer in self.layers:
            self.keep(layer.gate.register_forward_hook(self._make_hook(layer), prepend=True))

    def _make_hook(self, layer: AttentionLayer) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor | None]:
        owner, replace, kind, module = self.owner, self.plan[layer.name], layer.spec, layer.module

        def hook(gate: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor | None:
            if threading.get_ident() != owner:
                return None
            # NOTE the live (not detached) rows keep gradients for Grad-CAM under a knock-out.
            rows = kind.rows(module, output)
            new = replace(layer, rows, self.labels)
            if new.shape != rows.shape:
                raise ValueError(
                    f"{layer.name}: the replacement has shape {tuple(new.shape)}, expected {tuple(rows.shape)}"
                )
            return kind.restore(module, new.to(output.dtype), output)

        return hook


def _stage_layers(model: nn.Module, stages: Iterable[int], kind: str | None) -> list[str]:
    found = find_attention(model)
    have = sorted({x.stage for x in found if x.stage is not None})
    names = []
    for stage in stages:
        if stage not in have:
            raise UnknownLayerError(f"the model has no attention in stage {stage}; its stages are {have}")
        names += [x.name for x in found if x.stage == stage and kind in (None, x.kind)]
    return names


def knockout(
    model: nn.Module,
    plan: Mapping[str, Replacement] | None = None,
    *,
    layers: Iterable[str] | None = None,
    stages: Iterable[int] | None = None,
    kind: str | None = None,
    replace: Replacement | None = None,
) -> Knockout:
    """Replace attention values of ``model`` inside a ``with`` block.

    Args:
        plan: layer name -> :class:`Replacement`.
        layers: layers to give ``replace`` (default :class:`Remove`); added to ``plan``.
        stages: whole stages by the paper's number (2 to 5 in a ResNet-50), likewise.
        kind: with ``stages``, only layers of this kind (``"se"``, ``"sge"``).
    """
    full: dict[str, Replacement] = dict(plan or {})
    chosen = list(layers or [])
    if stages is not None:
        chosen += _stage_layers(model, stages, kind)
    for name in chosen:
        full[name] = replace if replace is not None else Remove()
    return Knockout(model, full)


def knockout_effect(
    model: nn.Module,
    x: torch.Tensor,
    plan: Mapping[str, Replacement],
    *,
    targets: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    top_k: int = 5,
) -> pd.DataFrame:
    """Per image, what a knock-out changes: the top-k before and after, how many of the
    top-k stay, and the probability of each image's target class (default: its top-1
    before) before and after.

    Args:
        x: a preprocessed batch (:func:`sevis.preprocess`).
        targets: one class index per image (the true or a chosen class).
        labels: the images' classes, for ``MeanOf(stats, per_class=True)``.
    """
    return knockout_effects(model, x, {"": plan}, targets=targets, labels=labels, top_k=top_k)[""]


def knockout_effects(
    model: nn.Module,
    x: torch.Tensor,
    plans: Mapping[str, Mapping[str, Replacement]],
    *,
    targets: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    top_k: int = 5,
) -> dict[str, pd.DataFrame]:
    """:func:`knockout_effect` of several plans (name -> plan) against one plain pass."""
    with torch.inference_mode():
        before = model(x).float().softmax(1)
        afters = {}
        for name, plan in plans.items():
            with Knockout(model, plan) as ko:
                ko.labels = labels
                afters[name] = model(x).float().softmax(1)
    return effect_tables(model_info(model).class_names, before, afters, targets=targets, top_k=top_k)


def effect_tables(
    class_names: Sequence[str],
    before: torch.Tensor,
    afters: Mapping[str, torch.Tensor],
    *,
    targets: Sequence[int] | None = None,
    top_k: int = 5,
) -> dict[str, pd.DataFrame]:
    """The tables of :func:`knockout_effects` from the class probabilities (N, classes) of
    the plain pass (``before``) and of each knock-out's (``afters``), however they were run."""
    names = list(class_names)
    k = min(top_k, before.shape[1])
    top_before = before.topk(k, 1).indices
    target = top_before[:, 0] if targets is None else torch.as_tensor(list(targets), device=before.device)
    rows = torch.arange(len(before), device=before.device)
    tables = {}
    for name, after in afters.items():
        top_after = after.topk(k, 1).indices
        tables[name] = pd.DataFrame(
            {
                "target": [names[i] for i in target.tolist()],
                "p_before": before[rows, target].cpu().numpy(),
                "p_after": after[rows, target].cpu().numpy(),
                "p_change": (after[rows, target] - before[rows, target]).cpu().numpy(),
                f"top{k}_before": [", ".join(names[i] for i in row) for row in top_before.tolist()],
                f"top{k}_after": [", ".join(names[i] for i in row) for row in top_after.tolist()],
                f"top{k}_kept": [
                    len(set(a) & set(b)) for a, b in zip(top_before.tolist(), top_after.tolist(), strict=True)
                ],
                "top1_changed": (top_before[:, 0] != top_after[:, 0]).cpu().numpy(),
            }
        )
    return tables
