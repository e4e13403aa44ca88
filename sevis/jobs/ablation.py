"""``ablate``: the SENet paper's experiment (its Table 13), top-1 and top-5 accuracy with
each stage's attention removed, over batches, a folder, a zip or a saved run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attention.registry import AttentionLayer, find_attention
from ..data.failure import Failure
from ..data.files import Item, discover, iter_batches
from ..data.images import normalise
from ..errors import DataError, UnknownLayerError
from ..export import with_provenance
from ..hooks.knockouts import Knockout, MeanOf, Remove, Replacement
from ..models.classes import class_indices
from ..models.registry import model_info
from ..provenance import Provenance
from ..runs import Location
from ..runs.schema import is_run, open_run_file, read_metadata
from ._staged import RunCounter, Staged, stage_inputs, staged

__all__ = [
    "Ablation",
    "AblationRun",
    "ablate",
    "ablate_data",
    "ablation_conditions",
    "dataset_items",
]


def ablation_conditions(model: nn.Module, kind: str | None = None) -> dict[str, list[str]]:
    """The paper's conditions: ``"none"`` (nothing removed), each ``"stage S"`` alone, and
    ``"all"`` (every attention layer of ``kind``, default every kind)."""
    found = [x for x in find_attention(model) if kind in (None, x.kind)]
    stages = sorted({x.stage for x in found if x.stage is not None})
    conditions: dict[str, list[str]] = {"none": []}
    for stage in stages:
        conditions[f"stage {stage}"] = [x.name for x in found if x.stage == stage]
    conditions["all"] = [x.name for x in found]
    return conditions


@dataclass
class Ablation:
    """Accuracy with attention removed, one row per condition (see :func:`ablate`).

    Attributes:
        table: ``condition``, ``layers`` (how many removed), ``images``, ``top1``, ``top5``
            (fractions), ``top1_change``, ``top5_change`` (against ``"none"``, in points
            of a fraction), ``top1_kept`` (images whose top-1 stays the baseline's).
        stage_runs: per stage module, how many images it ran (the work done, for the
            benchmark: a plain pass runs every stage once per image).
    """

    table: pd.DataFrame
    stage_runs: dict[str, int] = field(default_factory=dict)


@torch.inference_mode()
def ablate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, Sequence[int]]],
    conditions: Mapping[str, Sequence[str]] | None = None,
    *,
    replace: Replacement | None = None,
    top_k: int = 5,
) -> Ablation:
    """Top-1 and top-k accuracy of ``model`` under each condition.

    Args:
        batches: preprocessed images with one true class index per image (-1: no known
            class; such images count only in ``top1_kept``).
        conditions: name -> layers to knock out (default :func:`ablation_conditions`).
        replace: what replaces the layers' values (default :class:`Remove`).

    Each batch runs once whole; each condition then runs only from the first stage it
    changes (on timm ResNets and SENets; other networks run every condition whole).
    """
    if isinstance(replace, MeanOf) and replace.per_class:
        raise ValueError("ablate knows class indices, not the statistics' labels: use MeanOf(stats) or knockout_effect")
    conditions = dict(conditions if conditions is not None else ablation_conditions(model))
    conditions.setdefault("none", [])
    layers = {x.name: x for x in find_attention(model)}
    unknown = sorted({n for names in conditions.values() for n in names} - set(layers))
    if unknown:
        raise UnknownLayerError(f"layers {unknown[:8]} not in the model")
    found = staged(model)
    stage_names = found.names if found else []
    device = next(model.parameters()).device
    counter = RunCounter({n: getattr(model, n) for n in stage_names})  # none when run whole
    hits = {name: np.zeros(3, dtype=np.int64) for name in conditions}  # top-1, top-k, top-1 kept
    labelled = total = 0
    with counter:
        for x, targets in batches:
            x = x.to(device)
            target = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)
            known = target >= 0
            base, inputs = stage_inputs(model, stage_names, x)
            base_top1 = base.argmax(1)
            for name, removed in conditions.items():
                if not removed:
                    logits = base
                else:
                    with Knockout(model, {n: replace or Remove() for n in removed}):
                        logits = _run_from(model, found, inputs, [layers[n] for n in removed], x)
                top = logits.topk(min(top_k, logits.shape[1]), 1).indices
                hits[name] += [
                    int(((top[:, 0] == target) & known).sum()),
                    int(((top == target[:, None]).any(1) & known).sum()),
                    int((top[:, 0] == base_top1).sum()),
                ]
            labelled += int(known.sum())
            total += len(x)
    if total == 0:
        raise DataError("no images to ablate")
    rows = []
    for name, (top1, topk, kept) in hits.items():
        rows.append(
            {
                "condition": name,
                "layers": len(conditions[name]),
                "images": labelled,
                "top1": top1 / labelled if labelled else np.nan,
                f"top{top_k}": topk / labelled if labelled else np.nan,
                "top1_kept": kept / total,
            }
        )
    table = pd.DataFrame(rows)
    base_row = table[table.condition == "none"].iloc[0]
    table["top1_change"] = table.top1 - base_row.top1
    table[f"top{top_k}_change"] = table[f"top{top_k}"] - base_row[f"top{top_k}"]
    return Ablation(table, dict(counter.runs))


def _run_from(
    model: nn.Module,
    network: Staged | None,
    inputs: Mapping[str, torch.Tensor],
    removed: Sequence[AttentionLayer],
    x: torch.Tensor,
) -> torch.Tensor:
    """Logits with the knock-out active: from the input of the first stage it changes,
    kept by the baseline pass, where the network allows it; else the whole pass."""
    if network is None:
        return model(x)
    names = network.names
    tops = {layer.path.split(".")[0] for layer in removed}
    if not tops <= set(names):
        return model(x)
    start = names[min(names.index(t) for t in tops)]
    return network.run_from(start, 0, inputs[start])


def ablate_data(
    model: nn.Module,
    data: str | Path,
    conditions: Mapping[str, Sequence[str]] | None = None,
    *,
    replace: Replacement | None = None,
    batch_size: int = 32,
    workers: int = 2,
    per_class: int | None = None,
    seed: int = 0,
    progress: bool = False,
    labels: Mapping[str, str] | None = None,
) -> AblationRun:
    """:func:`ablate` over a labelled folder or zip (one folder per class, named as in
    :func:`class_indices`), or over the images of a saved run (read back from its source,
    labelled by the run's labels). ``labels``: a label file's labels by file name (see
    :func:`sevis.data.labels.read_labels`), for a flat folder such as ImageNet's.

    Unreadable images are reported by name and the others ablated; labels that are no
    class of the model are listed, and their images count only in ``top1_kept``.
    """
    info = model_info(model)
    source, items = dataset_items(data, per_class, seed, labels)
    targets, missing = class_indices([i.label for i in items], info.class_names)
    target_of = {item.path: int(target) for item, target in zip(items, targets, strict=True)}
    failures: list[Failure] = []

    def batches() -> Iterator[tuple[torch.Tensor, list[int]]]:
        decoded = iter_batches(
            source, items, info.data_config, batch_size=batch_size, workers=workers, progress=progress
        )
        for batch in decoded:
            failures.extend(batch.failures)
            if batch.views is not None:
                yield normalise(info.data_config, batch.views), [target_of[i.path] for i in batch.items]

    result = ablate(model, batches(), conditions, replace=replace)
    shown = str(Location.of(data))  # a URI without its keys
    return AblationRun(result.table, result.stage_runs, shown, failures, missing, info.provenance)


@dataclass
class AblationRun(Ablation):
    """:class:`Ablation` of a dataset, with what it was made from.

    Attributes:
        source: the folder, zip or saved run.
        failures: each image that could not be read (``name`` is its path in the source).
        unknown_labels: labels that name no class of the model.
        provenance: the model and its weights.
    """

    source: str = ""
    failures: list[Failure] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    provenance: Provenance | None = None

    def frame(self) -> pd.DataFrame:
        """The table as exported: provenance columns, the source, then :attr:`table`."""
        out = self.table.copy()
        out.insert(0, "source", self.source)
        return with_provenance(out, self.provenance) if self.provenance is not None else out


def dataset_items(
    data: str | Path, per_class: int | None, seed: int, labels: Mapping[str, str] | None = None
) -> tuple[Path, list[Item]]:
    """The image source and its items: a folder or zip as ``sevis extract`` finds it, or a
    saved run's rows (paths inside its source, and labels)."""
    if not is_run(data):
        return Path(data), discover(Path(data), per_class, seed, labels)
    metadata = read_metadata(data)
    source = Path(metadata.source)
    if not source.exists():
        raise DataError(
            f"{Location.of(data).name[:100]}: its images were read from {metadata.source[:200]}, which is not here"
        )
    table = open_run_file(data).read(columns=["path", "label"])
    labelled = metadata.labels in ("folder", "file")
    items = [
        Item(path, label if labelled else None)
        for path, label in zip(table.column("path").to_pylist(), table.column("label").to_pylist(), strict=True)
    ]
    return source, items
