"""``sevis extract --engine ray``: the same extraction on a Ray cluster.

Ray Data reads and decodes the images in tasks, and a pool of actors, each holding its
own model (one per worker, a GPU each when ``device="cuda"``), runs the hooked forward
passes. The driver writes the rows through the local engine's part files, so the
output has the same schema, metadata and order (``preserve_order``), and ``--resume``
works the same. Ray is an optional extra: ``pip install sevis[ray]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..data.files import Item, iter_batches
from ..errors import SevisError
from ..hooks.forward import forward_batch
from ..models.registry import load_model, model_info
from ..runs.distributions import Counts, add_counts, decode_distributions, encode_distributions
from ..runs.schema import batch_table
from .extraction import prepare_run
from .settings import RunSettings

__all__ = ["extract_ray"]


def _decode(batch: dict[str, np.ndarray], data: str, items: list[Item], data_config: dict) -> dict[str, np.ndarray]:
    """Ray task: indices in, views (N, 3, H, W) uint8 and error texts out (the same
    decoding as the local engine's, :func:`sevis.data.files.iter_batches`, in this task)."""
    chosen = [items[int(index)] for index in batch["index"]]
    h, w = data_config["input_size"][-2:]
    views = np.zeros((len(chosen), 3, h, w), np.uint8)
    errors = np.full(len(chosen), "", dtype=object)
    row = {item.path: k for k, item in enumerate(chosen)}
    for decoded in iter_batches(data, chosen, data_config, batch_size=max(len(chosen), 1), workers=0):
        if decoded.views is not None:
            views[[row[i.path] for i in decoded.items]] = decoded.views.numpy()
        for failure in decoded.failures:
            errors[row[failure.name]] = failure.reason
    return {"index": batch["index"], "view": views, "error": errors}


class _Extractor:
    """Ray actor: one model, loaded once, turning decoded batches into run rows."""

    def __init__(
        self,
        name: str,
        weights: str,
        device: str,
        items: list[Item],
        schema: pa.Schema,
        layers: list[str],
        source: str = "folder",
        distributions: bool = False,
    ) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.model = load_model(name, weights, device=device)
        self.items, self.schema, self.layers, self.source = items, schema, layers, source
        self.distributions = distributions

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        good = np.flatnonzero(batch["error"] == "")
        bad = np.flatnonzero(batch["error"] != "")
        tables = []
        if len(good):
            items = [self.items[int(batch["index"][k])] for k in good]
            result = forward_batch(self.model, torch.from_numpy(batch["view"][good]), layers=self.layers)
            table = batch_table(self.schema, [i.path for i in items], [i.label for i in items], result, self.source)
            table = table.append_column("error", pa.nulls(len(good), pa.string()))
            # NOTE the batch's counts ride on its first row: Ray may regroup rows into other
            # blocks, and a row's value goes wherever the row goes
            counts = [encode_distributions(result.distribution_counts())] if self.distributions else []
            column = pa.array(counts + [None] * (len(good) - len(counts)), pa.binary())
            tables.append(table.append_column("distributions", column))
        if len(bad):
            nulls = {f.name: pa.nulls(len(bad), f.type) for f in self.schema}
            nulls["path"] = pa.array([self.items[int(batch["index"][k])].path for k in bad], pa.string())
            nulls["error"] = pa.array([str(batch["error"][k]) for k in bad], pa.string())
            nulls["distributions"] = pa.nulls(len(bad), pa.binary())
            tables.append(pa.table(nulls))
        order = np.concatenate([good, bad])
        table = pa.concat_tables(tables)
        # Keep the batch's own order, so the driver sees images in dataset order.
        return table.take(pa.array(np.argsort(order, kind="stable")))


def extract_ray(
    name: str,
    weights: str,
    data: str | Path,
    out: str | Path,
    settings: RunSettings | None = None,
    *,
    address: str | None = None,
    device: str = "cpu",
    ray_init: dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Extract ``data`` into ``out`` on Ray, with the settings :func:`sevis.jobs.extract`
    takes (``settings.workers`` is the number of model-holding actors, one model each).

    Args:
        address: a Ray cluster (``ray://host:10001``); default: start Ray locally.
        device: ``"cuda"`` gives each actor a GPU.
        ray_init: more keyword arguments for ``ray.init`` (e.g. ``num_cpus``).
        **options: fields of :class:`~sevis.jobs.settings.RunSettings` to change.
    """
    settings = RunSettings.of(settings, **options)
    try:
        import ray
    except ImportError:
        raise SevisError("--engine ray needs Ray: pip install 'sevis[ray]'") from None

    data, out = Path(data).resolve(), Path(out)
    probe = load_model(name, weights)  # on the driver, on the CPU: settings and layer sizes only
    info = model_info(probe)
    writer, todo = prepare_run(probe, data, out, settings)
    del probe
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(ray_init or {}))
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False

    schema = writer.schema
    # NOTE a checkpoint path must exist on every node of a cluster (a shared disk).
    source = str(Path(weights).resolve()) if Path(weights).is_file() else weights
    dataset = (
        ray.data.from_items([{"index": i} for i in range(len(todo))])
        .map_batches(
            _decode,  # type: ignore[arg-type]  # Ray's stubs know no keyword arguments
            fn_kwargs={"data": str(data), "items": todo, "data_config": info.data_config},
            batch_size=settings.batch_size,
            batch_format="numpy",
        )
        .map_batches(
            _Extractor,
            fn_constructor_kwargs={
                "name": name,
                "weights": source,
                "device": device,
                "items": todo,
                "schema": schema,
                "layers": list(writer.metadata.layer_kinds),
                "source": writer.metadata.labels,
                "distributions": writer.metadata.distributions,
            },
            concurrency=settings.workers,
            batch_size=settings.batch_size,
            batch_format="numpy",
            num_gpus=1 if device.startswith("cuda") else 0,
        )
    )
    with writer:
        # NOTE batch_format="pyarrow" gives tables; Ray's annotation is the union of every format.
        blocks: Iterable[pa.Table] = dataset.iter_batches(batch_format="pyarrow", batch_size=None) if todo else ()
        for block in blocks:
            failed = block.filter(pc.is_valid(block.column("error")))
            for path, error in zip(failed.column("path").to_pylist(), failed.column("error").to_pylist(), strict=True):
                writer.fail(path, error)
            rows = block.filter(pc.is_null(block.column("error")))
            counts: Counts | None = None
            if writer.metadata.distributions:
                counts = {}
                for raw in rows.column("distributions").drop_null().to_pylist():
                    add_counts(counts, decode_distributions(raw, writer.metadata))
            writer.add(rows.select(schema.names).cast(schema), counts)
    return out
