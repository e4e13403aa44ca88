"""Channel drill-downs and excitation maps (sevis.analysis.explore), from an analysis of real
photographs and from the saved run of the same images."""

from __future__ import annotations

import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest

import sevis
from sevis import figures
from sevis.jobs.extraction import extract


@pytest.fixture(scope="module")
def run_and_analysis(tiny_se, image_folder, tmp_path_factory):
    out = extract(tiny_se, image_folder, tmp_path_factory.mktemp("run") / "run.parquet", workers=0, progress=False)
    table = pq.read_table(out, columns=["path", "label"])
    paths, labels = table["path"].to_pylist(), table["label"].to_pylist()
    files = [(p, (image_folder / p).read_bytes()) for p in paths]
    return out, sevis.analyse(tiny_se, files, labels=labels), paths


def test_a_channel_across_a_saved_run_and_its_analysis(run_and_analysis):
    out, analysis, paths = run_and_analysis
    from_run = sevis.channel_view(out, "SE_4_6", 17)
    from_images = sevis.channel_view(analysis, "SE_4_6", 17)
    column = np.stack(pq.read_table(out, columns=["SE_4_6"])["SE_4_6"].to_pylist())[:, 17]
    np.testing.assert_array_equal(from_run.values, column.astype(np.float32))
    np.testing.assert_allclose(from_images.values, from_run.values, rtol=1e-6)
    assert from_run.names == paths and from_run.labels == ["cat", "cat", "cup", "cup", "vehicle", "vehicle", "vehicle"]
    stats = sevis.read_run(out).se
    assert from_run.selectivity == pytest.approx(float(stats.selectivity("SE_4_6")[17]))
    assert from_run.class_means["cup"] == pytest.approx(column[2:4].mean(), rel=1e-6)
    top, bottom = from_run.extremes(3)
    order = np.argsort(column)
    assert top.image.tolist() == [paths[i] for i in order[::-1][:3]]
    assert bottom.image.tolist() == [paths[i] for i in order[:3]]
    assert top.value.is_monotonic_decreasing and bottom.value.is_monotonic_increasing
    fig = figures.channel_by_class(from_run)
    assert [t.name for t in fig.data] == sorted(from_run.class_means, key=from_run.class_means.get, reverse=True)
    assert "SE_4_6, channel 17" in fig.layout.title.text
    with pytest.raises(ValueError, match="SE_4_6 has 128 channels"):
        sevis.channel_view(out, "SE_4_6", 128)
    with pytest.raises(sevis.UnknownLayerError, match="SE_9_1"):
        sevis.channel_view(analysis, "SE_9_1", 0)


def test_the_map_is_the_pca_of_every_image(run_and_analysis):
    out, analysis, paths = run_and_analysis
    rows = analysis.rows("se")["SE_3_4"].astype(np.float64)
    centred = rows - rows.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    emap = sevis.excitation_map(out, "SE_3_4")
    assert emap.images == 7 and emap.points.image.tolist() == paths
    expected = centred @ vt[:2].T
    got = emap.points[["x", "y"]].to_numpy()
    signs = np.sign((expected * got).sum(0))  # an axis's sign is a convention
    np.testing.assert_allclose(got * signs, expected, atol=1e-4)
    variance = singular**2
    np.testing.assert_allclose(emap.explained, variance[:2] / variance.sum(), rtol=1e-4)
    cup = emap.centroids.set_index("label").loc["cup"]
    np.testing.assert_allclose([cup.x, cup.y], got[2:4].mean(0), atol=1e-4)
    # separation: the share of the map's variance between the class centroids, by hand
    labels = np.array(emap.points.label)
    centred_xy = got - got.mean(0)
    between = sum((labels == c).sum() * np.sum(centred_xy[labels == c].mean(0) ** 2) for c in set(labels))
    assert emap.separation == pytest.approx(between / np.sum(centred_xy**2), rel=1e-4)
    assert 0 < emap.separation < 1
    # the same images analysed in the dashboard give the same map
    same = sevis.excitation_map(analysis, "SE_3_4")
    np.testing.assert_allclose(same.points[["x", "y"]].to_numpy(), got, atol=1e-4)
    # drawn: a seeded sample; computed: on all
    few = sevis.excitation_map(out, "SE_3_4", max_points=3, seed=2)
    assert len(few.points) == 3 and few.images == 7 and few.explained == pytest.approx(emap.explained)
    # every image drawn, the axes are the rows' SVD; a sample drawn, the covariance's eigenvectors: one map
    where = emap.points.set_index("image").loc[few.points.image, ["x", "y"]].to_numpy()
    np.testing.assert_allclose(few.points[["x", "y"]].to_numpy(), where, atol=1e-5)
    np.testing.assert_allclose(few.centroids[["x", "y"]].to_numpy(), emap.centroids[["x", "y"]].to_numpy(), atol=1e-5)
    fig = figures.excitation_map_figure(few)
    assert "3 of 7 images drawn" in fig.layout.title.text
    with pytest.raises(ValueError, match="'pca' or 'umap'"):
        sevis.excitation_map(out, "SE_3_4", method="tsne")


def test_the_map_of_two_images_is_their_difference(tiny_se, image_folder):
    """Two images span one direction: the first axis is their difference, each sits half its
    length from the centre, and the second axis holds nothing."""
    files = [(p.name, p.read_bytes()) for p in sorted(image_folder.glob("*/*.png"))[:2]]
    analysis = sevis.analyse(tiny_se, files, labels=["a", "b"])
    rows = analysis.rows("se")["SE_4_6"].astype(np.float64)
    emap = sevis.excitation_map(analysis, "SE_4_6")
    half = np.linalg.norm(rows[0] - rows[1]) / 2
    got = emap.points[["x", "y"]].to_numpy(np.float64)
    np.testing.assert_allclose(np.abs(got[:, 0]), [half, half], rtol=1e-5)
    assert got[0, 0] == pytest.approx(-got[1, 0], rel=1e-5)
    np.testing.assert_allclose(got[:, 1], 0, atol=1e-6 * half)
    assert emap.explained[0] == pytest.approx(1, abs=1e-9) and emap.explained[1] == pytest.approx(0, abs=1e-9)


def _sklearn_pca(rows: np.ndarray):
    from sklearn.decomposition import PCA

    return PCA(n_components=2, svd_solver="full").fit(rows.astype(np.float64))


def _assert_map_is_sklearns(emap, rows: np.ndarray, rtol: float) -> None:
    """Explained shares and the projections of every image as scikit-learn's PCA gives
    them (an axis's sign is a convention)."""
    pca = _sklearn_pca(rows)
    np.testing.assert_allclose(emap.explained, pca.explained_variance_ratio_, rtol=rtol)
    expected = pca.transform(rows.astype(np.float64))
    got = emap.points[["x", "y"]].to_numpy(np.float64)
    signs = np.sign((expected * got).sum(0))
    scale = np.abs(expected).max(0)
    np.testing.assert_allclose(got * signs / scale, expected / scale, atol=rtol)


def test_the_map_equals_scikit_learns_pca_on_photographs(run_and_analysis):
    out, analysis, _ = run_and_analysis
    for layer in ("SE_2_1", "SE_4_6", "SE_5_2"):
        rows = analysis.rows("se")[layer]
        _assert_map_is_sklearns(sevis.excitation_map(out, layer), rows, 1e-5)
        _assert_map_is_sklearns(sevis.excitation_map(analysis, layer), rows, 1e-5)


def test_the_map_of_near_saturated_gates_equals_scikit_learns_pca(run_and_analysis, tmp_path):
    """20,000 excitation vectors near 1 (mean 0.985, spread 1e-3, as the paper's SE_5_2)
    with a few real directions: X'X - n m m' in float32 gave the first axis 0.042 of the
    variance where it holds 0.231, and the second axis's positions 61-100 % off."""
    import pyarrow as pa

    out, _, _ = run_and_analysis
    table = pq.read_table(out)
    n, layer = 20_000, "SE_5_2"
    dim = len(table[layer][0])
    rng = np.random.default_rng(0)
    labels = np.array(["cat", "cup", "vehicle"])[rng.integers(0, 3, n)]
    directions = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T  # three orthonormal directions
    weights = rng.standard_normal((n, 3)) * np.sqrt([0.4, 0.15, 0.05]) * np.sqrt(dim)
    rows = (0.985 + 1e-3 * (weights @ directions + rng.standard_normal((n, dim)))).astype(np.float32)
    big = table.take(pa.array(np.arange(n) % len(table)))
    big = big.set_column(big.schema.get_field_index("path"), "path", pa.array([f"x/{i}.png" for i in range(n)]))
    big = big.set_column(big.schema.get_field_index("label"), "label", pa.array(labels.tolist()))
    values = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), dim)
    big = big.set_column(big.schema.get_field_index(layer), big.schema.field(layer), values)
    path = tmp_path / "saturated.parquet"
    pq.write_table(big.replace_schema_metadata(table.schema.metadata), path)
    emap = sevis.excitation_map(path, layer, max_points=n)
    assert emap.images == n
    _assert_map_is_sklearns(emap, rows, 1e-4)
    assert emap.explained[0] > 0.1  # the float32 shortcut's 0.04 would fail here


def test_sge_groups_and_maps(tiny_sge, image_folder):
    files = [(p.name, p.read_bytes()) for p in sorted(image_folder.glob("*/*.png"))]
    analysis = sevis.analyse(tiny_sge, files, labels=[f"c{i % 2}" for i in range(len(files))])
    view = sevis.channel_view(analysis, "SGE_5_1", 3)
    assert view.index_name == "group"
    np.testing.assert_allclose(view.values, [r.mask_means["SGE_5_1"][3] for r in analysis.images])
    assert sevis.excitation_map(analysis, "SGE_5_1").points.shape == (len(files), 4)


def test_images_of_a_run_are_read_back_from_its_folder_or_zip(tiny_se, image_folder, tmp_path):
    run = sevis.read_run(extract(tiny_se, image_folder, tmp_path / "run.parquet", workers=0, progress=False))
    assert sevis.run_image(run, "cat/chelsea.png") == (image_folder / "cat" / "chelsea.png").read_bytes()
    for bad in ("../run.parquet", "/etc/passwd", "cat/absent.png"):
        with pytest.raises(sevis.RunError):
            sevis.run_image(run, bad)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(image_folder.rglob("*.png")):
            z.write(p, p.relative_to(image_folder).as_posix())
    zipped = sevis.read_run(extract(tiny_se, archive, tmp_path / "zrun.parquet", workers=0, progress=False))
    assert sevis.run_image(zipped, "cup/coffee.png") == (image_folder / "cup" / "coffee.png").read_bytes()
    with pytest.raises(sevis.ImageError, match="larger than 1,000 bytes"):
        sevis.run_image(zipped, "cup/coffee.png", sevis.limits.Limits(zip_member_bytes=1000))
    archive.unlink()
    with pytest.raises(sevis.RunError, match="not on this machine"):
        sevis.run_image(zipped, "cup/coffee.png")
