"""``sevis extract --engine ray``: the same extraction on a Ray cluster.

Ray Data reads and decodes the images in tasks, and a pool of actors, each holding its
own model (one per worker, a GPU each when ``device="cuda"``), runs the hooked forward
passes and writes each batch's rows as a file of the run's parts folder itself
(:func:`sevis.runs.writer.write_incoming`). The driver receives only each image's path,
its decoding error if any and the name of the file holding its row: it records the
failures and adopts the files as the run's parts in the dataset's order
(``preserve_order``), then merges them as the local engine does. So the output has the
same schema, metadata and order as the local engine's, ``--resume`` works the same, and
no row's vectors pass through the driver. On a cluster the output's folder must be one
every node shares. Ray is an optional extra: ``pip install sevis[ray]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..data.files import Item, iter_batches
from ..errors import RunError, SevisError
from ..hooks.forward import forward_batch
from ..models.registry import load_model, model_info
from ..runs import Location, is_uri
from ..runs.schema import batch_table
from ..runs.writer import write_incoming
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
    """Ray actor: one model, loaded once, turning decoded batches into part files of the
    run (written into ``parts``, a folder its node shares with the driver's, or a URI)."""

    def __init__(
        self,
        name: str,
        weights: str,
        device: str,
        items: list[Item],
        schema: pa.Schema,
        layers: list[str],
        parts: Location,
        source: str = "folder",
        distributions: bool = False,
    ) -> None:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        self.model = load_model(name, weights, device=device)
        self.items, self.schema, self.layers, self.source = items, schema, layers, source
        self.parts, self.distributions = parts, distributions

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Index, path, decoding error and the part file holding the row, in the batch's
        order; a write that failed (a full disk) is said in ``refused`` instead."""
        indices = batch["index"]
        paths = [self.items[int(i)].path for i in indices]
        ok = batch["error"] == ""
        good = np.flatnonzero(ok)
        part, refused = None, None
        if len(good):
            items = [self.items[int(indices[k])] for k in good]
            result = forward_batch(self.model, torch.from_numpy(batch["view"][good]), layers=self.layers)
            table = batch_table(self.schema, [i.path for i in items], [i.label for i in items], result, self.source)
            counts = result.distribution_counts() if self.distributions else None
            try:
                part = write_incoming(self.parts, table.cast(self.schema), counts)
            except RunError as err:  # said by the driver, as the local engine says it
                refused = str(err)
        return pa.table(
            {
                "index": pa.array(indices, pa.int64()),
                "path": pa.array(paths, pa.string()),
                "error": pa.array(
                    [None if k else str(e) for k, e in zip(ok, batch["error"], strict=True)], pa.string()
                ),
                "part": pa.array([part if k else None for k in ok], pa.string()),
                "refused": pa.array([refused] * len(indices), pa.string()),
            }
        )


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
) -> Path | str:
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

    data = Path(data).resolve()
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
    # every node writes its parts there itself: a folder they share (named absolutely) or a URI
    parts = writer.parts if writer.parts.local is None else Location.of(writer.parts.local.resolve())
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
                "parts": parts,
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
        adopted: set[str] = set()
        for block in blocks:
            refused = block.column("refused").drop_null()
            if len(refused):
                raise RunError(str(refused[0]))
            for path, error, part in zip(
                *(block.column(c).to_pylist() for c in ("path", "error", "part")), strict=True
            ):
                if error is not None:
                    writer.fail(path, error)
                elif part not in adopted:  # a batch's rows may come in several blocks: its file is adopted once
                    adopted.add(part)
                    writer.adopt(part)
    return out if is_uri(out) else Path(out)
