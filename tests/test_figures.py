"""Figures show the numbers they are given, where a reader expects them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import sevis
from sevis import figures
from sevis.stats.se import ExcitationStats
from sevis.stats.sge import MaskStats


@pytest.fixture
def stats() -> ExcitationStats:
    rng = np.random.default_rng(0)
    s = ExcitationStats()
    s.update({"SE_4_6": rng.random((6, 1024)), "SE_5_2": rng.random((6, 2048))}, ["goldfish"] * 3 + ["pug"] * 3)
    return s


def test_sample_channels_is_uniform():
    assert list(figures.sample_channels(1024, 5)) == [0, 256, 512, 767, 1023]
    assert len(figures.sample_channels(2048, 50)) == 50
    assert list(figures.sample_channels(3, 50)) == [0, 1, 2]


def test_class_profiles_plot_means_at_channel_indices(stats):
    channels = figures.sample_channels(1024, 50)
    fig = figures.class_profiles(stats, "SE_4_6", ["goldfish", "pug"], channels=channels, band=True)
    lines = [t for t in fig.data if t.mode and "lines" in t.mode]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == [
        "goldfish (n=3)",
        "pug (n=3)",
        "mean of class means (paper's reference)",
        "all images (n=6)",
    ]
    assert len(bands) == 2  # the classes' spread; reference lines have none
    paper = (stats.mean("SE_4_6", "goldfish") + stats.mean("SE_4_6", "pug")) / 2
    assert_allclose(lines[2].y, paper[channels])
    assert lines[2].line.dash == "dot"
    assert list(lines[0].x) == list(channels)
    assert_allclose(lines[1].y, stats.mean("SE_4_6", "pug")[channels])
    upper = np.asarray(bands[0].y[: len(channels)])
    assert_allclose(upper, (stats.mean("SE_4_6", "goldfish") + stats.std("SE_4_6", "goldfish"))[channels])
    assert fig.layout.xaxis.title.text == "channel index" and fig.layout.yaxis.title.text == "mean excitation"
    assert "SE_4_6" in fig.layout.title.text


def test_sorted_channels_plot_by_rank(stats):
    order = figures.sort_by_difference(stats, "SE_5_2", "goldfish", "pug")
    diff = stats.mean("SE_5_2", "goldfish") - stats.mean("SE_5_2", "pug")
    assert np.all(np.diff(diff[order]) <= 0)
    fig = figures.class_profiles(stats, "SE_5_2", ["goldfish", "pug"], channels=order, ordered_by="by difference")
    assert list(fig.data[0].x) == list(range(2048)) and list(fig.data[0].customdata) == list(order)
    assert fig.layout.xaxis.title.text == "by difference"
    with_curve = figures.class_profiles(
        stats, "SE_5_2", ["goldfish", "pug"], channels=order, ordered_by="by difference", difference=("goldfish", "pug")
    )
    (curve,) = [t for t in with_curve.data if t.yaxis == "y2"]
    assert_allclose(curve.y, diff[order], rtol=1e-6)
    assert np.all(np.diff(np.asarray(curve.y)) <= 0)  # sorted by it: a falling curve
    assert curve.name == "mean(goldfish) − mean(pug)" and with_curve.layout.yaxis.title.text == "mean excitation"


def test_histograms_are_shares_per_class(stats):
    fig = figures.class_histograms(stats, "SE_4_6", ["goldfish", "pug"], side_by_side=True)
    assert [t.name for t in fig.data] == ["goldfish", "pug"]
    assert_allclose(sum(fig.data[0].y), 1.0)
    assert_allclose(fig.data[1].y, stats.histogram("SE_4_6", "pug") / (3 * 1024))
    assert fig.data[1].xaxis == "x2"  # second panel


def test_specificity_curve_in_depth_order(stats):
    from sevis.stats.measures import NullBand

    nulls = {"SE-ResNet-50": {"SE_4_6": NullBand(0.0, -0.1, 0.2, 100), "SE_5_2": NullBand(0.0, -0.3, 0.4, 100)}}
    fig = figures.specificity_curve({"SE-ResNet-50": stats}, nulls=nulls)
    band, omega, share, gap = fig.data
    assert band.fill == "toself" and list(band.x) == ["SE_4_6", "SE_5_2", "SE_5_2", "SE_4_6"]
    assert list(band.y) == [0.2, 0.4, -0.3, -0.1]
    assert list(omega.x) == ["SE_4_6", "SE_5_2"] and omega.name == "SE-ResNet-50: ω²"
    assert_allclose(omega.y, [stats.specificity("SE_4_6"), stats.specificity("SE_5_2")])
    assert_allclose(share.y, [stats.saturation(k)["share_high"] for k in ("SE_4_6", "SE_5_2")])
    assert_allclose(gap.y, [stats.saturation(k)["mean_gap"] for k in ("SE_4_6", "SE_5_2")])
    assert share.yaxis == "y2"  # the saturation panel
    full = {"SE-ResNet-50": {"SE_4_6": NullBand(0.0, -0.1, 0.2, 199, 50_000, 0.95)}}
    (hover, *_) = figures.specificity_curve({"SE-ResNet-50": stats}, nulls=full).data
    assert "same 50,000 images with their labels shuffled, 199 times" in hover.customdata[0]
    assert "falls inside with probability 95.0%" in hover.customdata[0]


def test_volcano_colours_the_significant_channels_and_labels_the_top(stats):
    from sevis.stats import two_class_test

    table = two_class_test(stats, "SE_5_2", "goldfish", "pug")
    fig = figures.volcano(table, top=5)
    plain, significant, labels = fig.data
    assert plain.name.startswith("not significant") and significant.name.startswith("q ≤ 0.05")
    assert len(plain.x) + len(significant.x) == table.p.notna().sum()
    assert sorted([*plain.customdata, *significant.customdata]) == sorted(table.channel[table.p.notna()])
    assert len(significant.x) == table.significant.sum()
    assert labels.text == tuple(str(c) for c in table.channel[:5])
    assert_allclose(labels.y, -np.log10(table.p[:5]))
    assert "SE_5_2: which channels separate goldfish from pug" in fig.layout.title.text
    assert "3 vs 3 images" in fig.layout.title.text


def test_one_image_class_has_no_band_and_says_so():
    s = ExcitationStats()
    s.update({"L": np.array([[0.2, 0.4], [0.4, 0.6], [0.9, 0.1]])}, ["a", "a", "b"])
    fig = figures.class_profiles(s, "L", ["a", "b"], band=True, reference="none")
    assert [t.name for t in fig.data if t.fill != "toself"] == ["a (n=2)", "b (n=1, no std)"]
    assert len([t for t in fig.data if t.fill == "toself"]) == 1
    with pytest.raises(ValueError, match="reference must be one of"):
        figures.class_profiles(s, "L", ["a"], reference="paper")


def test_selectivity_distribution_per_layer(stats):
    fig = figures.selectivity_distribution(stats, ["SE_4_6", "SE_5_2"])
    assert [t.name for t in fig.data] == ["SE_4_6", "SE_5_2"]
    assert_allclose(sorted(fig.data[1].y), sorted(stats.selectivity("SE_5_2")))


def test_overview_bins_each_layer():
    v = {"SE_2_1": np.arange(256) / 256, "SE_5_3": np.ones(2048)}
    fig = figures.excitation_overview(v, bins=4)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 4)
    assert_allclose(z[0], [np.mean(np.arange(i * 64, i * 64 + 64) / 256) for i in range(4)])
    assert_allclose(z[1], 1.0)
    assert fig.data[0].customdata[0][0] == "0–63"
    # one saturated channel among 2,048 low ones: averaged away on the left, kept on the right
    spike = np.full(2048, 0.1)
    spike[700] = 1.0
    fig = figures.excitation_overview({"SE_5_1": spike}, bins=128)
    mean, peak = np.asarray(fig.data[0].z)[0], np.asarray(fig.data[1].z)[0]
    assert mean.max() < 0.2 and peak[700 // 16] == 1.0 and np.sum(peak == 1.0) == 1


def test_profiles_one_panel_per_layer_one_line_per_image():
    rng = np.random.default_rng(1)
    profiles = {f"img{i}.jpg": {"SE_2_3": rng.random(256), "SE_5_1": rng.random(2048)} for i in range(3)}
    fig = figures.excitation_profiles(profiles, ["SE_2_3", "SE_5_1"])
    assert len(fig.data) == 6
    assert [a.text for a in fig.layout.annotations] == ["SE_2_3", "SE_5_1"]
    assert sum(t.showlegend for t in fig.data) == 3
    assert_allclose(fig.data[1].y, profiles["img0.jpg"]["SE_5_1"])


def test_mask_grid_places_group_k_at_row_k_div_8():
    masks = np.stack([np.full((7, 7), k / 64) for k in range(64)])
    fig = figures.mask_grid(masks, "SGE_5_3")
    tile = np.asarray(fig.data[0].z, dtype=float)
    assert tile.shape == (8 * 8 - 1, 8 * 8 - 1)
    r, c = divmod(19, 8)
    assert_allclose(tile[r * 8 : r * 8 + 7, c * 8 : c * 8 + 7], 19 / 64)
    assert np.isnan(tile[7, 0])  # the gap between tiles
    assert np.asarray(fig.data[0].customdata)[r * 8, c * 8] == 19


def test_upsample_keeps_cells_in_place():
    heat = np.zeros((7, 7))
    heat[0, 6] = 1.0  # top-right cell
    up = figures.upsample(heat, (224, 224))
    assert up.shape == (224, 224)
    y, x = np.unravel_index(up.argmax(), up.shape)
    assert y < 32 and x >= 192  # inside the top-right 32 x 32 block
    assert_allclose(figures.upsample(np.full((7, 7), 0.3), (224, 224)), 0.3, rtol=1e-6)


def test_overlay_puts_the_map_over_the_view():
    view = np.zeros((224, 224, 3), np.uint8)
    fig = figures.heat_overlay(view, np.eye(14), title="SGE_4_6", opacity=0.3, zrange=None)
    assert fig.data[0].type == "image" and fig.data[1].type == "heatmap"
    assert np.asarray(fig.data[1].z).shape == (224, 224) and fig.data[1].opacity == 0.3
    assert fig.data[1].zmin is None


def test_untrained_mark_and_mask_statistics():
    stats = MaskStats()
    stats.update({"SGE_4_6": np.random.default_rng(2).random((4, 64, 14, 14))}, ["a", "a", "b", "b"])
    fig = figures.mark_untrained(figures.mask_class_stats(stats, "SGE_4_6", ["a", "b"]))
    assert figures.UNTRAINED_NOTE in fig.layout.title.text and "SGE_4_6" in fig.layout.title.text
    assert [t.name for t in fig.data[::2]] == ["a", "b", "all images"]
    assert_allclose(fig.data[3].y, stats.group_variance("SGE_4_6", "b"))
    banded = figures.mask_class_stats(stats, "SGE_4_6", ["a", "b"], band=True)
    bands = [t for t in banded.data if t.fill == "toself"]
    assert len(bands) == 2  # a and b; none for all images
    upper = np.asarray(bands[1].y[:64])
    assert_allclose(upper, stats.group_mean("SGE_4_6", "b") + stats.std("SGE_4_6", "b", "mean"))


def test_figure_7_two_classes_side_by_side(stats):
    fig = figures.class_band_panels(stats, "SE_5_2", ["goldfish", "pug"])
    assert [a.text for a in fig.layout.annotations] == ["goldfish", "pug"]
    picked = figures.sample_channels(2048, 50)
    bands = [t for t in fig.data if t.fill == "toself"]
    means = [t for t in fig.data if t.meta == "SE_5_2"]
    assert [t.xaxis for t in means] == ["x", "x2"]  # one class per panel
    assert_allclose(means[1].y, stats.mean("SE_5_2", "pug")[picked])
    upper = np.asarray(bands[0].y[:50])
    assert_allclose(upper, (stats.mean("SE_5_2", "goldfish") + stats.std("SE_5_2", "goldfish"))[picked])
    assert "Figure 7" in fig.layout.title.text


def test_figure_7_follows_a_sort_order_by_rank(stats):
    order = figures.sort_by_difference(stats, "SE_5_2", "pug", "goldfish")
    fig = figures.class_band_panels(stats, "SE_5_2", ["pug", "goldfish"], channels=order)
    assert [a.text for a in fig.layout.annotations] == ["pug", "goldfish"]  # the pair asked for, in its order
    means = [t for t in fig.data if t.meta == "SE_5_2"]
    assert_allclose(means[0].x, np.arange(2048))  # a sort is drawn at its rank...
    assert_allclose(means[0].customdata, order)  # ...and every point still names its channel
    assert_allclose(means[0].y, stats.mean("SE_5_2", "pug")[order])
    assert fig.layout.xaxis.title.text == "channel (in the chosen order)"


def test_every_channel_line_has_markers_to_click(stats):
    """Plotly selects markers, never a bare line: every trace a click opens a channel from
    draws them (Figure 6 in both forms at 50 and all channels, Figure 7, the Images profiles)."""
    profiles = {"a.jpg": {"SE_5_2": np.random.default_rng(0).random(2048)}}
    drawn = {
        "grid": figures.class_profiles_grid(stats, ["SE_5_2"], ["goldfish", "pug"]),
        "one layer, 50": figures.class_profiles(
            stats, "SE_5_2", ["goldfish", "pug"], channels=figures.sample_channels(2048, 50)
        ),
        "one layer, all": figures.class_profiles(stats, "SE_5_2", ["goldfish", "pug"], difference=("pug", "goldfish")),
        "Figure 7": figures.class_band_panels(stats, "SE_5_2", ["goldfish", "pug"]),
        "Images": figures.excitation_profiles(profiles, ["SE_5_2"]),
    }
    for name, fig in drawn.items():
        lines = [t for t in fig.data if t.fill != "toself" and t.hoverinfo != "skip"]
        assert lines, name
        for trace in lines:
            assert "markers" in trace.mode, (name, trace.name)
    assert {t.meta for t in drawn["Images"].data} == {"SE_5_2"}


def test_ablation_without_labelled_images_draws_agreement_only():
    """Labels that are no class of the model: accuracy is undefined, and the chart draws how
    often the top-1 class stays the unmodified network's (not empty bars on a 0-400 % axis)."""
    table = pd.DataFrame(
        {
            "condition": ["none", "stage 2", "all"],
            "layers": [0, 3, 16],
            "images": [0, 0, 0],
            "top1": [np.nan] * 3,
            "top5": [np.nan] * 3,
            "top1_kept": [1.0, 0.75, 0.25],
            "top1_change": [np.nan] * 3,
            "top5_change": [np.nan] * 3,
        }
    )
    fig = figures.ablation_chart(table)
    assert [t.name for t in fig.data] == ["top-1 kept (agrees with nothing removed)"]
    assert_allclose(fig.data[0].y, [1.0, 0.75, 0.25])
    assert "no label is a class of the model" in fig.layout.title.text and tuple(fig.layout.yaxis.range) == (0, 1)
    table[["images", "top1", "top5"]] = [[4, 0.5, 1.0], [4, 0.25, 0.75], [4, 0.0, 0.5]]
    labelled = figures.ablation_chart(table)
    assert [t.name for t in labelled.data][:2] == [
        "top-1",
        "top-5",
    ] and "(4 labelled images)" in labelled.layout.title.text


def test_checkpoint_difference_is_a_minus_b_per_class_and_refuses_another_network(stats):
    rng = np.random.default_rng(1)
    other = ExcitationStats()
    other.update({"SE_4_6": rng.random((6, 1024)), "SE_5_2": rng.random((6, 512))}, ["goldfish"] * 3 + ["pug"] * 3)
    fig = figures.checkpoint_difference(stats, other, "SE_4_6", ["pug"], ("A", "B"))
    assert [t.name for t in fig.data] == ["pug (n=3)", "all images (n=6)"]
    assert_allclose(fig.data[0].y, stats.mean("SE_4_6", "pug") - other.mean("SE_4_6", "pug"))
    assert_allclose(fig.data[1].y, stats.mean("SE_4_6") - other.mean("SE_4_6"))
    assert {t.meta for t in fig.data} == {"SE_4_6"} and all("markers" in t.mode for t in fig.data)
    with pytest.raises(ValueError, match="2048 positions in A and 512 in B"):
        figures.checkpoint_difference(stats, other, "SE_5_2", ["pug"], ("A", "B"))


def test_short_labels():
    assert figures.short_label("goldfish, Carassius auratus") == "goldfish, Carassius auratus"
    long = figures.short_label("trailer truck, tractor trailer, trucking rig, rig", 20)
    assert len(long) <= 20 and long.endswith("…")


def test_mask_overlays_use_a_fixed_unit_scale_and_a_uniform_colour_map():
    view = np.zeros((224, 224, 3), np.uint8)
    fig = figures.heat_overlay(view, np.full((7, 7), 0.5) + np.eye(7) * 0.01, title="near 0.5")
    heat = fig.data[1]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)  # 0.50 to 0.51 stays one colour, not the whole scale
    assert heat.colorscale[0][1] == "#440154" and heat.colorscale[-1][1] == "#fde725"  # Viridis


def test_group_feature_maps_share_the_before_maximum():
    rng = np.random.default_rng(1)
    before = rng.random((8, 7, 7)) + 1.0
    after = before * rng.random((8, 7, 7))  # a mask in (0, 1) scales each position down
    fig = figures.group_feature_maps(before, after, [3, 5], "SGE_5_3")
    assert [t.z.shape for t in fig.data] == [(7, 7)] * 4
    assert_allclose(fig.data[0].z, before[3] / before[3].max())
    assert_allclose(fig.data[1].z, after[3] / before[3].max())  # same scale as its before map
    assert [a.text for a in fig.layout.annotations][:2] == ["group 3: before SGE", "group 3: after SGE"]
    assert fig.layout.yaxis4.scaleanchor == "x4"


def test_group_activation_spread_before_and_after_by_hand():
    from sevis.stats.sge import MaskStats

    stats = MaskStats()
    g = np.array([[0.5, 0.5]])
    stats.update_summaries({"S": g}, {"S": g}, ["a"])  # fields the 0.1 runs had
    assert not stats.has_field("S", "norm_var_after")
    full = MaskStats()
    full.add(
        {
            "S": {
                "mean": g,
                "var": g,
                "norm_mean_before": np.array([[2.0, 4.0]]),
                "norm_var_before": np.array([[1.0, 4.0]]),
                "norm_mean_after": np.array([[1.0, 1.0]]),
                "norm_var_after": np.array([[1.0, 1.0]]),
            }
        },
        ["a"],
    )
    fig = figures.group_activation_spread(full, "S", ["a"])
    before, after, cls = fig.data
    assert_allclose(before.y, [1 / 2, 2 / 4])
    assert_allclose(after.y, [1.0, 1.0])
    assert [before.name, after.name, cls.name] == ["all images, before SGE", "all images, after SGE", "a, after SGE"]


def test_figure_6_as_small_multiples(stats):
    layers = sevis.paper_layers(stats.layers)
    fig = figures.class_profiles_grid(stats, layers, ["goldfish", "pug"])
    assert [a.text for a in fig.layout.annotations] == layers
    for layer in layers:
        lines = [t for t in fig.data if t.meta == layer]
        assert [t.name for t in lines] == ["goldfish", "pug", "mean of class means (paper's reference)"]
        picked = figures.sample_channels(len(stats.mean(layer)), 50)
        assert list(lines[0].customdata) == list(picked)
        assert_allclose(lines[1].y, stats.mean(layer, "pug")[picked])
        assert_allclose(lines[2].y, stats.mean_of_class_means(layer)[picked])
        assert lines[2].line.dash == "dot"
    assert sum(t.showlegend is not False for t in fig.data) == 3  # one legend entry per line, not per panel


def test_group_distributions_draw_shares_before_and_after_per_group(tiny_sge, photos):
    files = [(n, photos[n]) for n in ("chelsea.png", "coffee.png")]
    stats = sevis.analyse(tiny_sge, files, labels=["a", "b"], distributions=True).stats["sge"]
    fig = figures.group_distributions(stats, "SGE_3_2", n=2)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "all groups" and len(titles) == 3 and all(t.startswith("group ") for t in titles[1:])
    groups = [int(t.split()[1]) for t in titles[1:]]
    before, after = fig.data[0], fig.data[1]
    counts = stats.distribution("SGE_3_2", "before")
    assert_allclose(before.y, counts / counts.sum())
    group_counts = stats.distribution("SGE_3_2", "after", position=groups[0])
    assert_allclose(fig.data[3].y, group_counts / group_counts.sum())  # the first group's panel, after
    distance = []  # the groups drawn are those SGE changes most
    for g in range(len(stats.mean("SGE_3_2"))):
        b, a = (stats.distribution("SGE_3_2", w, position=g).astype(float) for w in ("before", "after"))
        distance.append(np.abs(a / a.sum() - b / b.sum()).sum() / 2)
    assert groups == list(np.argsort(distance, kind="stable")[::-1][:2])
    assert after.name == "after SGE" and "SGE_3_2: distribution of group activations" in fig.layout.title.text
    frame = stats.distribution_frame("SGE_3_2")
    assert set(frame.distribution) == {"before", "after"} and frame["count"].sum() == 2 * counts.sum()
    run_like = sevis.stats.MaskStats()  # summaries only, as a saved run gives
    run_like.update_summaries({"SGE_3_2": np.zeros((1, 16))}, {"SGE_3_2": np.zeros((1, 16))}, ["a"])
    with pytest.raises(ValueError, match="need the masks"):
        figures.group_distributions(run_like, "SGE_3_2")
