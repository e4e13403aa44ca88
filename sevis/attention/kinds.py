"""Kinds of attention as registered strategies: SE's channel gates, SGE's spatial masks,
SK's and ResNeSt's branch gates, CBAM's spatial maps and BAM's 3-D maps.

A kind says everything sevis needs to know about one sort of attention value, so
that capture, statistics, saved runs, the dashboard and the figures have no
``if kind == ...`` branches:

* its ``name`` (``"se"``) and layer-name ``prefix`` (``"SE"``);
* :meth:`AttentionKind.per_image`: the gate's output reshaped to one row per image,
  (N, C) for SE, (N, G, H, W) for SGE, (N, C, M) for branch gates, (N, K, H, W) for spatial
  maps (K = 1 for CBAM, C for BAM) (:meth:`AttentionKind.rows`
  without the detach, and :meth:`AttentionKind.restore` back to the gate's layout);
* :meth:`AttentionKind.removed`: the values that mean "no attention module" (a knock-out's
  :class:`sevis.Remove`): 1 for gates that scale, 1/M for a softmax over M branches;
* :meth:`AttentionKind.summarise`: what is kept per image in statistics and saved runs,
  a few (N, D) fields; :meth:`AttentionKind.column` names their Parquet columns;
* optionally :meth:`AttentionKind.module_values`: values taken from the whole attention
  module's input and output (SGE: each group's feature norm before and after it), and
  their summaries (:meth:`AttentionKind.summarise_module`);
* :meth:`AttentionKind.new_stats`: the accumulator of per-class statistics.

How a kind is drawn is not its business: :func:`sevis.figures.register_kind_figures`
registers a drawing for a kind, and :func:`sevis.figures.kind_figures` draws a layer.

Add a kind with :func:`register_kind`, then attention classes of that kind with
:func:`sevis.register_attention`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..stats.classes import ClassStats
from ..stats.se import ExcitationStats
from ..stats.sge import MaskStats, mask_summary
from .layers import paper_layers, stage_ends

__all__ = [
    "AttentionKind",
    "BAMKind",
    "BranchKind",
    "ContextKind",
    "SEKind",
    "SGEKind",
    "SpatialKind",
    "get_kind",
    "group_norms",
    "list_kinds",
    "register_kind",
    "unregister_kind",
]


class AttentionKind:
    """One sort of attention value. Subclass it and override what differs.

    Class attributes:
        name: registry key, lower case (``"se"``).
        prefix: layer-name prefix (``"SE"`` gives ``SE_2_1``).
        fields: names of the per-image summary fields, each (N, D).
        module_fields: names of the summary fields :meth:`summarise_module` adds (none by
            default; a run made before a kind had them simply lacks them).
        index_name: what one position of a summary is (``"channel"``, ``"group"``).
        index_field: the summary field with one value per channel or group, which per-channel
            measures (the selectivity beside a knock-out's cost) use; None: the first field.
        description: one line for people.
    """

    name: str = ""
    prefix: str = ""
    fields: tuple[str, ...] = ()
    module_fields: tuple[str, ...] = ()
    index_name: str = "index"
    index_field: str | None = None
    description: str = ""

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        """The gate's ``output`` as one row per image, detached (a view where possible)."""
        return output.detach()

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        """:meth:`per_image` not detached (a knock-out replaces these, and gradients flow
        through the values it keeps). By default a reshape of ``output`` to the shape of
        :meth:`per_image`: override both where the layout is not a reshape."""
        return output.reshape(self.per_image(module, output).shape)

    def restore(self, module: nn.Module, values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """:meth:`rows`-shaped ``values`` back in the layout of the gate's ``output``."""
        return values.reshape(output.shape)

    def removed(self, module: nn.Module, values: torch.Tensor) -> torch.Tensor:
        """What the attention values are when the module is absent, shaped as ``values``
        (:meth:`rows`): 1 by default (a gate that scales passes its input unchanged)."""
        return torch.ones_like(values)

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Per-image summary fields of :meth:`per_image` values: field -> (N, D)."""
        raise NotImplementedError

    def module_values(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Values recorded from the attention module's input and output (a forward hook on
        the module, only for kinds with ``module_fields``), one row per image."""
        return {}

    def summarise_module(self, values: np.ndarray, module_values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-image summary fields (``module_fields``) of :meth:`module_values`, given the
        layer's :meth:`per_image` values too."""
        return {}

    def histogram_values(self, values: np.ndarray) -> np.ndarray | None:
        """The values whose distribution the histograms show, from :meth:`per_image`
        values (default: all of them)."""
        return values

    def overlay(self, values: np.ndarray) -> np.ndarray | None:
        """One image's :meth:`per_image` values as one (H, W) map in [0, 1] to draw over the
        image, or None (the default) for values that are no map."""
        return None

    def histogram_from_summaries(self, summaries: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The same, when only the summaries are there (a saved run): None if they do
        not hold the values."""
        return None

    def distribution_values(
        self, values: np.ndarray, module_values: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """Values in [0, 1] whose distribution per position the statistics count, name ->
        (N, P, M) (:meth:`ClassStats.distribution`); None (the default) for none."""
        return None

    def column(self, layer: str, field: str) -> str:
        """The saved run's column of one layer's field."""
        return f"{layer}_{field}"

    def shown_layers(self, names: Sequence[str]) -> list[str]:
        """The layers a report shows of ``names`` (depth order): each stage's last block."""
        return stage_ends(names)

    def new_stats(self) -> ClassStats:
        """An empty accumulator of this kind's per-class statistics."""
        return ClassStats(self.fields, self.index_name)

    def __repr__(self) -> str:
        return f"<attention kind {self.name!r}>"


class SEKind(AttentionKind):
    """Squeeze-and-Excitation (arXiv:1709.01507): one gate value per channel,
    s = sigmoid(W2 relu(W1 z)); the gate outputs (N, C, 1, 1) or (N, 1, 1, C)."""

    name = "se"
    prefix = "SE"
    fields = ("excitation",)
    index_name = "channel"
    description = "channel attention: one excitation per channel"

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return output.flatten(1)

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return self.rows(module, output).detach()

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {"excitation": values}

    def histogram_from_summaries(self, summaries: Mapping[str, np.ndarray]) -> np.ndarray | None:
        return summaries["excitation"]

    def column(self, layer: str, field: str) -> str:
        return layer  # the saved run's SE columns are named by the layer alone

    def shown_layers(self, names: Sequence[str]) -> list[str]:
        return paper_layers(names)  # the six blocks of the paper's Figure 6

    def new_stats(self) -> ExcitationStats:
        return ExcitationStats()


class SGEKind(AttentionKind):
    """Spatial Group-wise Enhance (arXiv:1905.09646): one spatial mask per channel group;
    the gate outputs (N * G, 1, H, W) and the module has ``groups``."""

    name = "sge"
    prefix = "SGE"
    fields = ("mean", "var")
    module_fields = ("norm_mean_before", "norm_var_before", "norm_mean_after", "norm_var_after")
    index_name = "group"
    description = "spatial attention: one mask per channel group"

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        groups = int(module.groups)  # type: ignore[arg-type]
        return output.reshape(-1, groups, *output.shape[-2:])

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return self.rows(module, output).detach()

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        mean, var = mask_summary(values)
        return {"mean": mean.astype(np.float32), "var": var.astype(np.float32)}

    def module_values(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The SGE paper's feature map before SGE: at each position, the norm of the group's
        C/G-vector x_i, (N, G, H, W). After SGE it is sigmoid(a_i) ||x_i||, the mask times
        this (the mask scales the whole vector), so the output needs no second pass."""
        return {"norm_before": group_norms(inputs[0], int(module.groups))}  # type: ignore[arg-type]

    def summarise_module(self, values: np.ndarray, module_values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each group's mean and spatial variance (ddof = 0) of the norms before and after."""
        before = module_values["norm_before"]
        out = {}
        for when, norms in (("before", before), ("after", before * values)):
            mean, var = mask_summary(norms)
            out[f"norm_mean_{when}"], out[f"norm_var_{when}"] = mean.astype(np.float32), var.astype(np.float32)
        return out  # in the order of module_fields

    def distribution_values(
        self, values: np.ndarray, module_values: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """The SGE paper's distributions: each group's feature norms at every position, before
        SGE and after it (mask x before), both divided by the image's largest norm of that
        group before SGE (one [0, 1] scale per image and group, as the Images page draws
        them), (N, G, H x W) each."""
        before = module_values.get("norm_before")
        if before is None:
            return None
        flat = before.reshape(*before.shape[:2], -1).astype(np.float32)
        peak = flat.max(-1, keepdims=True)
        scale = np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)
        scaled = flat * scale
        return {"before": scaled, "after": scaled * values.reshape(scaled.shape)}

    def new_stats(self) -> MaskStats:
        return MaskStats()


class BranchKind(AttentionKind):
    """A softmax over M branches of each channel: SK's kernel branches (arXiv:1903.06586),
    ResNeSt's radix splits (arXiv:2004.08955). The gate outputs the weights M-major,
    (N, M, C, 1, 1) or (N, M * C); the module has ``num_paths`` (SK) or ``radix`` (ResNeSt)
    = M. One row per image is (N, C, M), channel-major, so a channel's knock-out or
    replacement (:class:`sevis.Channels`) sets all of its branches.

    Summaries: ``weight``, each channel's M branch weights (N, C * M, channel-major), and
    ``dominant``, each channel's largest branch weight (N, C), in [1/M, 1]. The histograms
    and the saturation count ``dominant``: saturated means one branch takes >= 0.99 of the
    channel. Removed (:meth:`removed`) means every branch weighted 1/M: the plain mean of the
    branches, what the block computes with its attention taken out (SK's fuse step without
    selection; ResNeSt's splits averaged). A ResNeSt block with radix 1 gates each channel
    with a sigmoid instead (M = 1): its one "branch" weight is that gate, removed at 1.
    """

    name = "branch"
    prefix = "BR"
    fields = ("weight", "dominant")
    index_name = "channel"
    index_field = "dominant"
    description = "branch attention: a softmax over each channel's branches"

    @staticmethod
    def branches(module: nn.Module) -> int:
        """M, the number of branches of an SK (``num_paths``) or ResNeSt (``radix``) module."""
        for attribute in ("num_paths", "radix"):
            value = getattr(module, attribute, None)
            if isinstance(value, int) and value >= 1:
                return value
        raise TypeError(f"{type(module).__name__} has no num_paths or radix: not a branch-gated module")

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(output.shape[0], self.branches(module), -1).transpose(1, 2)

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return self.rows(module, output).detach()

    def restore(self, module: nn.Module, values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return values.transpose(1, 2).reshape(output.shape)

    def removed(self, module: nn.Module, values: torch.Tensor) -> torch.Tensor:
        return torch.full_like(values, 1.0 / self.branches(module))

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {"weight": values.reshape(len(values), -1), "dominant": values.max(-1)}

    def histogram_values(self, values: np.ndarray) -> np.ndarray | None:
        return values.max(-1)

    def histogram_from_summaries(self, summaries: Mapping[str, np.ndarray]) -> np.ndarray | None:
        return summaries["dominant"]


class SpatialKind(AttentionKind):
    """Spatial gates: K maps of sigmoid values per image, the gate outputs (N, K, H, W): CBAM's
    spatial gate (arXiv:1807.06521), one map (K = 1). Summaries as SGE's masks: each map's mean
    and spatial variance (ddof = 0), (N, K); histograms and saturation count every value;
    removed means every value 1 (the features pass unchanged)."""

    name = "spatial"
    prefix = "SP"
    fields = ("mean", "var")
    index_name = "map"
    description = "spatial attention: a gate at every position"

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(output.shape[0], -1, *output.shape[-2:])

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return self.rows(module, output).detach()

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        mean, var = mask_summary(values)
        return {"mean": mean.astype(np.float32), "var": var.astype(np.float32)}

    def overlay(self, values: np.ndarray) -> np.ndarray | None:
        return values.mean(0)  # CBAM: its one map; BAM: the mean of its channels' gates

    def new_stats(self) -> MaskStats:
        return MaskStats(self.index_name)


class BAMKind(SpatialKind):
    """BAM's gate (arXiv:1807.06514): sigmoid(M_c(F) * M_s(F)) at every channel and position,
    (N, C, H, W); the block multiplies its features by 1 + it. Summaries per channel, as
    :class:`SpatialKind`'s per map. Removed means the gate at 0: the map 1 + 0 = 1, the
    features pass unchanged."""

    name = "bam"
    prefix = "BAM"
    index_name = "channel"
    description = "3-D attention: 1 + a gate at every channel and position"

    def removed(self, module: nn.Module, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(values)


class ContextKind(AttentionKind):
    """GC's context map (arXiv:1904.11492): a softmax over the positions of a 1x1 convolution
    of the features, the weights of the global context, (N, 1, H, W), summing to 1. The
    hook is on the convolution (timm's ``GlobalContext`` applies the softmax as a function):
    :meth:`rows` applies the same softmax to its output, the very values the module pools by.

    Summaries: ``entropy``, the weights' entropy over log(H x W) (1: uniform, the context is
    the global average; 0: one position), and ``peak``, the largest weight times H x W (how
    many times the uniform weight the strongest position gets). Histograms and saturation
    count each weight over its image's largest (the map's shape, whatever its size). Removed
    means every weight 1 / (H x W): the context is the global average, GC's own ablation
    without context modelling (its transform stays).
    """

    name = "context"
    prefix = "GCC"
    fields = ("entropy", "peak")
    index_name = "map"
    description = "spatial attention: softmax weights of a global context"

    def rows(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        n, _, h, w = output.shape
        return torch.softmax(output.reshape(n, 1, h * w), dim=-1).reshape(n, 1, h, w)

    def per_image(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        return self.rows(module, output).detach()

    def restore(self, module: nn.Module, values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        # NOTE the softmax of log(p) is p again for weights p that sum to 1 (a constant shift)
        return torch.log(values.clamp_min(torch.finfo(values.dtype).tiny)).reshape(output.shape)

    def removed(self, module: nn.Module, values: torch.Tensor) -> torch.Tensor:
        return torch.full_like(values, 1.0 / values[0].numel())

    def summarise(self, values: np.ndarray) -> dict[str, np.ndarray]:
        flat = values.reshape(len(values), -1).astype(np.float64)
        size = flat.shape[1]
        entropy = -(flat * np.log(np.where(flat > 0, flat, 1.0))).sum(1) / np.log(size)
        return {
            "entropy": entropy[:, None].astype(np.float32),
            "peak": (flat.max(1) * size)[:, None].astype(np.float32),
        }

    def histogram_values(self, values: np.ndarray) -> np.ndarray | None:
        flat = values.reshape(len(values), -1)
        return flat / flat.max(1, keepdims=True)

    def overlay(self, values: np.ndarray) -> np.ndarray | None:
        return values[0] / values[0].max()


def group_norms(features: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, G, H, W): at each position, the norm of each group's C/G channels."""
    n, c, h, w = features.shape
    # NOTE torch.linalg.vector_norm over this middle dimension is ~100x slower on the CPU
    # than squaring and summing (18 ms against 0.2 ms for a stage-2 map).
    grouped = features.detach().float().reshape(n, groups, c // groups, h * w)
    return (grouped * grouped).sum(2).sqrt_().reshape(n, groups, h, w)


_KINDS: dict[str, AttentionKind] = {}


def register_kind(kind: AttentionKind) -> AttentionKind:
    """Add a kind of attention (an :class:`AttentionKind` instance); returns it."""
    if not isinstance(kind, AttentionKind):
        raise TypeError(f"kind must be an AttentionKind instance, got {type(kind).__name__}")
    if not kind.name or not kind.prefix or not kind.fields:
        raise ValueError(f"{type(kind).__name__} must set name, prefix and fields")
    taken = {k.prefix: k.name for k in _KINDS.values() if k.name != kind.name}
    if kind.prefix in taken:
        raise ValueError(f"prefix {kind.prefix!r} is already used by kind {taken[kind.prefix]!r}")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind added by :func:`register_kind` (tests, plugins being reloaded)."""
    _KINDS.pop(name, None)


def get_kind(name: str) -> AttentionKind:
    """The registered kind called ``name``.

    Raises:
        ValueError: no such kind.
    """
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown attention kind {name!r}; registered: {sorted(_KINDS)}") from None


def list_kinds() -> list[AttentionKind]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


register_kind(SEKind())
register_kind(SGEKind())
register_kind(BranchKind())
register_kind(SpatialKind())
register_kind(BAMKind())
register_kind(ContextKind())
