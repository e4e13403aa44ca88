"""Which channels matter: every channel of one layer knocked out in turn over a labelled set
of images, against how class-selective the channel is.

Morcos et al. (ICLR 2018, arXiv:1803.06959) ablated single units of trained networks and
found a unit's class selectivity a poor predictor of what removing it costs. sevis asks
the same of attention: a channel's gate (SE) or a group's mask (SGE) is set to 0 (the
channel, or the group's features, is removed from the block's output; :class:`Channels`
with 0) and the change in each image's true-class probability and in top-1 accuracy is
measured, beside the channel's class selectivity index over the same images.

The work is shared: each batch runs the plain network once, keeping the attention
module's input and its block's shortcut; every knock-out then runs only from the module
on (on timm ResNets and SENets; other blocks resume at their input, other networks run
whole), several channels at once in one larger batch. For SE_5_2 of a ResNet-50 a
channel costs the SE module, the last block and the head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attention.registry import AttentionLayer, find_attention
from ..data.failure import Failure
from ..data.files import iter_batches
from ..data.images import normalise
from ..errors import DataError, UnknownLayerError
from ..export import with_provenance
from ..hooks.capturing import capture
from ..hooks.knockouts import Knockout, Replacement, effect_tables
from ..models.classes import class_indices
from ..models.registry import model_info
from ..provenance import Provenance
from ..runs import Location
from ..stats.classes import ClassStats
from ._staged import InputsKept, RunCounter, staged
from .ablation import dataset_items

__all__ = ["Importance", "ImportanceRun", "channel_importance", "importance_data", "layer_knockout_effects"]

CHUNK_BYTES = 128 * 2**20
"""About how many bytes of what a pass starts from (the module's input and the shortcut, or
the block's input) one pass of several knock-outs holds, repeated."""


@dataclass(frozen=True)
class _OneEach(Replacement):
    """Rows in ``len(positions)`` blocks of ``images``: block k has position
    ``positions[k]`` set to ``value``, everything else as computed."""

    positions: tuple[int, ...]
    images: int
    value: float

    def __call__(self, layer: AttentionLayer, values: torch.Tensor, labels: Sequence[str] | None) -> torch.Tensor:
        which = torch.tensor(self.positions, device=values.device).repeat_interleave(self.images)
        chosen = torch.zeros(values.shape[:2], dtype=torch.bool, device=values.device)
        chosen[torch.arange(values.shape[0], device=values.device), which] = True
        chosen = chosen.reshape(*chosen.shape, *([1] * (values.ndim - 2)))
        return torch.where(chosen, torch.full((), self.value, dtype=values.dtype, device=values.device), values)


@dataclass
class Importance:
    """What knocking out each channel (SE) or group (SGE) of one layer costs.

    Attributes:
        layer: the layer.
        table: one row per channel: ``channel`` (or ``group``), ``selectivity`` (class
            selectivity index over the same images' labels), ``p_true_before``,
            ``p_true_after``, ``p_true_change`` (the true class's softmax probability,
            mean over the labelled images), ``top1_before``, ``top1_after``,
            ``top1_change`` (top-1 accuracy over them, fractions), ``p_top1_change``
            (the unmodified network's own top-1 class, mean over all images) and
            ``top1_kept`` (images whose top-1 stays). NaN where no image has a class of
            the model.
        images: images run; ``labelled``: of them, with a class of the model.
        value: what the knocked-out gate was set to (0: the channel removed).
        runs: images run through the whole network (``"network"``: the plain passes, and
            every knock-out where the network cannot be resumed) and image knock-outs done
            (``"knock-outs"``: images times channels), the work done.
        resumed: where each knock-out's pass started: ``"attention"`` (right at the
            layer's module: only the network after it runs), ``"block"`` (the block's
            input) or ``"network"`` (a whole pass, for networks sevis cannot resume).
    """

    layer: str
    table: pd.DataFrame
    images: int
    labelled: int
    value: float = 0.0
    runs: dict[str, int] = field(default_factory=dict)
    resumed: str = "network"

    @property
    def index_name(self) -> str:
        """``"channel"`` (SE) or ``"group"`` (SGE)."""
        return str(self.table.columns[0])

    def importance(self) -> np.ndarray:
        """Each channel's cost: the drop in the true class's probability (labelled images),
        else in the probability of the network's own top-1 class."""
        column = "p_true_change" if self.labelled else "p_top1_change"
        return -self.table[column].to_numpy()

    def correlation(self) -> dict[str, float]:
        """Spearman's rank correlation of selectivity and :meth:`importance` over the
        channels where both are defined: ``rho``, its two-sided ``p`` and ``channels``."""
        from scipy.stats import spearmanr

        x, y = self.table["selectivity"].to_numpy(), self.importance()
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
            return {"rho": float("nan"), "p": float("nan"), "channels": int(ok.sum())}
        result = spearmanr(x[ok], y[ok])
        return {"rho": float(result.statistic), "p": float(result.pvalue), "channels": int(ok.sum())}


@torch.inference_mode()
def channel_importance(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, Sequence[int], Sequence[str]]],
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    value: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> Importance:
    """Knock out each of ``channels`` of ``layer`` (default all) in turn, over ``batches``.

    Args:
        batches: preprocessed images (:func:`sevis.preprocess`), one true class index per
            image (-1: not a class of the model) and one label per image (the classes
            the selectivity index compares; any strings).
        value: the knocked-out gate's value (0: the channel is removed).
        progress: called after each pass with the image knock-outs it did and the number
            of knock-outs per image (the channels chosen).
    """
    target_layer = _attention_layer(model, layer)
    kind = target_layer.spec
    tail = _Tail(model, target_layer)
    device = next(model.parameters()).device
    stats: ClassStats = kind.new_stats()
    chosen: list[int] = []
    sums: dict[str, np.ndarray] = {}
    before = np.zeros(3)  # the true class's probability, top-1 correct, the own top-1's probability
    images = labelled = 0
    # NOTE the attention module runs once per image in the plain pass and once per image
    # and channel in the knock-outs, whatever the pass resumes from: it counts the work
    counter = RunCounter({"network": model, "attention": target_layer.module})
    with counter:
        for x, targets, labels in batches:
            x = x.to(device)
            n = len(x)
            target = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)
            known = target >= 0
            with capture(model, [layer]) as cap, InputsKept(tail.kept) as kept:
                base = model(x)
            values = cap.values[layer].float().cpu().numpy()
            stats.add({layer: kind.summarise(values)}, [str(label) for label in labels])
            if not chosen:
                chosen = _positions(channels, values.shape[1], layer, kind.index_name)
                sums = {k: np.zeros(len(chosen)) for k in ("p_true", "top1", "p_top1", "kept")}
            probs = base.float().softmax(1)
            rows = torch.arange(n, device=device)
            base_top1 = probs.argmax(1)
            truth = torch.where(known, target, base_top1)
            before += [
                float(probs[rows, truth][known].sum()),
                float(((base_top1 == target) & known).sum()),
                float(probs[rows, base_top1].sum()),
            ]
            inputs = tail.inputs(x, kept.inputs)
            size = sum(t.numel() * t.element_size() for t in inputs)
            step = max(1, min(len(chosen), CHUNK_BYTES // max(size, 1)))
            for start in range(0, len(chosen), step):
                part = chosen[start : start + step]
                with Knockout(model, {layer: _OneEach(tuple(part), n, value)}):
                    logits = tail.run([t.repeat(len(part), *([1] * (t.ndim - 1))) for t in inputs])
                after = logits.float().softmax(1).reshape(len(part), n, -1)
                top1 = after.argmax(2)
                span = slice(start, start + len(part))
                sums["p_true"][span] += (after[:, rows, truth] * known).sum(1).cpu().numpy()
                sums["top1"][span] += ((top1 == target) & known).sum(1).cpu().numpy()
                sums["p_top1"][span] += after[:, rows, base_top1].sum(1).cpu().numpy()
                sums["kept"][span] += (top1 == base_top1).sum(1).cpu().numpy()
                if progress is not None:
                    progress(len(part) * n, len(chosen))
            images += n
            labelled += int(known.sum())
    if not images:
        raise DataError("no images to knock channels out on")
    return Importance(
        layer=layer,
        table=_table(stats, layer, kind.index_name, kind.index_field, chosen, sums, before, images, labelled),
        images=images,
        labelled=labelled,
        value=value,
        runs={"network": counter.runs["network"], "knock-outs": counter.runs["attention"] - images},
        resumed=tail.resumed,
    )


@torch.inference_mode()
def layer_knockout_effects(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    replacements: Mapping[str, Replacement],
    *,
    top_k: int = 5,
) -> dict[str, pd.DataFrame]:
    """:func:`sevis.knockout_effects` of knock-outs of one layer (name -> what replaces its
    values), for the cost of the network after it: one plain pass keeps the layer's input
    and its block's shortcut, and each knock-out runs from the layer on. The same tables
    (the same operations on the same tensors); the Channels page's knock-out table.

    Raises:
        UnknownLayerError: ``layer`` is no attention layer of the model.
    """
    tail = _Tail(model, _attention_layer(model, layer))
    with InputsKept(tail.kept) as kept:
        before = model(x).float().softmax(1)
    inputs = tail.inputs(x, kept.inputs)
    afters = {}
    for name, replacement in replacements.items():
        with Knockout(model, {layer: replacement}):
            afters[name] = tail.run(inputs).float().softmax(1)
    return effect_tables(model_info(model).class_names, before, afters, top_k=top_k)


def _attention_layer(model: nn.Module, layer: str) -> AttentionLayer:
    found = {a.name: a for a in find_attention(model)}
    if layer not in found:
        raise UnknownLayerError(f"{layer!r} is not an attention layer of the model; it has {list(found)[:20]}")
    return found[layer]


class _Tail:
    """Where the knock-outs' passes start: right at the attention module (its input and
    the block's shortcut kept from the plain pass), else at its block's input, else the
    whole network (:mod:`sevis.jobs._staged`)."""

    def __init__(self, model: nn.Module, layer: AttentionLayer) -> None:
        self.model = model
        self.network = staged(model)
        self.end = self.network.after_attention(layer.path) if self.network is not None else None
        self.where = self.network.block_of(layer.path) if self.network is not None else None
        self.kept: dict[str, nn.Module] = {}
        if self.network is not None and self.end is not None:
            self.kept = {"attention": self.end.module, "block": self.network.module(self.end.stage, self.end.block)}
            self.resumed = "attention"
        elif self.network is not None and self.where is not None:
            self.kept = {"block": self.network.module(*self.where)}
            self.resumed = "block"
        else:
            self.resumed = "network"

    def inputs(self, x: torch.Tensor, kept: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """What a pass starts from, for one batch's images."""
        if self.resumed == "attention":
            assert self.end is not None
            return [kept["attention"], self.end.shortcut(kept["block"])]
        return [kept["block"]] if self.resumed == "block" else [x]

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The logits from those inputs (repeated for several knock-outs)."""
        if self.network is not None and self.end is not None:
            return self.network.run_after(self.end, inputs[0], inputs[1])
        if self.network is not None and self.where is not None:
            return self.network.run_from(*self.where, inputs[0])
        return self.model(inputs[0])


def _positions(channels: Sequence[int] | None, size: int, layer: str, index_name: str) -> list[int]:
    if channels is None:
        return list(range(size))
    chosen = [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < size]
    if bad:
        raise ValueError(f"{layer} has {size} {index_name}s (0 to {size - 1}); got {bad[:5]}")
    if not chosen:
        raise ValueError("channels is empty: give at least one, or None for all")
    return list(dict.fromkeys(chosen))


def _table(
    stats: ClassStats,
    layer: str,
    index_name: str,
    index_field: str | None,
    chosen: list[int],
    sums: Mapping[str, np.ndarray],
    before: np.ndarray,
    images: int,
    labelled: int,
) -> pd.DataFrame:
    nan = float("nan")
    per = labelled if labelled else nan
    selectivity = stats.selectivity(layer, index_field)
    p_before, top1_before = before[0] / per, before[1] / per
    frame = pd.DataFrame(
        {
            index_name: chosen,
            "selectivity": selectivity[chosen],
            "p_true_before": p_before,
            "p_true_after": sums["p_true"] / per,
            "top1_before": top1_before,
            "top1_after": sums["top1"] / per,
            "p_top1_change": sums["p_top1"] / images - before[2] / images,
            "top1_kept": sums["kept"] / images,
        }
    )
    frame.insert(4, "p_true_change", frame.p_true_after - frame.p_true_before)
    frame.insert(7, "top1_change", frame.top1_after - frame.top1_before)
    return frame


@dataclass
class ImportanceRun(Importance):
    """:class:`Importance` of a dataset, with what it was made from.

    Attributes:
        source: the folder, zip or saved run.
        failures: each image that could not be read.
        unknown_labels: labels that name no class of the model (their images count in
            ``top1_kept``, ``p_top1_change`` and the selectivity, not in the true class's
            columns).
        provenance: the model and its weights.
    """

    source: str = ""
    failures: list[Failure] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    provenance: Provenance | None = None

    def frame(self) -> pd.DataFrame:
        """The table as exported: provenance columns, the source, the layer, the images,
        then :attr:`table`."""
        out = self.table.copy()
        out.insert(0, "labelled", self.labelled)
        out.insert(0, "images", self.images)
        out.insert(0, "layer", self.layer)
        out.insert(0, "source", self.source)
        return with_provenance(out, self.provenance) if self.provenance is not None else out


def importance_data(
    model: nn.Module,
    data: str | Path,
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    value: float = 0.0,
    batch_size: int = 32,
    workers: int = 2,
    per_class: int | None = None,
    seed: int = 0,
    progress: bool = False,
    labels: Mapping[str, str] | None = None,
) -> ImportanceRun:
    """:func:`channel_importance` over a labelled folder or zip, or the images of a saved
    run (as :func:`sevis.jobs.ablate_data` finds them). Unreadable images are reported by
    name and the others used."""
    info = model_info(model)
    source, items = dataset_items(data, per_class, seed, labels)
    targets, missing = class_indices([i.label for i in items], info.class_names)
    target_of = {item.path: int(t) for item, t in zip(items, targets, strict=True)}
    failures: list[Failure] = []

    def batches() -> Iterator[tuple[torch.Tensor, list[int], list[str]]]:
        decoded = iter_batches(source, items, info.data_config, batch_size=batch_size, workers=workers)
        for batch in decoded:
            failures.extend(batch.failures)
            if batch.views is not None:
                yield (
                    normalise(info.data_config, batch.views),
                    [target_of[i.path] for i in batch.items],
                    [i.label or "unlabelled" for i in batch.items],
                )

    bar = None
    if progress:
        from tqdm.auto import tqdm  # NOTE tqdm.auto looks for a notebook: only when asked

        bar = tqdm(unit="knock-out", desc=f"{layer}: each channel knocked out")

    def advance(done: int, knockouts: int) -> None:
        if bar is not None:
            bar.total = len(items) * knockouts
            bar.update(done)

    try:
        result = channel_importance(model, batches(), layer, channels, value=value, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    return ImportanceRun(
        layer=result.layer,
        table=result.table,
        images=result.images,
        labelled=result.labelled,
        value=result.value,
        runs=result.runs,
        resumed=result.resumed,
        source=str(Location.of(data)),  # a URI without its keys
        failures=failures,
        unknown_labels=missing,
        provenance=info.provenance,
    )
