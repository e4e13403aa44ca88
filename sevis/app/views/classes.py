"""Classes page: the SENet paper's excitation analysis (Figures 6 and 7) for any classes."""

import functools
import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import sevis
from sevis import Provenance, figures
from sevis.app.services import (
    IMAGE_TYPES,
    Loaded,
    ablation_of,
    analyse,
    analysis_nulls,
    images_key,
    run_nulls,
    unique_names,
    untrained_twin,
)
from sevis.app.state import KEEP, LINKED, models as loaded_models, offer_drill, uploaded_files
from sevis.app.widgets import (
    export_all,
    export_figures,
    file_part,
    hide_model_messages,
    plain,
    report_failures,
    saved_run_input,
    show_figure,
)
from sevis.stats.classes import ClassKey, ClassStats
from sevis.stats.contrast import two_class_test
from sevis.stats.measures import PERMUTATIONS, NullBand
from sevis.stats.se import ExcitationStats
from sevis.stats.sge import MaskStats

__all__: list[str] = []  # a page: Streamlit runs this script; nothing in it is imported


REFERENCE_LINES = {
    "both": "both",
    "classes": "mean of class means (the paper's)",
    "images": "mean over all images",
    "none": "none",
}

MODES = {
    "batches": "Upload images per class",
    "zip": "A .zip with one folder per class",
    "predicted": "Group by the model's predicted class",
    "run": "A saved run (sevis extract)",
}


def gather_inputs(mode: str) -> tuple[list[tuple[str, bytes]], list[str | None], list[sevis.Failure]]:
    """Files, one label per file (None: predicted), and zip entries that failed."""
    files: list[tuple[str, bytes]] = []
    labels: list[str | None] = []
    failures: list[sevis.Failure] = []
    if mode == "batches":
        count = int(st.number_input("Number of classes", 1, 12, 2, key="classes_count", persist_state=KEEP))
        # NOTE a widget not drawn in a run loses its state: columns beyond the number asked
        # for stay drawn, set aside in an expander, so lowering the number and raising it
        # again keeps their uploads (set aside, they are not analysed)
        drawn = max(count, st.session_state.get("_classes_columns", 0))
        st.session_state["_classes_columns"] = drawn
        places = list(st.columns(count))
        if drawn > count:
            aside = st.expander(f"{drawn - count} class column(s) set aside: kept, not analysed")
            places += list(aside.columns(drawn - count))
        for i, column in enumerate(places):
            label = column.text_input(
                "Class label", f"class {i + 1}", key=f"classes_label_{i}", persist_state=KEEP
            ).strip()
            with column:
                uploads = uploaded_files(
                    f"classes_upload_{i}",
                    functools.partial(
                        st.file_uploader,
                        f"Images of {label or 'this class'}",
                        type=IMAGE_TYPES,
                        accept_multiple_files=True,
                    ),
                )
            if i >= count:
                continue
            files += [(u.name, u.getvalue()) for u in uploads]
            labels += [label or f"class {i + 1}"] * len(uploads)
        files = unique_names(files)
    elif mode == "zip":
        kept = uploaded_files(
            "classes_zip",
            functools.partial(st.file_uploader, "Zip of class folders (cats/1.jpg, dogs/2.jpg, …)", type=["zip"]),
        )
        if kept:
            archive = kept[0]
            try:
                entries, failures = sevis.read_zip(archive)  # read in place, not copied
            except sevis.ArchiveError as err:
                st.error(f"{plain(archive.name, 100)}: {plain(err, 400)}")
                entries = []
            files = [(e.name, e.data) for e in entries]
            labels = [e.label for e in entries]
    else:
        uploads = uploaded_files(
            "classes_predicted",
            functools.partial(st.file_uploader, "Images", type=IMAGE_TYPES, accept_multiple_files=True),
        )
        files = [(u.name, u.getvalue()) for u in uploads]
        labels = [None] * len(files)
    return files, labels, failures


# The suffix of this page's chart widgets' keys: empty for the first model of each kind of
# attention, the model's own for a second one (two checkpoints of one network, side by side).
KEYS = {"suffix": "", "legend": ""}  # the legend: the model's label (two checkpoints: "… (B)", not a slot name)


def key(name: str) -> str:
    return name + KEYS["suffix"]


MAX_CLASSES_SHOWN = 12  # lines a class figure draws at most: a 1,000-class run is searched, never drawn whole


def class_choice(place: DeltaGenerator, stats: ClassStats, kind: str) -> list[str]:
    """The classes to draw: the first six by default, at most :data:`MAX_CLASSES_SHOWN`,
    found by typing (the menu filters as one types). NOTE the widget's key names the class
    set, so a new set of classes (another upload, a renamed class, another zip) starts from
    its own defaults instead of keeping a choice made among the old ones."""
    digest = hashlib.sha256("\0".join(stats.classes).encode()).hexdigest()[:12]
    return place.multiselect(
        f"Classes (of {len(stats.classes):,})",
        stats.classes,
        default=stats.classes[:6],
        max_selections=MAX_CLASSES_SHOWN,
        placeholder="Type to search the classes",
        key=key(f"classes_{kind}_shown_{digest}"),
        persist_state=KEEP,
        bind=LINKED,  # a link to a run on the server shows the same classes
    )


def only(frame, layer: str):
    """The rows of one layer."""
    return frame[frame.layer == layer].reset_index(drop=True)


def in_layers(frame, layers: list[str]):
    """The rows of some layers."""
    return frame[frame.layer.isin(layers)].reset_index(drop=True)


def channel_order(stats: sevis.ExcitationStats, layer: str, classes: list[str]) -> tuple:
    """The channels to plot and, for a sort order, the axis title."""
    how = st.radio(
        "Channels",
        ["50 uniformly spaced (as the paper)", "all", "sorted by the difference of two classes"],
        horizontal=True,
        key=key("classes_channels"),
        persist_state=KEEP,
        bind=LINKED,
    )
    n = len(stats.mean(layer))
    if how.startswith("50"):
        return figures.sample_channels(n, 50), None
    if how == "all":
        return None, None
    if len(classes) < 2:
        st.info("Sorting by the difference of two classes needs two classes shown: channel order instead.")
        return None, None
    a, b = st.columns(2)
    first = a.selectbox("Class A", classes, index=0, key=key("classes_diff_a"), persist_state=KEEP, bind=LINKED)
    second = b.selectbox("Class B", classes, index=1, key=key("classes_diff_b"), persist_state=KEEP, bind=LINKED)
    if first == second:
        st.info("Choose two different classes to sort by their difference: channel order instead.")
        return None, None
    order = figures.sort_by_difference(stats, layer, first, second)
    return order, (first, second)


# NOTE comments, not attribute docstrings: Streamlit's magic draws a page script's floating
# string literals on the page
# A kind's chance bands by layer; None while a saved run's are being computed.
Nulls = Callable[[], dict[str, NullBand] | None]

# Per kind prefix, the untrained baseline the depth curve compares with (set per model section
# when its toggle is on): its legend name, statistics and chance bands.
BASELINES: dict[str, tuple[str, ClassStats, Nulls]] = {}


def depth_figures(stats: ClassStats, prefix: str, source: Loaded | Provenance, name: str, nulls: Nulls) -> None:
    """Class-specificity with its chance band and saturation against depth; the channels'
    class selectivity per layer."""
    if len(stats.classes) < 2:
        st.caption("Class-specificity and selectivity need images of at least two classes.")
        return
    small = stats.small_classes()
    if small:
        st.caption(
            f"{len(small)} class(es) with a single image ({', '.join(small[:5])}{'…' if len(small) > 5 else ''}): "
            "no spread is drawn for them, and they add nothing to the within-class variation."
        )
    bands = nulls()
    if bands is None:
        band_pending(stats.count(), nulls)
    shown_as = KEYS["legend"] or name
    curves, all_bands, difference = {shown_as: stats}, {shown_as: bands or {}}, None
    if prefix in BASELINES:
        base_name, base_stats, base_nulls = BASELINES[prefix]
        curves[base_name], all_bands[base_name] = base_stats, base_nulls() or {}
        difference = (shown_as, base_name)
    show_figure(
        figures.specificity_curve(curves, sevis.prefix_of(stats.layers) or prefix, all_bands, difference),
        f"{name}_{prefix}_depth",
        source,
        lambda: figures.specificity_comparison(curves),  # built when its download is asked for
    )
    if difference is not None:
        st.caption(learned_note(stats, curves[difference[1]]))
    if all(np.isnan(stats.saturation(layer)["share_high"]) for layer in stats.layers):
        st.caption(
            f"Saturation is not drawn: these {prefix} statistics hold no gate values to count (a saved run keeps "
            "each image's summaries per group, not its masks). Analysing the images here counts them."
        )
    show_figure(
        figures.selectivity_distribution(stats, stats.layers),
        f"{name}_{prefix}_selectivity",
        source,
        lambda: selectivity_frame(stats),
    )


def learned_note(trained: ClassStats, untrained: ClassStats) -> str:
    """What the untrained baseline measured, in words (not a fixed sentence)."""
    layers = [layer for layer in trained.layers if layer in untrained.layers]
    own = [untrained.specificity(layer) for layer in layers]
    gain = [trained.specificity(layer) - base for layer, base in zip(layers, own, strict=True)]
    if not layers or all(g != g for g in gain):  # NaN: no within-class spread
        return "The untrained baseline has no class-specificity to compare (one image per class)."
    deepest = layers[-1]
    top = max(range(len(own)), key=lambda i: own[i] if own[i] == own[i] else -1.0)
    return (
        f"Untrained, the same images give ω² from {min(own):.3f} to {max(own):.3f} (highest at {layers[top]}): "
        "class structure from the images and the architecture alone. Training adds "
        f"{gain[-1]:+.3f} at {deepest} (largest {max(gain):+.3f}, at {layers[gain.index(max(gain))]})."
    )


@st.fragment(run_every=2.0)
def band_pending(images: int, nulls: Nulls) -> None:
    """Says what the depth curve's band will be while it is computed, and redraws the page
    once it is (a fragment polling every 2 s: the rest of the page stays as it is)."""
    if nulls() is not None:
        st.rerun()
    st.caption(
        f"Chance band: {PERMUTATIONS} label permutations of all {images:,} images, being computed in the "
        "background (a minute or two for 50,000 images); the curve below is drawn without it until then."
    )


def selectivity_frame(stats: ClassStats) -> pd.DataFrame:
    """Layer, position, class selectivity index."""
    return pd.concat(
        [
            pd.DataFrame({"layer": k, stats.index_name: range(len(v)), "selectivity": v})
            for k in stats.layers
            for v in [stats.selectivity(k)]
        ],
        ignore_index=True,
    )


def channel_pick(layer: str) -> Callable[[dict], tuple[str, int] | None]:
    """A clicked point of a class-profile chart as (layer, channel): every line of it
    carries its channel indices as customdata."""

    def pick(point: dict) -> tuple[str, int] | None:
        channel = point.get("customdata")
        return (layer, int(channel)) if isinstance(channel, int | float) else None

    return pick


def grid_pick(point: dict) -> tuple[str, int] | None:
    """A clicked point of the Figure 6 small multiples: each line carries its layer as meta."""
    channel, layer = point.get("customdata"), point.get("meta")
    return (str(layer), int(channel)) if isinstance(channel, int | float) and isinstance(layer, str) else None


def se_figures(stats: ClassStats, source: Loaded | Provenance, name: str, nulls: Nulls, drill: str) -> None:
    assert isinstance(stats, ExcitationStats)
    classes = class_choice(st.container(), stats, "se")
    if not classes:
        st.info("Choose at least one class.")
        return
    shown = sevis.paper_layers(stats.layers)
    show_figure(
        figures.class_profiles_grid(stats, shown, classes),
        f"{name}_figure6",
        source,
        lambda: in_layers(stats.to_frame(), shown),
        pick=grid_pick,
        pick_source=drill,
    )
    st.markdown("**One layer, every channel**")
    layer = st.selectbox(
        "SE layer",
        stats.layers,
        index=stats.layers.index(sevis.default_layer(stats.layers)),
        key=key("classes_layer"),
        persist_state=KEEP,
        bind=LINKED,
    )
    band = st.toggle(
        "± one standard deviation across images (the paper's Figure 7)", key=key("classes_band"), persist_state=KEEP
    )
    reference = st.radio(
        "Reference line",
        list(REFERENCE_LINES),
        format_func=REFERENCE_LINES.__getitem__,
        horizontal=True,
        key=key("classes_reference"),
        persist_state=KEEP,
    )
    channels, pair = channel_order(stats, layer, classes)
    ordered_by = None
    if pair is not None:
        a, b = (figures.short_label(c, 20) for c in pair)
        ordered_by = f"channels sorted by mean({a}) − mean({b})"
    show_figure(
        figures.class_profiles(
            stats,
            layer,
            classes,
            channels=channels,
            band=band,
            reference=reference,
            ordered_by=ordered_by,
            difference=pair,
        ),
        f"{name}_{layer}_class_profiles",
        source,
        lambda: only(stats.to_frame(), layer),
        pick=channel_pick(layer),
        pick_source=drill,
    )
    if band and len(classes) >= 2:
        # the chart above's channels (50, all, or sorted) and, sorted by a difference, its two classes
        shown_channels = np.arange(len(stats.mean(layer))) if channels is None else channels
        show_figure(
            figures.class_band_panels(stats, layer, list(pair or classes[:2]), channels=shown_channels),
            f"{name}_{layer}_figure7",
            source,
            lambda: only(stats.to_frame(), layer),
            pick=grid_pick,
            pick_source=drill,
        )
    side = st.toggle("Histograms side by side", key=key("classes_side"), persist_state=KEEP)
    show_figure(
        figures.class_histograms(stats, layer, classes, side_by_side=side),
        f"{name}_{layer}_histograms",
        source,
        lambda: only(stats.histogram_frame(), layer),
    )
    separating_channels(stats, layer, classes, source, name, drill)
    depth_figures(stats, "SE", source, name, nulls)


def separating_channels(
    stats: ClassStats, layer: str, classes: list[str], source: Loaded | Provenance, name: str, drill: str
) -> None:
    """Which channels of ``layer`` separate two of the classes shown: Welch's t per channel
    with the Benjamini-Hochberg FDR (:func:`sevis.stats.two_class_test`), as a volcano plot
    whose points open their channel, and the ranked table."""
    if not st.toggle(
        "Which channels separate two classes (Welch's t per channel, FDR)", key=key("classes_test"), persist_state=KEEP
    ):
        return
    if len(classes) < 2:
        st.caption("A two-class test needs two classes shown.")
        return
    left, right = st.columns(2)
    a = left.selectbox("Test class A", classes, index=0, key=key("classes_test_a"), persist_state=KEEP)
    b = right.selectbox("against class B", classes, index=1, key=key("classes_test_b"), persist_state=KEEP)
    if a == b:
        st.info("Choose two different classes to test.")
        return
    try:
        table = two_class_test(stats, layer, a, b)
    except ValueError as err:
        st.info(plain(f"{err}.", 300))
        return
    show_figure(
        figures.volcano(table),
        f"{name}_{layer}_{file_part(a)}_vs_{file_part(b)}_test",
        source,
        table,
        pick=channel_pick(layer),
        pick_source=drill,
    )
    tested = int(table.p.notna().sum())
    significant = table[table.significant]
    st.caption(
        f"{len(significant):,} of {tested:,} {stats.index_name}s differ at a false discovery rate of "
        f"{table.attrs['fdr']:.0%} (Welch's t on {table.attrs['count_a']:,} and {table.attrs['count_b']:,} images, "
        f"Benjamini-Hochberg q-values; g is Hedges' effect size). A is {plain(a, 60)}, B {plain(b, 60)}; "
        "most separating first:"
    )
    shown = significant.head(50)[[stats.index_name, "mean_a", "mean_b", "difference", "effect", "t", "q"]]
    st.dataframe(shown.rename(columns={"mean_a": "mean A", "mean_b": "mean B", "effect": "g"}))


def sge_figures(stats: ClassStats, source: Loaded | Provenance, name: str, nulls: Nulls, drill: str) -> None:
    assert isinstance(stats, MaskStats)
    left, right = st.columns([2, 3])
    layer = left.selectbox(
        "SGE layer",
        stats.layers,
        index=stats.layers.index(sevis.default_layer(stats.layers)),
        key=key("classes_sge_layer"),
        persist_state=KEEP,
    )
    classes = class_choice(right, stats, "sge")
    band = st.toggle("± one standard deviation across images", key=key("classes_sge_band"), persist_state=KEEP)
    show_figure(
        figures.mask_class_stats(stats, layer, classes, band=band),
        f"{name}_{layer}_mask_stats",
        source,
        lambda: only(stats.to_frame(), layer),
    )
    if stats.has_field(layer, "norm_var_after"):  # runs made by sevis 0.1 lack the feature norms
        show_figure(
            figures.group_activation_spread(stats, layer, classes),
            f"{name}_{layer}_activation_spread",
            source,
            lambda: only(stats.to_frame(), layer),
        )
    if st.toggle(
        "Distributions of group activations before and after SGE", key=key("classes_sge_dist"), persist_state=KEEP
    ):
        if stats.distributions(layer):
            by_class = stats.distributions_by_class(layer)
            who = st.selectbox(
                "Images",
                ["all images", *(classes if by_class else [])],
                key=key("classes_sge_dist_class"),
                persist_state=KEEP,
            )
            if not by_class:
                st.caption("A saved run keeps these distributions over all its images, not by class.")
            show_figure(
                figures.group_distributions(stats, layer, cls=sevis.ALL if who == "all images" else who),
                f"{name}_{layer}_distributions",
                source,
                lambda: stats.distribution_frame(layer),
            )
        else:
            st.caption(
                "This run was made without the distributions before and after SGE (`sevis extract "
                "--no-distributions`, or by an earlier sevis): they are counted when images are analysed here, "
                "or when the run is made again."
            )
    depth_figures(stats, "SGE", source, name, nulls)


def kind_figures(
    kind: sevis.AttentionKind, stats: ClassStats, source: Loaded | Provenance, name: str, nulls: Nulls
) -> None:
    """Any other registered kind of attention: its own default figures."""
    left, right = st.columns([2, 3])
    layer = left.selectbox(
        f"{sevis.prefix_of(stats.layers) or kind.prefix} layer",
        stats.layers,
        index=stats.layers.index(sevis.default_layer(stats.layers)),
        key=key(f"classes_{kind.name}_layer"),
        persist_state=KEEP,
    )
    classes = class_choice(right, stats, kind.name)
    for i, fig in enumerate(figures.kind_figures(kind, stats, layer, classes)):
        show_figure(fig, f"{name}_{layer}_{kind.name}_{i}", source, lambda: only(stats.to_frame(), layer))
    depth_figures(stats, kind.prefix, source, name, nulls)


# The kinds with pages of their own widgets; every other kind draws its default figures.
PAGES: dict[str, Callable[[ClassStats, Loaded | Provenance, str, Nulls, str], None]] = {
    "se": se_figures,
    "sge": sge_figures,
}


def kind_sections(
    stats_by_kind: dict[str, ClassStats],
    source: Loaded | Provenance,
    name: str,
    nulls: Callable[[str], dict[str, NullBand] | None],
    drill: str,
) -> None:
    """Each kind's figures; ``nulls(kind)`` gives its chance bands, computed only if drawn;
    ``drill`` names the data on the Channels page (:func:`sevis.app.state.drill_sources`)."""
    for kind_name, stats in stats_by_kind.items():
        if not stats.layers:
            continue
        page = PAGES.get(kind_name)
        kind_nulls = functools.partial(nulls, kind_name)
        if page is not None:
            page(stats, source, name, kind_nulls, drill)
        else:
            kind_figures(sevis.get_kind(kind_name), stats, source, name, kind_nulls)


def checkpoint_comparison(
    first: Loaded,
    second: Loaded,
    results: dict[str, sevis.Analysis],
    drill: str,
    files: list[tuple[str, bytes]],
    labels: list[str | None],
) -> None:
    """Two checkpoints of one network on the same images: per kind, mean(A) − mean(B) of
    each position of a layer (a click opens it for A), and both depth curves on one chart
    with their chance bands and ω²(A) − ω²(B) below."""
    names = (first.label, second.label)
    st.caption(
        "The same images through both checkpoints: where their attention differs, position by position, and "
        "how class-specific each is against depth."
    )
    for kind_name, one in results[first.label].stats.items():
        other = results[second.label].stats.get(kind_name)
        if not one.layers or other is None or len(one.classes) < 1:
            continue
        prefix = sevis.prefix_of(one.layers) or sevis.get_kind(kind_name).prefix
        layer = st.selectbox(
            f"{prefix} layer to compare",
            one.layers,
            index=one.layers.index(sevis.default_layer(one.layers)),
            key=f"classes_ab_{kind_name}_layer",
            persist_state=KEEP,
        )
        shown = one.classes[:8]
        if len(one.classes) > len(shown):
            st.caption(f"The first {len(shown)} of {len(one.classes)} classes, and all images.")
        show_figure(
            figures.checkpoint_difference(one, other, layer, shown, names),
            f"{first.ident}_vs_{second.ident}_{layer}_difference",
            first,
            functools.partial(difference_frame, one, other, layer, names),
            pick=channel_pick(layer),
            pick_source=drill,
        )
        if len(one.classes) < 2:
            st.caption("Class-specificity needs images of at least two classes.")
            continue
        curves = {first.label: one, second.label: other}
        bands = {
            loaded.label: analysis_nulls(loaded, files, labels, results[loaded.label], kind_name)
            for loaded in (first, second)
        }
        show_figure(
            figures.specificity_curve(curves, prefix, bands, names),
            f"{first.ident}_vs_{second.ident}_{prefix}_depth",
            first,
            functools.partial(figures.specificity_comparison, curves),
        )


def pair_of_checkpoints(models: list[Loaded]) -> bool:
    """Two checkpoints of one network: tabs and a comparison of the two, not the modules' chart."""
    return len(models) == 2 and models[0].name == models[1].name


def module_chart(
    models: list[Loaded], results: dict[str, sevis.Analysis], files: list[tuple[str, bytes]], labels: list[str | None]
) -> None:
    """Several networks on the same images: every module's class-specificity (with its chance
    band) and saturation against its place in the network, on one chart."""
    st.header("Every module")
    curves = sevis.module_curves({m.label: results[m.label] for m in models})
    if len(next(iter(curves.values())).classes) < 2:
        st.caption("Class-specificity needs images of at least two classes.")
        return
    whose = {id(stats): (m, kind) for m in models for kind, stats in results[m.label].stats.items()}
    nulls = {
        label: analysis_nulls(
            whose[id(stats)][0], files, labels, results[whose[id(stats)][0].label], whose[id(stats)][1]
        )
        for label, stats in curves.items()
    }

    def table() -> pd.DataFrame:
        frames = []
        for label, stats in curves.items():
            p = whose[id(stats)][0].provenance  # each curve's own network and weights
            frame = stats.specificity_frame().assign(curve=label, curve_model=p.model, curve_weights=p.weights)
            frames.append(frame.assign(curve_weights_sha256=p.weights_sha256, curve_untrained=p.untrained))
        return pd.concat(frames, ignore_index=True)

    several = sevis.Provenance(
        "several: " + ", ".join(m.name for m in models),
        "; ".join(m.provenance.weights for m in models),
        all(m.provenance.untrained for m in models),
    )
    show_figure(figures.module_depth_curves(curves, nulls), "modules_depth", several, table)
    if st.toggle(
        "Accuracy with each stage's attention removed, every network (the SENet paper's Table 13)",
        key="classes_modules_ablate",
        help="Removed means what each module's absence means: gates at 1, branch weights at 1/M, BAM's gate at 0.",
    ):
        ablations = {}
        for m in models:
            targets, _ = sevis.class_indices([r.label for r in results[m.label].images], m.info.class_names)
            ablations[m.label] = ablation_of(m, results[m.label], images_key(results[m.label]), targets.tolist())
        compared = sevis.compare_ablations(ablations)
        show_figure(figures.ablation_comparison(compared), "modules_ablation", several, compared)
        metric = "top1" if int(compared["images"].iloc[0]) else "top1_kept"
        side_by_side = compared.pivot(index="condition", columns="network", values=metric)
        st.dataframe(side_by_side.loc[compared.condition.unique(), list(ablations)])  # the paper's order; as loaded
    checkpoints_of_one_network(models, results)
    st.caption("Each network's own sections follow, one after the other.")


def checkpoints_of_one_network(models: list[Loaded], results: dict[str, sevis.Analysis]) -> None:
    """Networks with the same layers (SE-ResNet-50's trainings): each one's mean per position
    minus a chosen reference's, and their class-specificity and saturation per layer."""
    for kind_name in dict.fromkeys(kind for m in models for kind in m.kinds):
        same = {m.label: results[m.label].stats[kind_name] for m in models if kind_name in results[m.label].stats}
        layers = next(iter(same.values())).layers
        same = {label: stats for label, stats in same.items() if stats.layers == layers}
        if len(same) < 2:
            continue
        prefix = sevis.prefix_of(layers) or sevis.get_kind(kind_name).prefix
        st.subheader(f"{len(same)} checkpoints of one network ({prefix} layers)")
        left, right = st.columns(2)
        reference = left.selectbox("Reference checkpoint", list(same), key=f"classes_reference_{kind_name}")
        layer = right.selectbox(
            f"{prefix} layer",
            layers,
            index=layers.index(sevis.default_layer(layers)),
            key=f"classes_reference_{kind_name}_layer",
        )
        first = next(m for m in models if m.label == reference)
        show_figure(
            figures.reference_difference(same, reference, layer),
            f"checkpoints_{kind_name}_{layer}_difference",
            first,
            functools.partial(means_frame, same, layer),
        )
        table = figures.specificity_comparison(same).set_index(["layer", "curve"])
        columns = {f"{label}: {name}": table[what].xs(label, level="curve") for label in same for what, name in SHOWN}
        st.dataframe(pd.DataFrame(columns).loc[layers])
        st.caption(
            "Class-specificity ω² and the share of gate values ≥ 0.99 per layer of each checkpoint (the chart "
            "above draws them with their chance bands); the download holds every checkpoint's mean per position."
        )


# NOTE a comment, not a docstring: Streamlit's magic would draw a bare string of a page script
SHOWN = (("specificity", "ω²"), ("share_high", "share ≥ 0.99"))  # the checkpoints' table's columns


def means_frame(curves: dict[str, ClassStats], layer: str) -> pd.DataFrame:
    """Each checkpoint's mean over all images of every position of ``layer``: the position,
    then a column per checkpoint, and the layer."""
    index = next(iter(curves.values())).index_name
    frame = pd.DataFrame({label: stats.mean(layer) for label, stats in curves.items()})
    return frame.rename_axis(index).reset_index().assign(layer=layer)


def difference_frame(one: ClassStats, other: ClassStats, layer: str, names: tuple[str, str]) -> pd.DataFrame:
    """Layer, class, position, each checkpoint's mean (``mean_a``, ``mean_b``; the checkpoints
    named in ``checkpoint_a``, ``checkpoint_b``) and their difference."""
    rows = []
    every: list[ClassKey] = [*one.classes, sevis.ALL]
    for cls in every:
        a, b = one.mean(layer, cls), other.mean(layer, cls)
        rows.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "class": None if cls is sevis.ALL else cls,
                    one.index_name: np.arange(len(a)),
                    "mean_a": a,
                    "mean_b": b,
                    "difference": a - b,
                    "checkpoint_a": names[0],
                    "checkpoint_b": names[1],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def saved_run() -> None:
    """A run from `sevis extract`: dataset-scale statistics without running a model."""
    run = saved_run_input("classes")
    if run is None:
        st.stop()
    m = run.metadata
    st.write(
        f"**{plain(m.model, 80)}** ({plain(m.weights, 200)}), {m.images:,} images from {plain(m.source, 200)}, "
        f"{len(run.failures):,} unreadable."
    )
    if m.untrained:
        st.warning(f"This run was made with untrained weights: {figures.UNTRAINED_NOTE}", icon="⚠️")
    source = f"saved run {run.path.name}"
    offer_drill("classes", {source: (run, None)})
    KEYS["legend"] = ""  # a run's curves are named by its model
    kind_sections(run.stats, run.provenance, m.model, functools.partial(run_nulls, run), source)
    export_figures("Classes", run.provenance, {"run": run.path.name, "images": m.images, "source": m.source})


st.title("Classes")
st.caption(
    "Per-class excitation, as in the SENet paper's section 'Role of Excitation': mean excitation "
    "per channel for each class, the spread across images, and how class-specific each layer is."
)
mode = st.radio(
    "Images", list(MODES), format_func=MODES.get, horizontal=True, key="classes_mode", persist_state=KEEP, bind=LINKED
)
if mode == "run":  # no model runs: the statistics come from the file, and no model message shows
    hide_model_messages()
    saved_run()
    st.stop()
models: list[Loaded] = loaded_models()
if not models:
    st.info("Choose a model and its weights in the sidebar.")
    st.stop()

files, labels, zip_failures = gather_inputs(mode)
if not files:
    report_failures(zip_failures)
    st.info("Upload images to compare classes.")
    st.stop()

# NOTE SGE's distributions cost 1.6 MB of counts an image: counted only once their toggle is on
wanted = any(v is True for k, v in st.session_state.items() if str(k).startswith("classes_sge_dist"))
results = {m.label: analyse(m, files, labels, distributions=wanted) for m in models}
first = next(iter(results.values()))
report_failures([*zip_failures, *first.failures])
if not first.images:
    st.error("None of the files could be analysed.")
    st.stop()

drills = {f"{m.label}: images on the Classes page": m for m in models}
if len(models) > 1 and not pair_of_checkpoints(models):
    module_chart(models, results, files, labels)
kinds_seen: list[str] = []
offer_drill("classes", {drill: (results[m.label], m) for drill, m in drills.items()})
# NOTE two checkpoints of one network: a tab each, at full width (side by side, Figure 6's
# panels were 40 px wide), and a third that compares them
pair = pair_of_checkpoints(models)
tabs = st.tabs([m.label for m in models] + [f"{models[0].label} − {models[1].label}"]) if pair else []
places = tabs[:2] if pair else [st.container() for _ in models]
for (drill, loaded), place in zip(drills.items(), places, strict=True):
    with place:
        st.header(loaded.label)
        stats = results[loaded.label].stats
        counted = next(iter(stats.values()))
        st.write(
            "Images per class: "
            + ", ".join(f"**{plain(figures.short_label(c))}** {counted.count(c)}" for c in counted.classes)
        )
        result = results[loaded.label]
        nulls = functools.partial(analysis_nulls, loaded, files, labels, result)
        # NOTE a kind drawn already (two checkpoints; SE beside CBAM's channel gates) gets keys of its own
        KEYS["suffix"] = f"_{loaded.ident}" if set(loaded.kinds) & set(kinds_seen) else ""
        KEYS["legend"] = loaded.label
        kinds_seen += loaded.kinds
        BASELINES.clear()
        if not loaded.provenance.untrained and st.toggle(
            "Against the same network untrained (seed 0): what training put there",
            key="classes_baseline" + ("" if loaded is models[0] else f"_{loaded.ident}"),  # one per network
            persist_state=KEEP,
        ):
            twin = untrained_twin(loaded)
            base = analyse(twin, files, labels)
            for kind_name, base_stats in base.stats.items():
                base_nulls = functools.partial(analysis_nulls, twin, files, labels, base, kind_name)
                BASELINES[sevis.get_kind(kind_name).prefix] = ("untrained", base_stats, base_nulls)
        kind_sections(stats, loaded, loaded.ident, nulls, drill)
        BASELINES.clear()
if pair:
    with tabs[2]:
        checkpoint_comparison(models[0], models[1], results, next(iter(drills)), files, labels)
    # one Export all: every chart of the three tabs, and both checkpoints' statistics
    export_all(
        "Classes", models[0], results[models[0].label], files, labels, also=(models[1], results[models[1].label])
    )
else:
    for loaded in models:
        export_all("Classes", loaded, results[loaded.label], files, labels)
