"""Exports of statistics and figures: tables, CSV, Parquet, PNG, standalone HTML (as bytes)."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._version import __version__
from .provenance import Provenance

if TYPE_CHECKING:
    from .analysis.images import Analysis, ImageResult

__all__ = [
    "REBUILD",
    "analysis_bundle",
    "bundle",
    "figure_html",
    "figure_png",
    "frame_csv",
    "frame_parquet",
    "grid_frame",
    "png_available",
    "top_frame",
    "weights_tag",
    "with_provenance",
]


def with_provenance(frame: pd.DataFrame, provenance: Provenance) -> pd.DataFrame:
    """The frame with leading ``model``, ``weights``, ``weights_sha256`` and ``untrained``
    columns, so an exported table always says which weights produced it."""
    out = frame.copy()
    for i, (column, value) in enumerate(provenance.columns().items()):
        out.insert(i, column, value)
    return out


def weights_tag(provenance: Provenance) -> str:
    """The weights, short, for file names: ``untrained-seed0``, ``sha256-1a2b3c4d`` (a
    file's first 8 hex digits), ``untrained`` (made before sevis seeded them) or
    ``pretrained`` (the model's one hub source, read by timm, not as a file of sevis's)."""
    if provenance.untrained:
        seed = provenance.untrained_seed
        return "untrained" if seed is None else f"untrained-seed{seed}"
    return f"sha256-{provenance.weights_sha256[:8]}" if provenance.weights_sha256 else "pretrained"


def top_frame(image: ImageResult) -> pd.DataFrame:
    """One image's predictions: image, rank, class, probability."""
    return pd.DataFrame(
        {
            "image": image.name,
            "rank": range(1, len(image.top_classes) + 1),
            "class": image.top_classes,
            "probability": image.top_probs,
        }
    )


def grid_frame(values: np.ndarray, column: str) -> pd.DataFrame:
    """A 2-D map as a long table: y, x, value."""
    y, x = np.indices(values.shape)
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(), column: values.ravel()})


def frame_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def frame_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def figure_html(fig: go.Figure) -> bytes:
    """A standalone page: plotly.js inlined, opens without a network."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()


def png_available() -> bool:
    """Whether :func:`figure_png` can work here: kaleido needs a Chrome or Chromium."""
    if os.environ.get("BROWSER_PATH"):
        return True
    return any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    """PNG through kaleido, which drives a local Chrome/Chromium.

    Raises:
        RuntimeError: no Chromium for kaleido; the message says what to install.
    """
    try:
        return fig.to_image(format="png", scale=scale, width=fig.layout.width or 1000, height=fig.layout.height or 500)
    except Exception as err:  # kaleido raises its own types when Chrome is missing
        raise RuntimeError(
            f"PNG export needs kaleido and a Chrome or Chromium browser ({err}); "
            "the chart's camera icon saves a PNG from the browser instead"
        ) from err


REBUILD = '''\
"""Rebuild the numbers of this export with sevis (run it in the unzipped folder):

    pip install sevis   # the version in manifest.json
    python rebuild.py

It loads the model and weights the manifest names, analyses the images in images/ with the
labels the manifest gives them, and compares the per-class table with the exported one.
"""

import json
import pathlib

import numpy as np
import pandas as pd

import sevis

here = pathlib.Path(__file__).resolve().parent
manifest = json.loads((here / "manifest.json").read_text())
model = sevis.load_model(manifest["model"], manifest["weights_to_load"])
images = manifest["images"]
files = [(image["name"], (here / "images" / image["file"]).read_bytes()) for image in images]
result = sevis.analyse(model, files, labels=[image["label"] for image in images])
kind = manifest["rebuild"]["kind"]
rebuilt = result.stats[kind].to_frame()
exported = pd.read_parquet(here / "tables" / manifest["rebuild"]["table"])
columns = [c for c in rebuilt.columns if c.endswith(("_mean", "_std", "mean", "std"))]
for column in columns:
    np.testing.assert_allclose(rebuilt[column].to_numpy(float), exported[column].to_numpy(float), rtol=1e-4, atol=1e-6)
print(f"rebuilt {len(rebuilt):,} rows of {manifest['rebuild']['table']}: the same numbers")
'''


def bundle(
    figures: Sequence[tuple[str, go.Figure, pd.DataFrame | None]],
    manifest: Mapping[str, object],
    *,
    tables: Sequence[tuple[str, pd.DataFrame]] = (),
    images: Sequence[tuple[str, bytes]] = (),
    rebuild: str | None = None,
    png: bool | None = None,
) -> bytes:
    """One zip of a whole view: each figure as ``figures/NAME.html`` (and ``.png`` where
    kaleido has a Chromium; ``png=False`` leaves them out), each table as
    ``tables/NAME.parquet`` and ``.csv``, ``manifest.json`` (``manifest`` plus the files
    written), the analysed ``images/`` and, given ``rebuild``, a ``rebuild.py`` that
    rebuilds the numbers with the library (:data:`REBUILD`).

    Names are made unique (a second ``x`` becomes ``x_2``); a figure whose PNG fails is
    left as HTML and said so in the manifest."""
    import json
    import zipfile

    png = png_available() if png is None else png
    buffer = io.BytesIO()
    written: list[str] = []
    notes: list[str] = []
    seen: dict[str, int] = {}

    def unique(name: str) -> str:
        seen[name] = seen.get(name, 0) + 1
        return name if seen[name] == 1 else f"{name}_{seen[name]}"

    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def put(path: str, data: bytes) -> None:
            archive.writestr(path, data)
            written.append(path)

        for name, fig, frame in figures:
            name = unique(name)
            put(f"figures/{name}.html", figure_html(fig))
            if png:
                try:
                    put(f"figures/{name}.png", figure_png(fig))
                except RuntimeError as err:
                    notes.append(f"{name}.png: {str(err)[:200]}")
            if frame is not None:
                put(f"tables/{name}.parquet", frame_parquet(frame))
                put(f"tables/{name}.csv", frame_csv(frame))
        for name, frame in tables:
            name = unique(name)
            put(f"tables/{name}.parquet", frame_parquet(frame))
            put(f"tables/{name}.csv", frame_csv(frame))
        for file_name, data in images:
            put(f"images/{file_name}", data)
        if rebuild is not None:
            put("rebuild.py", rebuild.encode())
        document = {**manifest, "files": written, "notes": notes}
        archive.writestr("manifest.json", json.dumps(document, indent=2, default=str))
    return buffer.getvalue()


def analysis_bundle(
    result: Analysis,
    files: Sequence[tuple[str, bytes]],
    labels: Sequence[str | None] | None,
    figures: Sequence[tuple[str, go.Figure, pd.DataFrame | None]],
    *,
    view: str,
    weights_to_load: str,
    png: bool | None = None,
    compared: tuple[str, Analysis] | None = None,
) -> bytes:
    """:func:`bundle` of a view of an :class:`~sevis.Analysis`: its figures, each kind's
    per-class statistics (``tables/statistics_KIND``), the images analysed with their labels,
    a manifest (model, weights and SHA-256 or the untrained seed, sevis version, view, images,
    classes) and ``rebuild.py``, which analyses the images again and checks the first kind's
    statistics against the exported table.

    Args:
        files: what was analysed, as (name, bytes).
        labels: their labels (None: grouped by predicted class).
        weights_to_load: what ``rebuild.py`` passes to :func:`sevis.load_model` as weights
            (``"pretrained"``, ``"untrained"``, or the checkpoint's file name, to be put
            beside it).
        compared: a second checkpoint's name and its analysis of the same images: its
            statistics go in as ``tables/statistics_KIND_NAME``, each row naming its weights,
            and the manifest's ``compared_with`` says which weights they are.
    """
    import datetime

    provenance = result.provenance
    kinds = [k for k, stats in result.stats.items() if stats.layers]
    tables = [(f"statistics_{k}", with_provenance(result.stats[k].to_frame(), provenance)) for k in kinds]
    if compared is not None:
        other_name, other = compared
        tables += [
            (f"statistics_{k}_{other_name}", with_provenance(other.stats[k].to_frame(), other.provenance))
            for k in kinds
            if k in other.stats
        ]
    used: dict[str, int] = {}
    entries, images = [], []
    for i, (name, data) in enumerate(files):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-80:] or "image"
        used[safe] = used.get(safe, 0) + 1
        file_name = safe if used[safe] == 1 else f"{used[safe]}_{safe}"
        entries.append({"name": name, "file": file_name, "label": labels[i] if labels is not None else None})
        images.append((file_name, data))
    manifest = {
        "sevis_version": __version__,
        "made": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "view": view,
        **provenance.columns(),
        "weights_to_load": weights_to_load,
        "images": entries,
        "failures": [{"name": f.name, "reason": f.reason} for f in result.failures],
        "classes": {k: result.stats[k].classes for k in kinds},
        "layers": {k: result.stats[k].layers for k in kinds},
        "rebuild": {"kind": kinds[0], "table": f"statistics_{kinds[0]}.parquet"} if kinds else None,
    }
    if compared is not None:
        manifest["compared_with"] = {"name": compared[0], **compared[1].provenance.columns()}
    return bundle(figures, manifest, tables=tables, images=images, rebuild=REBUILD if kinds else None, png=png)
