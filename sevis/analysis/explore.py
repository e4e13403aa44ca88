"""Drill-downs: one channel across a set of images, and the images mapped by their excitations.

    view = sevis.channel_view(run, "SE_5_2", 17)      # a saved run, or an Analysis
    view.by_class()                                   # each image's value and class
    view.extremes(8)                                  # the images exciting it most and least
    m = sevis.excitation_map(run, "SE_4_6")           # PCA of the images' excitation vectors
    m.points                                          # a sample to draw, coloured by class

Both read a saved run a record batch at a time (a 50,000-image run is gigabytes, a layer's
column a few hundred megabytes): the map's PCA is fitted on every image, and only the
points drawn are a seeded uniform sample. Values are each kind's first summary field (SE
the excitation per channel, SGE each group's mask mean).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .._files import FileRefused, opened_within
from ..errors import DataError, ImageError, RunError, UnknownLayerError
from ..limits import Limits
from ..runs.reader import Run, read_run
from ..runs.sample import sample_rows
from ..stats.classes import ClassStats
from .images import Analysis

__all__ = ["ChannelView", "ExcitationMap", "channel_view", "excitation_map", "run_image"]

Source = Analysis | Run | str | Path


def _resolve(source: Source, layer: str) -> tuple[Analysis | Run, str, ClassStats]:
    """The source read (a run's statistics come from its cache), the layer's kind, and the
    layer's class statistics."""
    if isinstance(source, str | Path):
        source = read_run(source)
    for kind, stats in source.stats.items():
        if layer in stats.layers:
            return source, kind, stats
    known = [name for stats in source.stats.values() for name in stats.layers]
    raise UnknownLayerError(f"no layer {layer!r}; the images have {known}")


@dataclass
class ChannelView:
    """One channel (SE) or group (SGE) of one layer across a set of images.

    Attributes:
        layer, channel: which one; ``index_name`` says whether it is a channel or a group.
        values: each image's value, (N,) float32.
        labels, names: each image's class and its name (a saved run: its path in the source).
        selectivity: the class selectivity index of this position (Morcos et al.), None
            with fewer than two classes.
        class_means: class -> the mean over its images.
    """

    layer: str
    channel: int
    index_name: str
    values: np.ndarray = field(repr=False)
    labels: list[str] = field(repr=False)
    names: list[str] = field(repr=False)
    selectivity: float | None
    class_means: dict[str, float] = field(repr=False)

    def by_class(self) -> pd.DataFrame:
        """image, label, layer, channel, value: one row per image."""
        return pd.DataFrame(
            {
                "image": self.names,
                "label": self.labels,
                "layer": self.layer,
                self.index_name: self.channel,
                "value": self.values,
            }
        )

    def extremes(self, n: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``n`` images with the highest values (highest first) and the ``n`` lowest
        (lowest first), as :meth:`by_class` rows."""
        order = np.argsort(self.values, kind="stable")
        frame = self.by_class()
        return frame.iloc[order[::-1][:n]].reset_index(drop=True), frame.iloc[order[:n]].reset_index(drop=True)


def channel_view(source: Source, layer: str, channel: int) -> ChannelView:
    """``layer``'s ``channel`` (SE) or group (SGE) across the images of an :class:`Analysis`
    or a saved run (a :class:`Run` or its path).

    Raises:
        UnknownLayerError: no such layer; ValueError: no such channel.
    """
    source, _, stats = _resolve(source, layer)
    size = len(stats.mean(layer))
    if not 0 <= int(channel) < size:
        raise ValueError(f"{layer} has {size} {stats.index_name}s (0 to {size - 1}); got {channel}")
    values, labels, names = [], [], []
    for rows, batch_labels, batch_names in source.iter_layer(layer):
        values.append(rows[:, int(channel)].astype(np.float32))
        labels += batch_labels
        names += batch_names
    selectivity = float(stats.selectivity(layer)[channel]) if len(stats.classes) >= 2 else None
    return ChannelView(
        layer=layer,
        channel=int(channel),
        index_name=stats.index_name,
        values=np.concatenate(values) if values else np.zeros(0, np.float32),
        labels=labels,
        names=names,
        selectivity=selectivity,
        class_means={c: float(stats.mean(layer, c)[channel]) for c in stats.classes},
    )


@dataclass
class ExcitationMap:
    """The images of a set placed by their excitation vectors in one layer.

    Attributes:
        layer, method: ``"pca"`` or ``"umap"``.
        points: ``x``, ``y``, ``label``, ``image`` of the images drawn (all, or a seeded
            uniform sample of ``max_points``).
        centroids: ``label``, ``x``, ``y``, ``images``: each class's mean position over all
            its images (PCA only: the projection of the class mean).
        explained: the share of the variance each of the two axes holds (PCA).
        images: images the map was computed on.
        separation: the share of the 2-D map's variance between class centroids, from 0
            (classes overlap) to 1 (each class a point); over all images (PCA), or the
            points drawn (UMAP).
    """

    layer: str
    method: str
    points: pd.DataFrame
    centroids: pd.DataFrame
    explained: tuple[float, float] | None
    images: int
    separation: float


def _umap(rows: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise ImportError("method='umap' needs the umap-learn package (pip install umap-learn)") from None
    reducer = umap.UMAP(n_components=2, random_state=seed)
    return np.asarray(reducer.fit_transform(rows), dtype=np.float32)


def _separation(xy: np.ndarray, labels: list[str]) -> float:
    total = float(((xy - xy.mean(0)) ** 2).sum())
    if total == 0 or len(set(labels)) < 2:
        return 0.0
    frame = pd.DataFrame(xy, columns=["x", "y"]).assign(label=labels)
    means = frame.groupby("label")[["x", "y"]].transform("mean").to_numpy()
    return float(((means - xy.mean(0)) ** 2).sum()) / total


def excitation_map(
    source: Source, layer: str, *, method: str = "pca", max_points: int = 5000, seed: int = 0
) -> ExcitationMap:
    """A 2-D map of the images by their ``layer`` vectors (see :class:`ExcitationMap`).

    PCA is fitted on every image (a streamed covariance, one pass over a run to fit it and
    one to place the drawn sample). UMAP, where the ``umap-learn`` package is installed,
    is fitted on the drawn sample only.
    """
    if method not in ("pca", "umap"):
        raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")
    source, _, stats = _resolve(source, layer)
    total = stats.count()
    pick = sample_rows(total, max_points, seed)
    rows_drawn, labels_drawn, names_drawn = [], [], []
    n, dim = 0, len(stats.mean(layer))
    mean = stats.mean(layer).astype(np.float64)
    # NOTE the covariance accumulated from rows centred on the exact mean (the statistics'
    # float64 one), in float64: X'X - n m m' in float32 cancels for near-saturated gates
    # (mean 0.985, spread 1e-3), and its rounding noise became hundreds of spurious
    # positive eigenvalues that shrank every axis's share
    # NOTE fewer images than half the channels, every one drawn: the axes are the SVD's of
    # those rows (work in n^2 x dim) instead of the eigenvectors of the dim x dim covariance
    # (dim^3: 0.6 s for 2,048 channels, most of the Channels page's server time for 4 images)
    few = total < dim // 2 and total <= max_points
    scatter = None if few else np.zeros((dim, dim))
    start = 0
    for rows, labels, names in source.iter_layer(layer):
        rows = rows.astype(np.float32, copy=False)
        if scatter is not None:
            centred = rows.astype(np.float64) - mean
            scatter += centred.T @ centred
        n += len(rows)
        inside = pick[(pick >= start) & (pick < start + len(rows))] - start
        rows_drawn.append(rows[inside])
        labels_drawn += [labels[i] for i in inside]
        names_drawn += [names[i] for i in inside]
        start += len(rows)
    if n < 2:
        raise DataError(f"a map needs at least two images; there are {n}")
    drawn = np.concatenate(rows_drawn)
    if method == "umap":
        xy = _umap(drawn, seed)
        centroids = pd.DataFrame({"label": labels_drawn, "x": xy[:, 0], "y": xy[:, 1]}).groupby("label", sort=False)
        cent = centroids.agg(x=("x", "mean"), y=("y", "mean"), images=("x", "size")).reset_index()
        return ExcitationMap(
            layer, method, _points(xy, labels_drawn, names_drawn), cent, None, n, _separation(xy, labels_drawn)
        )
    if scatter is None:
        centred = drawn.astype(np.float64) - mean
        _, singular, right = np.linalg.svd(centred, full_matrices=False)  # n >= 2 rows: two axes
        axes = right[:2].T.copy()
        top = singular[:2] ** 2 / (n - 1)
        variance = float((centred**2).sum()) / (n - 1)
    else:
        cov = scatter / (n - 1)
        eigenvalues, vectors = np.linalg.eigh(cov)
        axes = vectors[:, ::-1][:, :2]
        top = np.clip(eigenvalues[::-1][:2], 0, None)
        variance = float(np.trace(cov))
    axes *= np.where(axes[np.abs(axes).argmax(0), [0, 1]] < 0, -1, 1)  # a sign fixed by the data, not by LAPACK
    xy = ((drawn - mean) @ axes).astype(np.float32)
    # the share of the total variance, the covariance's trace (as scikit-learn's PCA)
    explained = tuple(float(v) for v in top / max(variance, 1e-30))
    classes = stats.classes
    means = np.stack([stats.mean(layer, c) for c in classes]).astype(np.float64)
    counts = np.array([stats.count(c) for c in classes])
    centre = (means - mean) @ axes
    cent = pd.DataFrame({"label": classes, "x": centre[:, 0], "y": centre[:, 1], "images": counts})
    within_total = float(top.sum())
    between = float((counts[:, None] * centre**2).sum() / (n - 1))
    separation = between / within_total if within_total > 0 else 0.0
    return ExcitationMap(
        layer,
        method,
        _points(xy, labels_drawn, names_drawn),
        cent,
        (explained[0], explained[1]),
        n,
        float(min(separation, 1.0)),
    )


def _points(xy: np.ndarray, labels: list[str], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "label": labels, "image": names})


def run_image(run: Run, path: str, limits: Limits | None = None, *, within: Sequence[str] | None = None) -> bytes:
    """The bytes of one image of a saved run, read back from its source folder or zip.

    Args:
        within: folders the run's source must lie in (a run names its own source, so a
            server reading runs it did not write confines them); None: anywhere. The
            file read is checked as opened: a regular file inside the source.

    Raises:
        RunError: the source is not on this machine or outside ``within``, or ``path``
            is not one of its files.
        ImageError: the file is larger than the limit for one zip member.
    """
    limits = limits or Limits.from_env()
    source = Path(run.metadata.source)
    inner = PurePosixPath(path)
    if inner.is_absolute() or ".." in inner.parts:
        raise RunError(f"{path[:200]!r} is not a path inside the run's source")
    try:
        inside = within is None or any(source.resolve().is_relative_to(Path(f).resolve()) for f in within)
        is_folder = source.is_dir()
    except (OSError, ValueError) as err:  # a NUL byte, a loop, a name too long
        raise RunError(f"the run's source {str(source)[:200]!r} cannot be read ({type(err).__name__})") from None
    if not inside:
        raise RunError(f"the run's images are in {str(source)[:200]}, outside the folders this server reads")
    if is_folder:
        try:
            with opened_within(source / inner, [source]) as file:
                if file.stat().st_size > limits.zip_member_bytes:
                    raise ImageError(_too_large(path, limits))
                return file.read_bytes()
        except FileRefused as err:
            raise RunError(f"{path[:200]}: {err} of {source.name[:100]}") from None
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            try:
                info = archive.getinfo(str(inner))
            except KeyError:
                raise RunError(f"{path[:200]}: not in {source.name}") from None
            if info.file_size > limits.zip_member_bytes:
                raise ImageError(_too_large(path, limits))
            return archive.read(info)
    raise RunError(f"the run's images were read from {str(source)[:200]}, which is not on this machine")


def _too_large(path: str, limits: Limits) -> str:
    limit = limits.zip_member_bytes
    return f"{path[:200]}: larger than {limit:,} bytes, the limit for one image (SEVIS_ZIP_MAX_MEMBER_MB)"
