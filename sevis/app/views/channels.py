"""Channels page: one channel across the images, the images mapped by their excitations,
and what the network loses when attention is knocked out."""

import hashlib
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

import sevis
from sevis import figures
from sevis.analysis.images import Analysis
from sevis.app.services import (
    Loaded,
    ablation_of,
    channel_effect,
    channel_view_of,
    excitation_map_of,
    images_key,
    importance_of,
    server_folders,
)
from sevis.app.state import KEEP, Drill, ask_drill, drill, drill_sources
from sevis.app.widgets import export_figures, hide_model_messages, plain, saved_run_input, show_figure
from sevis.runs.reader import Run

__all__: list[str] = []  # a page: Streamlit runs this script; nothing in it is imported


EXTREMES = 6  # images shown at each end of a channel's range (and knocked out, to see its effect)
GALLERY = 24  # images a lasso on the excitation map shows
MAPPED_LABELS = 20  # labels that name no class of the model offered a menu each; the rest count only in 'top-1 kept'
NO_CLASS = "(no class: top-1 kept only)"
IMPORTANCE_SHOWN = [64, 256, 1024, 2048]  # the choice of how many channels of a layer to knock out, evenly spaced
# the address's names for the view's layer, channel and classes shown
LINK_LAYER, LINK_CHANNEL, LINK_CLASSES = "channel_layer", "channel", "classes"
MAX_CLASSES = 24  # shown on the channel's chart at most


def importance_pick(layer: str) -> Callable[[dict], tuple[str, int] | None]:
    """A clicked point of the importance scatter as (layer, channel): each carries its channel."""

    def pick(point: dict) -> tuple[str, int] | None:
        channel = point.get("customdata")
        return (layer, int(channel)) if isinstance(channel, int | float) else None

    return pick


def mapped_targets(
    labels: Sequence[str | None], targets: np.ndarray, missing: list[str], class_names: Sequence[str]
) -> np.ndarray:
    """The class index of each image, with the labels that name no class of the model
    mapped by the user to one (a menu per label, the first :data:`MAPPED_LABELS`); an
    image whose label stays unmapped counts only in 'top-1 kept'."""
    st.caption(
        f"{len(missing)} label(s) name no class of the model ({', '.join(plain(m, 40) for m in missing[:5])}"
        f"{'…' if len(missing) > 5 else ''}): their images count only in 'top-1 kept' (how often the top-1 class "
        "stays the unmodified network's) unless mapped to a class below."
    )
    options = [NO_CLASS, *class_names]
    chosen: dict[str, int] = {}
    with st.expander("Map your labels to the model's classes", expanded=False):
        for label in missing[:MAPPED_LABELS]:
            digest = hashlib.sha256(label.encode()).hexdigest()[:16]  # a key, not the label's own text
            pick = st.selectbox(plain(label, 60), options, key=f"channels_label_map_{digest}", persist_state=KEEP)
            if pick != NO_CLASS:
                chosen[label] = options.index(pick) - 1
        if len(missing) > MAPPED_LABELS:
            st.caption(f"…and {len(missing) - MAPPED_LABELS:,} more, not offered: rename them as the model's classes.")
    mapped = targets.copy()
    for row, name in enumerate(labels):
        if name is not None and name in chosen:
            mapped[row] = chosen[name]
    return mapped


_TARGETS: list[np.ndarray] = []  # this run of the page's class index of each image, once


def class_targets(analysis: Analysis, model: Loaded) -> np.ndarray:
    """Each image's class index for the knock-outs, the labels naming no class mapped by the
    user (:func:`mapped_targets`, its menus drawn where first asked for on this page)."""
    if not _TARGETS:
        labels = [r.label for r in analysis.images]
        targets, missing = sevis.class_indices(labels, model.info.class_names)
        _TARGETS.append(mapped_targets(labels, targets, missing, model.info.class_names) if missing else targets)
    return _TARGETS[0]


st.title("Channels")
st.caption(
    "One channel (SE) or group (SGE) across a set of images: its value per class, the images that "
    "excite it most and least, how class-selective it is, and what forcing it to 0 or 1 changes. "
    "Click a channel on an excitation chart of the Classes or Images page to open it here."
)

sources: dict[str, tuple[Analysis | Run, Loaded | None]] = drill_sources()
OWN_RUN = "A saved run, opened here"
names = [*sources, OWN_RUN]
if drill() is None and LINK_LAYER in st.query_params:  # a link opened: its layer and channel
    asked = st.query_params.get(LINK_CHANNEL, "0")
    ask_drill(
        Drill(
            st.query_params[LINK_LAYER],
            int(asked) if asked.isdecimal() and len(asked) < 9 else 0,
            OWN_RUN if "channels_run_path" in st.query_params else names[0],
            tuple(c[:200] for c in st.query_params.get_all(LINK_CLASSES)[:MAX_CLASSES]),
        )
    )
asked_for = drill()
choice = st.radio(
    "Images",
    names,
    index=names.index(asked_for.source) if asked_for is not None and asked_for.source in names else 0,
    key=f"channels_source_{len(names)}",
    horizontal=True,
)
if choice == OWN_RUN:
    hide_model_messages()  # a saved run needs no model
    run = saved_run_input("channels")
    if run is None:
        st.stop()
    data: Analysis | Run = run
    loaded: Loaded | None = None
else:
    data, loaded = sources[choice]
if isinstance(data, Run) and not data.path.exists():
    # NOTE an uploaded run's statistics are kept, its rows are not: a channel needs its rows
    st.info(
        f"{plain(data.path.name, 100)} was uploaded: the server keeps its statistics, not its rows, which a channel "
        "needs. Open it by its path on the server to follow one channel across its images."
    )
    st.stop()
provenance = data.provenance
layers = [layer for stats in data.stats.values() for layer in stats.layers]
if not layers:
    st.info("These images have no attention layers to show.")
    st.stop()

left, right = st.columns([2, 1])
wanted = asked_for.layer if asked_for is not None and asked_for.source == choice else None
layer = left.selectbox(
    "Layer", layers, index=layers.index(wanted) if wanted in layers else layers.index(sevis.default_layer(layers))
)
stats = next(s for s in data.stats.values() if layer in s.layers)
size = len(stats.mean(layer))
# NOTE the key names the layer, so a clicked channel becomes this widget's value once, and
# a channel typed afterwards stays.
default = asked_for.channel if asked_for is not None and wanted == layer else 0
channel = int(
    right.number_input(
        f"{stats.index_name.capitalize()} (0 to {size - 1})",
        0,
        size - 1,
        min(default, size - 1),
        key=f"channels_channel_{choice}_{layer}_{default}",
    )
)

# the view's link: the run's server path is bound to the address by its widget; the layer and
# channel are written here (their widgets' keys follow the drill-down)
st.query_params[LINK_LAYER] = layer
st.query_params[LINK_CHANNEL] = str(channel)
copy_link = right.popover("Copy link", icon=":material/link:")  # filled once the classes are chosen

images_id = images_key(data)  # hashed once a run: every view of an analysis
view = channel_view_of(data, images_id, layer, channel)
st.subheader(f"{layer}, {stats.index_name} {channel}")
a, b, c = st.columns(3)
a.metric("Images", f"{len(view.values):,}")
b.metric(
    "Class selectivity",
    "—" if view.selectivity is None else f"{view.selectivity:.3f}",
    help="(mean of the most excited class − mean of the others) / their sum (Morcos et al., ICLR 2018); "
    "0: no class preference, 1: one class only.",
)
c.metric("Mean over all images", f"{float(np.mean(view.values)):.4f}" if len(view.values) else "—")
by_excitation = sorted(view.class_means, key=view.class_means.__getitem__, reverse=True)
linked_classes = (
    [c for c in asked_for.classes if c in view.class_means]
    if asked_for is not None and (asked_for.source, asked_for.layer, asked_for.channel) == (choice, layer, channel)
    else []
)
shown = st.multiselect(
    "Classes",
    by_excitation,
    default=linked_classes or by_excitation[:12],
    max_selections=MAX_CLASSES,
    key=f"channels_classes_{images_id[:12]}_{layer}_{channel}",  # each channel starts at its own top classes
    placeholder="Type to search the classes",
)
st.query_params[LINK_CLASSES] = shown
# NOTE the browser writes the bound widgets' values into the address: the typed run's path is added here
linked = [(k, v) for k in st.query_params for v in st.query_params.get_all(k) if k != "channels_run_path"]
typed = str(st.session_state.get("channels_run_path") or "").strip()
if choice == OWN_RUN and typed:
    linked.append(("channels_run_path", typed))
with copy_link:
    st.code(f"{(st.context.url or '').rstrip('/')}/channels?{urlencode(linked)}", language=None)
    st.caption(
        "Opens this layer, channel and classes; a saved run opened by its path on the server comes back with it. "
        "Uploaded files stay with this session."
    )
show_figure(
    figures.channel_by_class(view, shown or None),
    f"{provenance.model}_{layer}_{stats.index_name}{channel}_by_class",
    loaded or provenance,
    view.by_class,
)


def thumbnails(rows: pd.DataFrame, title: str) -> None:
    st.markdown(f"**{title}**")
    columns = st.columns(EXTREMES)
    for column, row in zip(columns, rows.itertuples(), strict=False):
        picture = image_of(row.image)
        caption = f"{plain(row.image[-40:])} · {plain(row.label[:30])} · {row.value:.3f}"
        if picture is None:
            column.caption(caption + " (image not readable here)")
        else:
            column.image(picture, caption=caption)


def gallery(chosen: list[str], points: pd.DataFrame) -> None:
    """The images a lasso (or a box) selected on the excitation map (``points``: its
    ``image`` and ``label`` columns), with their classes: the first :data:`GALLERY` of them,
    and how many of each class were selected."""
    if not chosen:
        st.caption("Draw a lasso or a box around points of the map to see those images and their classes.")
        return
    names = list(dict.fromkeys(chosen))
    labels = points.set_index("image").label
    classes = pd.Series([str(labels.get(n, "")) for n in names]).value_counts()
    st.markdown(f"**{len(names):,} image(s) selected**")
    st.caption(
        "By class: "
        + ", ".join(f"{plain(figures.short_label(c, 40))} {k}" for c, k in list(classes.items())[:12])
        + (f", and {len(classes) - 12} more classes" if len(classes) > 12 else "")
    )
    columns = st.columns(EXTREMES)
    for i, name in enumerate(names[:GALLERY]):
        picture, caption = image_of(name), f"{plain(name[-40:])} · {plain(str(labels.get(name, ''))[:30])}"
        column = columns[i % EXTREMES]
        if picture is None:
            column.caption(caption + " (image not readable here)")
        else:
            column.image(picture, caption=caption)
    if len(names) > GALLERY:
        st.caption(f"The first {GALLERY} of {len(names):,} are shown.")


def image_of(name: str) -> np.ndarray | None:
    """The image as the model saw it: kept by an analysis; read back from a run's source."""
    if isinstance(data, Analysis):
        return next((r.view for r in data.images if r.name == name), None)
    try:
        # NOTE a run names its own source: only folders the operator lists are read back
        image = sevis.run_image(data, name, within=list(map(str, server_folders())))
        return np.asarray(sevis.model_view(data.metadata.data_config, sevis.decode_image(image)))
    except sevis.SevisError:
        return None


top, bottom = view.extremes(EXTREMES)
thumbnails(top, "Images exciting it most")
thumbnails(bottom, "Images exciting it least")

st.subheader("Knock-out effect")
if loaded is None:
    st.caption(
        "Knock-outs need the model: open the images on the Classes page, or use `sevis.knockout` "
        "and `sevis ablate` on the run's images."
    )
else:
    names_shown = list(dict.fromkeys([*top.image, *bottom.image]))  # a small set: both ends overlap
    views = [image_of(n) for n in names_shown]
    kept = [(n, v) for n, v in zip(names_shown, views, strict=True) if v is not None]
    effect = channel_effect(loaded, layer, channel, tuple(n for n, _ in kept), [v for _, v in kept])
    st.caption(
        f"The {len(kept)} images above with {layer}'s {stats.index_name} {channel} forced to 0 and to 1: "
        "the change in the probability of each image's own top-1 class."
    )
    st.dataframe(effect, hide_index=True)

st.subheader("Excitation map")
st.caption(
    "Each image placed by its whole vector in one layer (PCA over every image; at most 5,000 drawn). "
    "Step through the layers to see where the classes separate."
)
map_layer = st.select_slider(  # starts at the layer chosen above, follows it when it changes
    "Layer of the map", layers, value=layer, key=f"channels_map_layer_{images_id[:12]}_{layer}"
)
emap = excitation_map_of(data, images_id, map_layer)
brushed = show_figure(
    figures.excitation_map_figure(emap),
    f"{provenance.model}_{map_layer}_map",
    loaded or provenance,
    emap.points,
    lasso=True,
)
picked = brushed.selection.points if brushed is not None else []
gallery([p["customdata"] for p in picked if isinstance(p.get("customdata"), str)], emap.points)

st.subheader("Knock-out importance")  # NOTE not "…channels…": the page's title is found by that word
if loaded is None or not isinstance(data, Analysis):
    st.caption(
        "For a saved run: `sevis importance RUN.parquet --layer LAYER --out table.csv` reads its images back, "
        "knocks each channel out and writes the table."
    )
elif st.toggle(
    f"Knock out each {stats.index_name} of {layer} in turn: its cost against its class selectivity",
    key="channels_importance",
):
    targets = class_targets(data, loaded)
    options = [n for n in IMPORTANCE_SHOWN if n < size] + [size]
    count = st.select_slider(
        f"{stats.index_name.capitalize()}s knocked out (evenly spaced; all {size:,} take longest)",
        options,
        value=min(options, key=lambda n: abs(n - 256)),
        key=f"channels_importance_count_{layer}",
    )
    chosen = sorted({int(c) for c in np.linspace(0, size - 1, count).round()})
    bar = st.progress(0.0, text=f"Knocking out {len(chosen):,} {stats.index_name}s of {layer}…")
    done_so_far, total = [0], len(chosen) * len(data.images)

    def advance(done: int, per_image: int) -> None:
        done_so_far[0] += done
        bar.progress(min(1.0, done_so_far[0] / max(1, total)))

    table, correlation = importance_of(loaded, data, images_id, layer, chosen, targets.tolist(), advance)
    bar.empty()
    measure = "p_true_change" if (targets >= 0).any() else "p_top1_change"
    show_figure(
        figures.importance_scatter(table, layer, measure=measure, correlation=correlation),
        f"{provenance.model}_{layer}_importance",
        loaded,
        table,
        pick=importance_pick(layer),
        pick_source=choice,
    )
    st.caption(
        f"Each point: one {stats.index_name} of {layer} whose gate was set to 0 (removed) for all "
        f"{len(data.images)} images; up, the more the "
        + ("true class's probability drops" if measure == "p_true_change" else "network's own top-1 loses")
        + ". Morcos et al. (ICLR 2018) found a unit's class selectivity a poor predictor of what removing it "
        "costs: Spearman's ρ in the title. The table (download beside the chart) has each one's top-1 change too."
    )

st.subheader("Ablation")
if loaded is None or not isinstance(data, Analysis):
    st.caption(
        "For a saved run: `sevis ablate RUN.parquet --out table.csv` reads its images back and writes the table."
    )
elif st.toggle("Accuracy with each stage's attention removed (the SENet paper's Table 13)", key="channels_ablate"):
    targets = class_targets(data, loaded)
    table = ablation_of(loaded, data, images_id, targets.tolist())
    show_figure(figures.ablation_chart(table), f"{provenance.model}_ablation", loaded, table)

export_figures(
    "Channels",
    provenance,
    {"images": data.path.name if isinstance(data, Run) else choice, "layer": layer, "channel": channel},
)
